//! The senders: claim due deliveries and attempt them, each attempt a task of its own.
//!
//! In flight at once, per instance: at most `webhooks.max_in_flight` attempts, and at most
//! `webhooks.max_in_flight_per_webhook` of one webhook. A claim asks only for as many as there
//! are free slots, leaves out webhooks whose slots are all taken and takes no more of a webhook
//! than its free slots, so a claimed delivery never waits here: a slow endpoint holds its own
//! few slots and never delays another's deliveries. While this instance is busy with writes,
//! claims also stay within `webhooks.busy_deliveries_per_second` (`super::pace`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::outbox::{self, ClaimKey, Claimed, Outcome};
use super::pace::{Budget, WriteRate};
use crate::tenant::{Mode, Tenant};
use crate::webhooks::destination::{self, GuardedResolver};
use crate::webhooks::shared::Webhooks;

/// The part of a response body kept in the attempt log.
const RESPONSE_BODY_KEPT: usize = 4096;
/// The longest `Retry-After` honoured.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);
/// The longest wait between claims while the database fails (they back off from
/// `poll_interval`).
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a stop waits for attempts in flight; one cut off is attempted again when its lease
/// ends (at least once).
const STOP_WAIT: Duration = Duration::from_secs(5);
/// Outcomes recorded per transaction, at most.
const RECORD_BATCH: usize = 256;
/// The longest a claim waits for more slots to free (see `run`).
const COALESCE: Duration = Duration::from_millis(5);

/// The HTTP client of every attempt: no redirects followed, no proxy (it would connect where
/// our resolver did not decide), and our resolver, which drops refused addresses.
pub fn client(hooks: &Webhooks) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private_networks: hooks.settings.allow_private_networks,
        }))
        .timeout(hooks.settings.timeout)
        .user_agent(concat!("customers-api/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the webhook HTTP client builds")
}

/// Attempts in flight on this instance, per webhook.
#[derive(Default)]
struct InFlight {
    per_webhook: Mutex<HashMap<String, usize>>,
}

impl InFlight {
    fn add(&self, webhook: &str) {
        *self.lock().entry(webhook.to_owned()).or_default() += 1;
    }

    fn remove(&self, webhook: &str) {
        let mut map = self.lock();
        if let Some(n) = map.get_mut(webhook) {
            *n -= 1;
            if *n == 0 {
                map.remove(webhook);
            }
        }
    }

