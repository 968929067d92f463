//! The SQL of the dispatcher and the senders, across tenants: their transactions set
//! `app.webhooks = on` (migration 9) and bind no tenant.
//!
//! - The dispatcher turns committed events into deliveries: one instance at a time (an
//!   advisory lock), from its own position in the feed (`webhook_dispatch`), behind the feed's
//!   visibility gate (`feed_xid` below `pg_snapshot_xmin`, as `events::repo::feed` and the
//!   relay), so it never steps past an event that could still commit before its position.
//! - A sender claims due deliveries (`FOR UPDATE SKIP LOCKED`) and leases them by pushing
//!   `next_attempt_at` to the end of the lease: no other claim takes them meanwhile, and an
//!   instance killed mid-attempt leaves them due again when the lease ends.
//!
//! `dispatching` holds the dispatcher's statements, `claims` the senders'; the gauges and the
//! log's retention are here.

mod claims;
mod dispatching;

pub use claims::*;
pub use dispatching::*;

use sqlx::{PgPool, Postgres, Transaction};

/// A transaction that reads and writes every tenant's webhooks (and reads their events).
async fn begin_all(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = crate::db::begin(pool).await?;
    sqlx::query!("SELECT set_config('app.webhooks', 'on', true)")
        .fetch_one(&mut *tx)
        .await?;
    Ok(tx)
}

/// Deliveries pending across tenants (counted up to `cap`), and webhooks disabled, for
/// `/metrics`.
pub async fn gauges(pool: &PgPool, cap: i64) -> Result<(i64, i64), sqlx::Error> {
    let mut tx = begin_all(pool).await?;
    let row = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM (SELECT 1 FROM webhook_deliveries
                                          WHERE status = 'pending'
                                            AND next_attempt_at IS NOT NULL LIMIT $1) p)
                      AS "pending!",
                  (SELECT count(*) FROM webhooks WHERE NOT enabled) AS "disabled!""#,
        cap
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((row.pending, row.disabled))
}

/// Deletes up to `batch` ended deliveries (with their attempts) created before `retention`,
/// oldest first. Returns how many.
pub async fn delete_old_deliveries(
    pool: &PgPool,
    retention_secs: f64,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let mut tx = begin_all(pool).await?;
    let done = sqlx::query!(
        r#"WITH old AS (
               SELECT org_id, mode, id
                 FROM webhook_deliveries
                WHERE status <> 'pending'
                  AND created_at < now() - make_interval(secs => $1)
                ORDER BY created_at
                LIMIT $2
                  FOR UPDATE SKIP LOCKED)
           DELETE FROM webhook_deliveries d
            USING old
            WHERE d.org_id = old.org_id AND d.mode = old.mode AND d.id = old.id"#,
        retention_secs,
        batch
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}
