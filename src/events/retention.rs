//! The optional retention of events (`events.retention`; none by default: events are the audit
//! trail). Past it, events are deleted in bounded batches, oldest first, and only once published
//! when publishing is on. A customer's history then starts at its oldest event left: as-of
//! reads before it answer 422 `history_unavailable`, and a feed consumer further behind than the
//! retention misses what was deleted (docs/events.md#retention).

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Deletes events older than `retention` every `interval` until `stop` (`db::sweep::every`).
pub async fn run(
    pool: PgPool,
    retention: Duration,
    publishing: bool,
    interval: Duration,
    batch: i64,
    stop: CancellationToken,
) {
    let pool = &pool;
    crate::db::sweep::every(
        "events past their retention",
        interval,
        batch,
        stop,
        move || async move {
            let n = delete_old(pool, retention, publishing, batch).await?;
            if n > 0 {
                tracing::info!(deleted = n, "events past their retention deleted");
            }
            Ok(n)
        },
    )
    .await;
}

/// One batch: among the `batch` oldest events in feed order (published ones only, when
/// publishing), those recorded before the retention. The service's role may not delete events
/// itself (they are append-only for it): `delete_events_past_retention` (migration 8) does it
/// as the owner of the table, and deletes nothing younger than the retention.
async fn delete_old(
    pool: &PgPool,
    retention: Duration,
    publishing: bool,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let batch = i32::try_from(batch).unwrap_or(i32::MAX);
    let deleted = sqlx::query_scalar!(
        r#"SELECT delete_events_past_retention(make_interval(secs => $1), $2, $3) AS "deleted!""#,
        retention.as_secs_f64(),
        publishing,
        batch
    )
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(deleted).unwrap_or(0))
}