    /// Webhooks with no free slot, and those with some taken (with how many are free).
    fn busy(&self, max: usize) -> (Vec<String>, Vec<String>, Vec<i32>) {
        let (mut full, mut partly, mut free) = (Vec::new(), Vec::new(), Vec::new());
        for (webhook, &n) in self.lock().iter() {
            if n >= max {
                full.push(webhook.clone());
            } else {
                partly.push(webhook.clone());
                free.push((max - n) as i32);
            }
        }
        (full, partly, free)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.per_webhook.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Claims and attempts due deliveries until `stop`. A claim's lease is the attempt's timeout
/// plus `record_limit`, the bound on the statements that record its outcome.
///
/// Outcomes are recorded by one task in batches ([`record`]): an attempt hands its outcome over
/// and frees its slot. The lease still holds the delivery until its outcome is recorded, so no
/// claim takes it meanwhile; one never recorded (a crash, the database down) is attempted again
/// when its lease ends.
pub async fn run(
    pool: PgPool,
    hooks: Arc<Webhooks>,
    record_limit: Duration,
    stop: CancellationToken,
) {
    let client = client(&hooks);
    let settings = &hooks.settings;
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight));
    let in_flight = Arc::new(InFlight::default());
    let lease = (settings.timeout + record_limit).as_secs_f64();
    // Bounded: attempts wait for room before their slot frees, so a slow database slows the
    // claims instead of piling outcomes up.
    let (outcomes, recorded) = tokio::sync::mpsc::channel(settings.max_in_flight);
    let recorder = tokio::spawn(record(pool.clone(), recorded, record_limit));
    // Slots free one by one as attempts end: a claim waits until a quarter of them are free (or
    // COALESCE passed), so that a claim takes a batch rather than one delivery.
    let batch = settings.max_in_flight.div_ceil(4);
    let now = Instant::now();
    let mut writes = WriteRate::new(settings.busy_writes_per_second, hooks.writes(), now);
    let mut budget = Budget::new(settings.busy_deliveries_per_second, batch, now);
    let mut failures = 0u32;
    loop {
        let free = slots.available_permits();
        let now = Instant::now();
        let allowed = budget.allow(free, writes.busy(hooks.writes(), now), now);
        let mut more = false;
        if allowed > 0 {
            let (full, partly, partly_free) = in_flight.busy(settings.max_in_flight_per_webhook);
            let per_webhook = settings.max_in_flight_per_webhook as i64;
            match outbox::claim(
                &pool,
                allowed as i64,
                per_webhook,
                &full,
                (&partly, &partly_free),
                lease,
            )
            .await
            {
                Ok(claimed) => {
                    failures = 0;
                    more = claimed.len() == allowed;
                    budget.spend(claimed.len());
                    for c in claimed {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            break;
                        };
                        in_flight.add(&c.webhook_id);
                        let (hooks, client) = (hooks.clone(), client.clone());
                        let (in_flight, outcomes) = (in_flight.clone(), outcomes.clone());
                        tokio::spawn(async move {
                            let outcome = attempt(&hooks, &client, &c).await;
                            let _ = outcomes.send((c.key(), outcome)).await;
                            in_flight.remove(&c.webhook_id);
                            drop(slot);
                            // A slot is free: deliveries of a webhook that was full may wait.
                            hooks.wake_senders();
                        });
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(error = %e, "claiming webhook deliveries failed; retrying");
                    }
                }
            }
        }
        if more {
            continue;
        }
        if allowed == 0 && free > 0 {
            // The budget holds the claims back (busy with writes): until it allows a batch; a
            // wake-up meanwhile would find it spent.
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(budget.wait_for(free)) => {}
            }
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = hooks.send_wake.notified() => {}
            _ = tokio::time::sleep(
                settings.poll_interval.saturating_mul(1 << failures.min(5)).min(MAX_BACKOFF)
            ) => {}
        }
        if slots.available_permits() < batch {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(COALESCE) => {}
            }
        }
    }
    // Attempts in flight end within their timeout; their leases cover a stop that cuts them.
    let _ = tokio::time::timeout(
        settings.timeout.min(STOP_WAIT),
        slots.acquire_many(settings.max_in_flight as u32),
    )
    .await;
    // The outcomes handed over are recorded before the stop ends (the recorder ends when every
    // sender of the channel is gone: this one, and those of attempts cut off).
    drop(outcomes);
    let _ = tokio::time::timeout(STOP_WAIT, recorder).await;
}

/// The recorder: the outcomes handed over, recorded in batches of up to `RECORD_BATCH`, one
/// transaction each ([`outbox::record`]) bounded by `limit`. One that fails is not retried: its
/// deliveries are attempted again when their leases end (at least once).
async fn record(
    pool: PgPool,
    mut outcomes: tokio::sync::mpsc::Receiver<(ClaimKey, Outcome)>,
    limit: Duration,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while outcomes.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let n = batch.len();
        let result = outbox::record(&pool, &batch);
        match tokio::time::timeout(limit, result).await {
            Ok(Ok(recorded)) if recorded as usize == n => {}
            Ok(Ok(recorded)) => tracing::warn!(
                lost = n - recorded as usize,
                "webhook attempts' leases ended before their outcomes were recorded"
            ),
            Ok(Err(e)) => {
                tracing::warn!(attempts = n, error = %e, "recording webhook attempts failed")
            }
            Err(_) => tracing::warn!(attempts = n, "recording webhook attempts took too long"),
        }
        batch.clear();
    }
}

/// What came back from an endpoint.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: String,
}

/// One attempt of a claimed delivery, and what it came to.
async fn attempt(hooks: &Webhooks, client: &reqwest::Client, c: &Claimed) -> Outcome {
    if c.attempts == 0 {
        crate::metrics::webhook_first_attempt(c.since_recorded);
    }
    let at = Utc::now();
    let started = Instant::now();
    let answer = send(hooks, client, c).await;
    let duration_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
    let settings = &hooks.settings;
    let (kind, succeeded, gone) = match &answer {
        Ok(a) if a.status.is_success() => ("succeeded", true, false),
        Ok(a) if a.status == StatusCode::GONE => ("gone", false, true),
        Ok(_) => ("failed", false, false),
        Err(_) => ("error", false, false),
    };
    crate::metrics::webhook_attempt(kind);
    let step = settings.retry_schedule.get(c.attempts as usize).copied();
    let (status, retry_in) = match (succeeded, gone, step) {
        (true, ..) => ("succeeded", None),
        (false, true, _) | (false, false, None) => ("failed", None),
        (false, false, Some(step)) => {
            let mut wait = jitter(step);
            if let Ok(Answer {
                retry_after: Some(asked),
                ..
            }) = &answer
            {
                wait = wait.max(*asked);
            }
            ("pending", Some(wait.as_secs_f64()))
        }
    };
    let failing_too_long = !succeeded
        && c.failing_since.is_some_and(|since| {
            (at - since).to_std().unwrap_or_default() >= settings.disable_after
        });
    let disable = if gone {
        Some("gone")
    } else if failing_too_long {
        Some("failing")
    } else {
        None
    };
    let (status_code, error, response_body) = match answer {
        Ok(a) => (Some(i32::from(a.status.as_u16())), None, Some(a.body)),
        Err(e) => (None, Some(e), None),
    };
    Outcome {
        at,
        status_code,
        duration_ms,
        error,
        response_body,
        status,
        retry_in_secs: retry_in,
        succeeded,
        disable,
    }
}

