//! Prometheus metrics. Labels are route templates (`/v1/customers/{id}`), never raw paths, so
//! the number of series stays bounded and no id reaches the metrics.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
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
    for c in [
        Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(latency.clone()),
        Box::new(pool.clone()),
        Box::new(idempotency.clone()),
        Box::new(swept.clone()),
        Box::new(rate_limited.clone()),
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

/// The text exposition, with the pool gauges read now.
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
    String::from_utf8(out).unwrap_or_default()
}
