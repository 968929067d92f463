//! The background task that deletes expired idempotency keys in bounded batches.

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::configuration::IdempotencySettings;

/// Runs until `stop` is cancelled (`db::sweep::every`).
pub async fn run(pool: PgPool, settings: IdempotencySettings, stop: CancellationToken) {
    let batch = settings.sweep_batch;
    let pool = &pool;
    crate::db::sweep::every(
        "expired idempotency keys",
        settings.sweep_interval,
        batch,
        stop,
        move || async move {
            let mut conn = pool.acquire().await?;
            let n = super::store::delete_expired(&mut conn, batch).await?;
            crate::metrics::sweeper_deleted(n);
            Ok(n)
        },
    )
    .await;
}
