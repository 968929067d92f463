//! The relay's SQL: who publishes (an advisory lock), what is next (the events after the
//! `event_relay` position, behind the feed's visibility gate), and moving the position.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::events::repo::FeedPosition;

/// The advisory lock whose holder publishes (`pg_try_advisory_xact_lock`): one publisher per
/// database among all instances. Any fixed number; advisory locks are per database.
const PUBLISHER_LOCK: i64 = 0x6375_7374_5F72_6C79; // "cust_rly"

/// One event to publish.
#[derive(Debug)]
pub struct Pending {
    pub position: FeedPosition,
    pub id: String,
    pub org: String,
    pub mode: String,
    pub kind: String,
    /// The event JSON exactly as stored (and as the feed serves it).
    pub body: String,
    pub recorded_at: DateTime<Utc>,
    /// The trace context of the request that made the event (docs/operations.md#tracing).
    pub traceparent: Option<String>,
}

/// What one round read: the relay position and the events after it.
#[derive(Debug)]
pub struct Batch {
    /// The `event_relay` position the batch starts after.
    pub after: FeedPosition,
    /// The id of the event at that position, the last one published: what the stream's last
    /// message is expected to be. `None` when there is none (no event published yet, or it was
    /// set aside as undeliverable, or deleted by the retention): the stream is read instead.
    pub after_id: Option<String>,
    /// The events to publish now (maybe none).
    pub events: Vec<Pending>,
    /// Committed events after them wait behind the gate (a transaction older than theirs is
    /// still running).
    pub held_back: bool,
    /// The database's clock minus this process's, as of the read: publication lag is measured
    /// on the database's clock, which `recorded_at` is on.
    pub skew: chrono::TimeDelta,
}

/// Begins a round: a transaction that holds the publisher lock, or `None` when another
/// instance holds it. The lock and the reads take no transaction id (only [`advance`] does, at
/// the very end), so an open round never holds back the feed's `pg_snapshot_xmin` gate. The
/// transaction may read every tenant's events (`app.relay`, see migration 4).
pub async fn begin_round(
    pool: &PgPool,
) -> Result<Option<Transaction<'static, Postgres>>, sqlx::Error> {
    let mut tx = crate::db::begin(pool).await?;
    // The planner cannot estimate how many rows the row-level security policy lets through
    // and, left alone, reads every unpublished event to sort them (a whole backlog per batch).
    // Without bitmap scans and sorts it walks the relay index in order from the position and
    // stops at the batch size.
    let row = sqlx::query!(
        r#"SELECT pg_try_advisory_xact_lock($1) AS "locked!",
                  set_config('app.relay', 'on', true) AS "relay!",
                  set_config('enable_bitmapscan', 'off', true) AS "bitmap!",
                  set_config('enable_sort', 'off', true) AS "sort!""#,
        PUBLISHER_LOCK
    )
    .fetch_one(&mut *tx)
    .await?;
    if row.locked {
        Ok(Some(tx))
    } else {
        tx.rollback().await?;
        Ok(None)
    }
}

/// The next events to publish, in feed order, behind the same gate as the feed
/// (`events::repo::feed`): only events whose transaction, and every transaction that began
/// before it, has ended (`feed_xid` below `pg_snapshot_xmin`). So the relay never passes an
/// event that could still commit before its position, and publishes each customer's events in
/// version order. A statement of its own, after the lock: its snapshot sees the position the
/// previous holder committed, and the id of the event at it (`Batch::after_id`). `None`: nothing
/// after the position.
///
/// Committed events behind the gate come after every event before it in this order, so the
/// statement reads past the gate (without their bodies) to tell whether some are held back:
/// their own wake-up may have come while they were held back, and no other may follow.
pub async fn next_batch(conn: &mut PgConnection, limit: i64) -> Result<Option<Batch>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"WITH r AS MATERIALIZED (
                SELECT feed_xid, seq, pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS gate
                  FROM event_relay WHERE id = 1)
           SELECT (SELECT feed_xid FROM r) AS "after_xid!", (SELECT seq FROM r) AS "after_seq!",
                  (SELECT a.id FROM customer_events a
                    WHERE (a.feed_xid, a.seq) = ((SELECT feed_xid FROM r), (SELECT seq FROM r))
                      AND a.occurred_at IS NOT NULL
                      AND NOT EXISTS (SELECT 1 FROM event_undeliverable u WHERE u.id = a.id)) AS after_id,
                  e.feed_xid < (SELECT gate FROM r) AS "visible!",
                  e.feed_xid, e.seq, e.id, e.org_id, e.mode, e.type AS kind,
                  CASE WHEN e.feed_xid < (SELECT gate FROM r) THEN e.body::text END AS body,
                  e.recorded_at, e.traceparent, clock_timestamp() AS "read_at!"
             FROM customer_events e
            WHERE (e.feed_xid, e.seq) > ((SELECT feed_xid FROM r), (SELECT seq FROM r))
              AND e.occurred_at IS NOT NULL -- customer_events_relay is partial on it (migration 4)
            ORDER BY e.feed_xid, e.seq
            LIMIT $1"#,
        limit
    )
    .fetch_all(conn)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let after = FeedPosition {
        feed_xid: first.after_xid,
        seq: first.after_seq,
    };
    let skew = first.read_at - Utc::now();
    let after_id = first.after_id.clone();
    let mut held_back = false;
    let mut events = Vec::with_capacity(rows.len());
    for r in rows {
        let (true, Some(body)) = (r.visible, r.body) else {
            held_back = true;
            break;
        };
        events.push(Pending {
            position: FeedPosition {
                feed_xid: r.feed_xid,
                seq: r.seq,
            },
            id: r.id,
            org: r.org_id,
            mode: r.mode,
            kind: r.kind,
            body,
            recorded_at: r.recorded_at,
            traceparent: r.traceparent,
        });
    }
    Ok(Some(Batch {
        after,
        after_id,
        events,
        held_back,
        skew,
    }))
}

/// Moves the relay position to `to` (the last event JetStream acknowledged): one short
/// statement, the round's only write, just before its commit.
pub async fn advance(conn: &mut PgConnection, to: FeedPosition) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE event_relay SET feed_xid = $1, seq = $2, updated_at = now() WHERE id = 1",
        to.feed_xid,
        to.seq
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets an event JetStream refuses for good aside (`event_undeliverable`, migration 8) and
/// moves the relay position over it, in the round's transaction: the events after it are
/// published next. The event stays in `customer_events`. `reason` holds no personal data (the
/// client's error: sizes and limits).
pub async fn set_aside(
    conn: &mut PgConnection,
    event: &Pending,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO event_undeliverable (id, feed_xid, seq, org_id, mode, reason)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO NOTHING",
        event.id,
        event.position.feed_xid,
        event.position.seq,
        event.org,
        event.mode,
        reason
    )
    .execute(&mut *conn)
    .await?;
    advance(conn, event.position).await
}