/// `step` ±20 %.
fn jitter(step: Duration) -> Duration {
    step.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
}

/// Sends the delivery: the event's stored body byte for byte, signed with every secret that
/// signs now (newest first). `Err`: why no answer came (nothing was sent when the destination
/// was refused).
async fn send(hooks: &Webhooks, client: &reqwest::Client, c: &Claimed) -> Result<Answer, String> {
    let body = c.body.as_deref().ok_or("the event is no longer kept")?;
    // Literal addresses (never resolved) and the scheme, checked again: the settings may have
    // changed since the URL was accepted.
    let url = destination::check_url(&c.url, hooks.allowance())
        .map_err(|why| format!("destination refused: the url {why}"))?;
    let tenant = Tenant {
        org: c.org_id.clone(),
        mode: Mode::from_stored(&c.mode),
    };
    let timestamp = Utc::now().timestamp();
    let signatures: Vec<String> = c
        .secrets
        .iter()
        .filter_map(|s| hooks.secrets.open(&tenant, &c.webhook_id, s))
        .map(|secret| secret.sign(&c.event_id, timestamp, body.as_bytes()))
        .collect();
    if signatures.is_empty() {
        return Err("no secret opens with webhooks.secrets_key; rotate the secret".into());
    }
    let response = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header("webhook-id", &c.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signatures.join(" "))
        .body(body.to_owned())
        .send()
        .await
        .map_err(describe)?;
    let status = response.status();
    let retry_after = matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    )
    .then(|| response.headers().get(RETRY_AFTER))
    .flatten()
    .and_then(|v| retry_after(v.to_str().ok()?, std::time::SystemTime::now()));
    let body = read_start(response).await;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// A `Retry-After` value (RFC 9110 §10.2.3): delay-seconds or an HTTP-date (a date already
/// past asks for no wait), capped at an hour. `None`: neither form.
fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or_default()
        }
    };
    Some(wait.min(RETRY_AFTER_MAX))
}

/// The first 4 KiB of a response body (what arrived of it within the timeout).
async fn read_start(mut response: reqwest::Response) -> String {
    let mut kept = Vec::new();
    while kept.len() < RESPONSE_BODY_KEPT {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            _ => break,
        }
    }
    kept.truncate(RESPONSE_BODY_KEPT);
    String::from_utf8_lossy(&kept).into_owned()
}

/// The error and its causes (a refused destination is a cause of a connect error).
fn describe(e: reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn retry_after_is_delay_seconds_or_an_http_date_capped_at_an_hour() {
        // Sun, 06 Dec 2026 08:00:00 GMT
        let now = UNIX_EPOCH + Duration::from_secs(1_796_544_000);
        assert_eq!(
            httpdate::fmt_http_date(now),
            "Sun, 06 Dec 2026 08:00:00 GMT"
        );
        let at = |s: &str| retry_after(s, now);
        assert_eq!(at("120"), Some(Duration::from_secs(120)));
        assert_eq!(at(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            at("Sun, 06 Dec 2026 08:02:00 GMT"),
            Some(Duration::from_secs(120))
        );
        // The obsolete forms RFC 9110 still asks recipients to accept.
        assert_eq!(
            at("Sunday, 06-Dec-26 08:00:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            at("Sun Dec  6 08:00:45 2026"),
            Some(Duration::from_secs(45))
        );
        assert_eq!(at("Sun, 06 Dec 2026 07:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(at("Mon, 07 Dec 2026 08:00:00 GMT"), Some(RETRY_AFTER_MAX));
        assert_eq!(at("86400"), Some(RETRY_AFTER_MAX));
        assert_eq!(at("soon"), None);
        assert_eq!(at("-5"), None);
    }
}
