//! Background deletion in bounded batches, shared by the idempotency sweeper and the events'
//! retention: every `interval`, batches until one comes back short. Each batch is its own short
//! transaction, so a sweep holds no lock for long and never blocks requests; a failure is
//! logged and tried again at the next interval.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `delete_batch` (which deletes at most `batch` rows and says how many) until `stop`.
pub async fn every<F, Fut>(
    what: &'static str,
    interval: Duration,
    batch: i64,
    stop: CancellationToken,
    mut delete_batch: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, sqlx::Error>>,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        loop {
            match delete_batch().await {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(deleted = n, what, "swept");
                    }
                    // A full batch means there may be more; stop early at shutdown.
                    if n < batch as u64 || stop.is_cancelled() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, what, "sweeping failed");
                    break;
                }
            }
        }
    }
    tracing::info!(what, "sweeper stopped");
}
