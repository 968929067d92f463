//! The dispatcher: turns committed events into deliveries, a second consumer of the events
//! beside the JetStream relay, with its own position (`webhook_dispatch`). A loop, woken after
//! this instance's writes commit (`Webhooks::wake_dispatcher`) or every
//! `webhooks.poll_interval` (other instances' writes, and events held back behind an older
//! transaction). One instance dispatches at a time (`outbox::begin_dispatch`); a crash
//! before the commit leaves the position where it was, so the events are dispatched again, and
//! no delivery is made twice (the deliveries and the position commit together). While this
//! instance is busy with writes (`super::pace`) the wake-ups are passed over, and a round every
//! `poll_interval` makes about that interval's share of `webhooks.busy_deliveries_per_second`
//! (at least one event): the rest waits in the feed, behind the position, until the writes
//! slow down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::outbox;
use super::pace::WriteRate;
use crate::webhooks::shared::Webhooks;

/// Events read per round.
const BATCH: usize = 500;
/// How often the pending and disabled gauges are read.
const GAUGES_EVERY: Duration = Duration::from_secs(15);
/// Counting pending deliveries stops here, so that a scrape stays cheap however large the
/// backlog.
const PENDING_COUNT_CAP: i64 = 1_000_000;

pub async fn run(
    pool: PgPool,
    hooks: Arc<Webhooks>,
    round_limit: Duration,
    stop: CancellationToken,
) {
    let poll = hooks.settings.poll_interval;
    let mut failures = 0u32;
    let mut gauges_at = tokio::time::Instant::now();
    let threshold = hooks.settings.busy_writes_per_second;
    let mut writes = WriteRate::new(threshold, hooks.writes(), Instant::now());
    // While busy, a round makes about a poll interval's share of the senders' budget, so that
    // deliveries are made no faster than they may be attempted: the events are read at the
    // rate of the last round's deliveries per event (0: none made, no bound).
    let per_poll = f64::from(hooks.settings.busy_deliveries_per_second.max(1)) * poll.as_secs_f64();
    let mut per_event = 0.0;
    loop {
        let limit = if writes.busy(hooks.writes(), Instant::now()) && per_event > 0.0 {
            ((per_poll / per_event) as usize).clamp(1, BATCH)
        } else {
            BATCH
        };
        let outcome = tokio::time::timeout(round_limit, round(&pool, &hooks, limit)).await;
        let full = match outcome {
            Ok(Ok((events, deliveries))) => {
                failures = 0;
                if events > 0 {
                    per_event = deliveries as f64 / events as f64;
                }
                events == limit
            }
            Ok(Err(e)) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %e, "webhook dispatch failed; retrying");
                }
                false
            }
            Err(_) => {
                failures += 1;
                tracing::warn!("webhook dispatch took too long; retrying");
                false
            }
        };
        if gauges_at.elapsed() >= GAUGES_EVERY {
            gauges_at = tokio::time::Instant::now();
            if let Ok(Ok((pending, disabled))) =
                tokio::time::timeout(round_limit, outbox::gauges(&pool, PENDING_COUNT_CAP)).await
            {
                crate::metrics::webhook_gauges(pending, disabled);
            }
        }
        let busy = writes.busy(hooks.writes(), Instant::now());
        if full && !busy {
            continue;
        }
        // After failures the wait doubles up to 5 s (never below the poll interval itself).
        let wait = if failures == 0 {
            poll
        } else {
            poll.saturating_mul(1 << failures.min(4))
                .min(Duration::from_secs(5))
                .max(poll)
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = hooks.dispatch_wake.notified(), if !busy => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One round: the next events after the position, a delivery for each webhook that takes one,
/// the position moved past them. Reads at most `limit` events; returns how many it read, and
/// the deliveries it made.
async fn round(
    pool: &PgPool,
    hooks: &Webhooks,
    limit: usize,
) -> Result<(usize, usize), sqlx::Error> {
    let Some(mut tx) = outbox::begin_dispatch(pool).await? else {
        return Ok((0, 0));
    };
    let matched = outbox::next_events(&mut tx, limit as i64).await?;
    // Whether this instance's writes should wake the dispatcher: known from the round when an
    // event took a webhook, else asked (a webhook made or enabled on another instance is seen
    // here within a poll).
    let any =
        matched.iter().any(|m| m.webhook_id.is_some()) || outbox::any_enabled(&mut tx).await?;
    hooks.expect_deliveries(any);
    if matched.is_empty() {
        tx.rollback().await?;
        return Ok((0, 0));
    }
    let mut events = 0;
    let mut last = None;
    for m in &matched {
        if last != Some((m.feed_xid, m.seq)) {
            events += 1;
            last = Some((m.feed_xid, m.seq));
        }
    }
    let ids: Vec<String> = matched
        .iter()
        .filter(|m| m.webhook_id.is_some())
        .map(|_| format!("dlv_{}", ulid::Ulid::new()))
        .collect();
    outbox::dispatch(&mut tx, &matched, &ids).await?;
    tx.commit().await?;
    if !ids.is_empty() {
        hooks.wake_senders();
    }
    Ok((events, ids.len()))
}
