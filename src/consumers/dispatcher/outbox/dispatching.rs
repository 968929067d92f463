//! The dispatcher's statements: committed events → deliveries (see `super`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::begin_all;

/// The dispatcher's advisory lock ("cust_whk"): one dispatcher per database.
const DISPATCHER_LOCK: i64 = 0x6375_7374_5F77_686B;

/// Begins a dispatch round, or `None` when another instance is dispatching. As the relay's
/// round: without bitmap scans and sorts the planner walks the relay's index in feed order from
/// the position and stops at the batch size.
pub async fn begin_dispatch(
    pool: &PgPool,
) -> Result<Option<Transaction<'static, Postgres>>, sqlx::Error> {
    let mut tx = begin_all(pool).await?;
    let locked = sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_xact_lock($1) AND set_config('enable_bitmapscan', 'off', true)
                  IS NOT NULL AND set_config('enable_sort', 'off', true) IS NOT NULL
                  AS "locked!""#,
        DISPATCHER_LOCK
    )
    .fetch_one(&mut *tx)
    .await?;
    if locked {
        Ok(Some(tx))
    } else {
        tx.rollback().await?;
        Ok(None)
    }
}

/// One event of a dispatch batch, with one webhook that takes it (`None`: no webhook does).
pub struct Matched {
    pub feed_xid: i64,
    pub seq: i64,
    pub org_id: String,
    pub mode: String,
    pub event_id: String,
    pub kind: String,
    pub customer_id: String,
    pub version: i64,
    pub recorded_at: DateTime<Utc>,
    pub webhook_id: Option<String>,
}

/// The next visible events after the dispatcher's position (at most `limit`), each joined with
/// the enabled webhooks of its tenant whose filter takes it and that existed when it was
/// recorded.
pub async fn next_events(conn: &mut PgConnection, limit: i64) -> Result<Vec<Matched>, sqlx::Error> {
    sqlx::query_as!(
        Matched,
        r#"WITH r AS MATERIALIZED (
                SELECT feed_xid, seq, pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS gate
                  FROM webhook_dispatch WHERE id = 1),
           e AS MATERIALIZED (
                SELECT e.feed_xid, e.seq, e.org_id, e.mode, e.id, e.type, e.customer_id,
                       e.version, e.recorded_at
                  FROM customer_events e
                 WHERE (e.feed_xid, e.seq) > ((SELECT feed_xid FROM r), (SELECT seq FROM r))
                   AND e.feed_xid < (SELECT gate FROM r)
                   AND e.occurred_at IS NOT NULL -- customer_events_relay is partial on it
                 ORDER BY e.feed_xid, e.seq
                 LIMIT $1)
           SELECT e.feed_xid AS "feed_xid!", e.seq AS "seq!", e.org_id AS "org_id!",
                  e.mode AS "mode!", e.id AS "event_id!", e.type AS "kind!",
                  e.customer_id AS "customer_id!", e.version AS "version!",
                  e.recorded_at AS "recorded_at!", w.id AS "webhook_id?"
             FROM e
             LEFT JOIN webhooks w
               ON w.org_id = e.org_id AND w.mode = e.mode AND w.enabled
              AND w.created_at <= e.recorded_at
              AND (cardinality(w.events) = 0 OR e.type = ANY(w.events))
            ORDER BY e.feed_xid, e.seq"#,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Whether any tenant has an enabled webhook (`Webhooks::expect_deliveries`).
pub async fn any_enabled(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM webhooks WHERE enabled) AS "any!""#)
        .fetch_one(conn)
        .await
}

/// New deliveries, due now, one per (event, webhook) of `matched` that has a webhook, with the
/// ids given; then the position moves past the last event. The round's only writes.
pub async fn dispatch(
    conn: &mut PgConnection,
    matched: &[Matched],
    ids: &[String],
) -> Result<(), sqlx::Error> {
    let with_webhook: Vec<&Matched> = matched.iter().filter(|m| m.webhook_id.is_some()).collect();
    let column = |f: fn(&Matched) -> String| with_webhook.iter().map(|m| f(m)).collect::<Vec<_>>();
    let orgs = column(|m| m.org_id.clone());
    let modes = column(|m| m.mode.clone());
    let webhooks = column(|m| m.webhook_id.clone().unwrap_or_default());
    let events = column(|m| m.event_id.clone());
    let kinds = column(|m| m.kind.clone());
    let customers = column(|m| m.customer_id.clone());
    let versions: Vec<i64> = with_webhook.iter().map(|m| m.version).collect();
    let recorded: Vec<DateTime<Utc>> = with_webhook.iter().map(|m| m.recorded_at).collect();
    if !with_webhook.is_empty() {
        sqlx::query!(
            r#"INSERT INTO webhook_deliveries (org_id, mode, id, webhook_id, event_id, event_type,
                                              customer_id, event_version, next_attempt_at,
                                              event_recorded_at)
               SELECT n.org_id, n.mode, n.id, n.webhook_id, n.event_id, n.kind, n.customer_id,
                      n.version, now(), n.recorded_at
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[], $7::text[], $8::bigint[], $9::timestamptz[])
                      AS n(org_id, mode, id, webhook_id, event_id, kind, customer_id, version,
                           recorded_at)"#,
            &orgs,
            &modes,
            ids,
            &webhooks,
            &events,
            &kinds,
            &customers,
            &versions,
            &recorded
        )
        .execute(&mut *conn)
        .await?;
    }
    if let Some(last) = matched.last() {
        sqlx::query!(
            "UPDATE webhook_dispatch SET feed_xid = $1, seq = $2, updated_at = now() WHERE id = 1",
            last.feed_xid,
            last.seq
        )
        .execute(conn)
        .await?;
    }
    Ok(())
}
