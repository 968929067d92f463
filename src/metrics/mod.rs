//! Prometheus metrics. Labels are route templates (`/v1/customers/{id}`), never raw paths, so
//! the number of series stays bounded and no id reaches the metrics.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use sqlx::PgPool;

struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool: IntGaugeVec,
    idempotency: IntCounterVec,
    swept: IntCounter,
    rate_limited: IntCounter,
    events_published: IntCounter,
    events_duplicates: IntCounter,
    publication_lag: Histogram,
    undeliverable: IntCounter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new(
            "http_requests_total",
            "HTTP requests by route template, method and status",
        ),
        &["route", "method", "status"],
    )
    .expect("valid metric");
    let latency = HistogramVec::new(
        HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]),
        &["route", "method"],
    )
    .expect("valid metric");
    let pool = IntGaugeVec::new(
        Opts::new("db_pool_connections", "Database pool connections by state"),
        &["state"],
    )
    .expect("valid metric");
    let idempotency = IntCounterVec::new(
        Opts::new(
            "idempotency_events_total",
            "Idempotency outcomes other than a first execution: replay, mismatch (422), in_progress (409)",
        ),
        &["event"],
    )
    .expect("valid metric");
    let swept = IntCounter::new(
        "idempotency_sweeper_deleted_total",
        "Expired idempotency keys deleted by the sweeper",
    )
    .expect("valid metric");
    let rate_limited =
        IntCounter::new("rate_limited_total", "Requests rejected with 429").expect("valid metric");
    let events_published = IntCounter::new(
        "events_published_total",
        "Events JetStream acknowledged as newly stored, published by this instance",
    )
    .expect("valid metric");
    let events_duplicates = IntCounter::new(
        "events_published_duplicates_total",
        "Events republished after a crash or failure that JetStream already held (dropped by Nats-Msg-Id, or found in the stream)",
    )
    .expect("valid metric");
    let publication_lag = Histogram::with_opts(
        HistogramOpts::new(
            "events_publication_lag_seconds",
            "From an event's recording (its commit, give or take the transaction) to JetStream's ack",
        )
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ]),
    )
    .expect("valid metric");
    let undeliverable = IntCounter::new(
        "events_undeliverable_total",
        "Events this instance set aside because JetStream refused them for good (too large)",
    )
    .expect("valid metric");
    for c in [
        Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(latency.clone()),
        Box::new(pool.clone()),
        Box::new(idempotency.clone()),
        Box::new(swept.clone()),
        Box::new(rate_limited.clone()),
        Box::new(events_published.clone()),
        Box::new(events_duplicates.clone()),
        Box::new(publication_lag.clone()),
        Box::new(undeliverable.clone()),
    ] {
        registry.register(c).expect("metric registered once");
    }
    Metrics {
        registry,
        requests,
        latency,
        pool,
        idempotency,
        swept,
        rate_limited,
        events_published,
        events_duplicates,
        publication_lag,
        undeliverable,
    }
});

pub fn observe_request(route: &str, method: &str, status: u16, seconds: f64) {
    let m = &*METRICS;
    m.requests
        .with_label_values(&[route, method, status.to_string().as_str()])
        .inc();
    m.latency
        .with_label_values(&[route, method])
        .observe(seconds);
}

pub fn idempotency_event(event: &str) {
    METRICS.idempotency.with_label_values(&[event]).inc();
}

pub fn sweeper_deleted(n: u64) {
    METRICS.swept.inc_by(n);
}

pub fn rate_limited() {
    METRICS.rate_limited.inc();
}

pub fn events_published(fresh: u64, duplicates: u64) {
    METRICS.events_published.inc_by(fresh);
    METRICS.events_duplicates.inc_by(duplicates);
}

pub fn event_set_aside() {
    METRICS.undeliverable.inc();
}

pub fn observe_publication_lag(seconds: f64) {
    METRICS.publication_lag.observe(seconds);
}

/// The text exposition, with the pool gauges read now. The database's figures about events are
/// the relay's to render (`consumers::relay::figures::exposition`).
pub fn render(pool: &PgPool) -> String {
    let waiting = crate::db::waiting();
    let m = &*METRICS;
    let size = i64::from(pool.size());
    let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
    m.pool.with_label_values(&["in_use"]).set(size - idle);
    m.pool.with_label_values(&["idle"]).set(idle);
    m.pool.with_label_values(&["waiting"]).set(waiting);
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&m.registry.gather(), &mut out);
    let _ = TextEncoder::new().encode(&WEBHOOK_METRICS.registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Webhook deliveries (docs/webhooks.md#operators): attempts by outcome, the time from an
/// event's commit to its first attempt, deliveries pending and webhooks disabled (both read by
/// the dispatcher every 15 s, across tenants).
struct WebhookMetrics {
    registry: Registry,
    attempts: IntCounterVec,
    first_attempt: Histogram,
    pending: IntGauge,
    disabled: IntGauge,
}

static WEBHOOK_METRICS: LazyLock<WebhookMetrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let attempts = IntCounterVec::new(
        Opts::new(
            "webhook_attempts_total",
            "Webhook delivery attempts by outcome: succeeded, failed (a non-2xx answer), gone (410), error (no answer: refused destination, connection, timeout)",
        ),
        &["outcome"],
    )
    .expect("valid metric");
    let first_attempt = Histogram::with_opts(
        HistogramOpts::new(
            "webhook_commit_to_first_attempt_seconds",
            "Seconds from an event's commit to the start of a delivery's first attempt",
        )
        .buckets(vec![
            0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]),
    )
    .expect("valid metric");
    let pending = IntGauge::new(
        "webhook_deliveries_pending",
        "Webhook deliveries pending, all tenants (counted up to 1000000)",
    )
    .expect("valid metric");
    let disabled =
        IntGauge::new("webhooks_disabled", "Webhooks disabled, all tenants").expect("valid metric");
    for c in [
        Box::new(attempts.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(first_attempt.clone()),
        Box::new(pending.clone()),
        Box::new(disabled.clone()),
    ] {
        registry.register(c).expect("metric registered once");
    }
    WebhookMetrics {
        registry,
        attempts,
        first_attempt,
        pending,
        disabled,
    }
});

pub fn webhook_attempt(outcome: &str) {
    WEBHOOK_METRICS.attempts.with_label_values(&[outcome]).inc();
}

pub fn webhook_first_attempt(seconds: f64) {
    WEBHOOK_METRICS.first_attempt.observe(seconds.max(0.0));
}

pub fn webhook_gauges(pending: i64, disabled: i64) {
    WEBHOOK_METRICS.pending.set(pending);
    WEBHOOK_METRICS.disabled.set(disabled);
}
