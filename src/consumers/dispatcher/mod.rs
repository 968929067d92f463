//! The webhook dispatcher (docs/webhooks.md): a consumer of the committed events beside the
//! JetStream relay, with its own position in the feed (`webhook_dispatch`). It reads the
//! webhooks resource's endpoints and secrets (`crate::webhooks`).
//!
//! - `dispatch`: committed events → deliveries, from its own position in the feed.
//! - `send`: due deliveries → signed attempts, bounded per webhook and overall.
//! - `outbox`: their SQL, across tenants.
//! - `pace`: how both yield to this instance's writes while they are busy.

mod dispatch;
mod outbox;
mod pace;
mod send;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::webhooks::shared::Webhooks;

/// How often and how much the log's retention deletes (the idempotency sweeper's pace).
pub struct Sweep {
    pub interval: Duration,
    pub batch: i64,
}

/// Starts the dispatcher, the senders and the log's retention; they stop when `stop` is
/// cancelled. `round_limit` bounds a dispatch round, and the recording of an attempt's outcome
/// (a claim's lease is the attempt's timeout plus it).
pub fn spawn(
    pool: PgPool,
    hooks: Arc<Webhooks>,
    round_limit: Duration,
    sweep: Sweep,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let dispatcher = tokio::spawn(dispatch::run(
        pool.clone(),
        hooks.clone(),
        round_limit,
        stop.clone(),
    ));
    let retention = hooks.settings.log_retention;
    let sweeper = tokio::spawn(sweep_log(pool.clone(), retention, sweep, stop.clone()));
    let senders = tokio::spawn(send::run(pool, hooks, round_limit, stop));
    tokio::spawn(async move {
        let _ = dispatcher.await;
        let _ = senders.await;
        let _ = sweeper.await;
    })
}

/// Deletes ended deliveries past `webhooks.log_retention`, in bounded batches.
async fn sweep_log(pool: PgPool, retention: Duration, sweep: Sweep, stop: CancellationToken) {
    let pool = &pool;
    let batch = sweep.batch;
    crate::db::sweep::every(
        "webhook deliveries past the log retention",
        sweep.interval,
        batch,
        stop,
        move || async move {
            outbox::delete_old_deliveries(pool, retention.as_secs_f64(), batch).await
        },
    )
    .await;
}
