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
/// publishing), those recorded before the retention. Reading the oldest by feed position keeps
/// each batch a short index range, however large the table.
async fn delete_old(
    pool: &PgPool,
    retention: Duration,
    publishing: bool,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let mut tx = crate::db::begin(pool).await?;
    let done = sqlx::query!(
        r#"WITH bound AS (
               SELECT set_config('app.relay', 'on', true) IS NOT NULL
                      AND set_config('app.retention', 'on', true) IS NOT NULL AS set
           ), oldest AS (
               SELECT e.ctid AS row, e.recorded_at
                 FROM customer_events e
                WHERE (SELECT set FROM bound)
                  AND e.occurred_at IS NOT NULL -- customer_events_relay is partial on it
                  AND (NOT $2 OR (e.feed_xid, e.seq) <= (SELECT feed_xid, seq FROM event_relay
                                                         WHERE id = 1))
                ORDER BY e.feed_xid, e.seq
                LIMIT $3
           )
           DELETE FROM customer_events
            WHERE ctid IN (SELECT row FROM oldest
                            WHERE recorded_at < now() - make_interval(secs => $1))"#,
        retention.as_secs_f64(),
        publishing,
        batch
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}
