//! The background task that deletes expired idempotency keys in bounded batches.

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::configuration::IdempotencySettings;

/// Runs until `stop` is cancelled. Each batch is its own short statement, so the sweeper holds
/// no lock for long and never blocks requests; a failure is logged and retried next interval.
pub async fn run(pool: PgPool, settings: IdempotencySettings, stop: CancellationToken) {
    let mut interval = tokio::time::interval(settings.sweep_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = interval.tick() => {}
        }
        loop {
            let deleted = match pool.acquire().await {
                Ok(mut conn) => super::store::delete_expired(&mut conn, settings.sweep_batch).await,
                Err(e) => Err(e),
            };
            match deleted {
                Ok(n) => {
                    crate::metrics::sweeper_deleted(n);
                    if n > 0 {
                        tracing::debug!(deleted = n, "expired idempotency keys swept");
                    }
                    // A full batch means there may be more; stop early at shutdown.
                    if n < settings.sweep_batch as u64 || stop.is_cancelled() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sweeping idempotency keys failed");
                    break;
                }
            }
        }
    }
    tracing::info!("idempotency sweeper stopped");
}
