//! All SQL that reads events (they are written by the customer writes, in the same statement:
//! see `customers::repo`). Each statement binds its tenant for the row-level security policies
//! the way the customers' statements do.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;

use crate::ids::CustomerId;
use crate::tenant::Tenant;

/// An event as stored: its place and its JSON.
#[derive(Debug)]
pub struct StoredEvent {
    pub version: i64,
    pub position: FeedPosition,
    pub body: String,
}

impl StoredEvent {
    fn new(version: i64, feed_xid: i64, seq: i64, body: String) -> Self {
        Self {
            version,
            position: FeedPosition { feed_xid, seq },
            body,
        }
    }
}

/// A place in the feed: events are ordered by (feed_xid, seq); see the migration of
/// `customer_events` and docs/events.md for why that order never skips an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FeedPosition {
    #[serde(rename = "x")]
    pub feed_xid: i64,
    #[serde(rename = "s")]
    pub seq: i64,
}

/// One customer's events, newest first, strictly before version `before` when given.
///
/// Two statements rather than one with `($n IS NULL OR version < $n)`: under a generic plan
/// (which PostgreSQL switches to after five executions) that condition is a filter, not a bound
/// of the index scan, and a deep page read every newer version first.
pub async fn history(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    customer: &CustomerId,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = match before {
        None => sqlx::query!(
            r#"SELECT version, feed_xid, seq, body::text AS "body!"
                 FROM customer_events
                WHERE org_id = $1 AND mode = $2
                  AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                  AND customer_id = $3
                ORDER BY version DESC
                LIMIT $4"#,
            tenant.org,
            tenant.mode.as_str(),
            customer.as_str(),
            limit
        )
        .fetch_all(db)
        .await?
        .into_iter()
        .map(|r| (r.version, r.feed_xid, r.seq, r.body))
        .collect::<Vec<_>>(),
        Some(before) => sqlx::query!(
            r#"SELECT version, feed_xid, seq, body::text AS "body!"
                 FROM customer_events
                WHERE org_id = $1 AND mode = $2
                  AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                  AND customer_id = $3
                  AND version < $4
                ORDER BY version DESC
                LIMIT $5"#,
            tenant.org,
            tenant.mode.as_str(),
            customer.as_str(),
            before,
            limit
        )
        .fetch_all(db)
        .await?
        .into_iter()
        .map(|r| (r.version, r.feed_xid, r.seq, r.body))
        .collect(),
    };
    Ok(rows
        .into_iter()
        .map(|(version, feed_xid, seq, body)| StoredEvent::new(version, feed_xid, seq, body))
        .collect())
}

/// The customer's last event at or before `at`: one probe of the as-of index (migration 7),
/// newest first. The index is partial on a condition only this statement states
/// (`occurred_at > '-infinity'`), so no other statement is planned on it.
///
/// One table, one probe, and nothing else in the statement, on purpose: PostgreSQL plans a
/// prepared statement generically (once per connection) only while the generic plan's estimated
/// cost is not above the custom plans'. When this probe shared a statement with the first-event
/// probe below, the estimates of the two for a customer with a long history tipped that balance,
/// and the statement was planned anew on every execution (0.7 ms of planning for 0.2 ms of
/// execution: the bench's `as_of` at a third of the throughput on 200,000 events; see
/// docs/performance.md#reads-at-any-depth-of-history).
pub async fn at_or_before(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    customer: &CustomerId,
    at: DateTime<Utc>,
) -> Result<Option<StoredEvent>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT version, feed_xid, seq, body::text AS "body!"
             FROM customer_events
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND customer_id = $3
              AND occurred_at <= $4 AND occurred_at > '-infinity'
            ORDER BY occurred_at DESC, version DESC
            LIMIT 1"#,
        tenant.org,
        tenant.mode.as_str(),
        customer.as_str(),
        at
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| StoredEvent::new(r.version, r.feed_xid, r.seq, r.body)))
}

/// The customer's first event still stored (the oldest state its history can give back,
/// through `data.previous`): one probe of the primary key. Asked only when no event is at or
/// before an instant, which is rare (an instant before the history began).
pub async fn first(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    customer: &CustomerId,
) -> Result<Option<StoredEvent>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT version, feed_xid, seq, body::text AS "body!"
             FROM customer_events
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND customer_id = $3
            ORDER BY version
            LIMIT 1"#,
        tenant.org,
        tenant.mode.as_str(),
        customer.as_str()
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| StoredEvent::new(r.version, r.feed_xid, r.seq, r.body)))
}

/// The filters of the feed beyond the tenant.
#[derive(Debug, Default)]
pub struct FeedFilter {
    pub kind: Option<&'static str>,
    pub customer: Option<String>,
}

/// A page of the feed as read, with what the reading knows beyond its events.
#[derive(Debug)]
pub struct FeedPage {
    pub events: Vec<StoredEvent>,
    /// The oldest transaction still running when the page was read (`pg_snapshot_xmin` of the
    /// statement's own snapshot): every event with a lower `feed_xid` was visible to the
    /// statement, so a page that is not full has seen every matching event below it.
    pub horizon: i64,
    /// With a customer: its newest version visible to the statement (None: no event visible).
    pub newest_version: Option<i64>,
}

/// The tenant's feed, oldest first, strictly after `after` (and, with a customer, after its
/// version `after_version`), holding back every event whose transaction, or a transaction that
/// began before it, may still be running: only events with a feed_xid below the oldest running
/// transaction (`pg_snapshot_xmin`) are shown, so a follower never passes an event that could
/// still commit before its position.
///
/// Each shape reads an index range that starts at the cursor and stops after `limit` events:
/// the whole feed its feed index, a type its own index (`customer_events_feed_by_type`), a
/// customer its primary key from the version after the cursor's. The horizon is read in the
/// same statement, so the caller may move the cursor up to it (see docs/events.md).
pub async fn feed(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    filter: &FeedFilter,
    after: FeedPosition,
    after_version: i64,
    limit: i64,
) -> Result<FeedPage, sqlx::Error> {
    type Row = (Option<i64>, Option<i64>, Option<i64>, Option<String>);
    let (horizon, newest_version, rows): (i64, Option<i64>, Vec<Row>) = match (
        &filter.customer,
        filter.kind,
    ) {
        // One customer's events are in version order in the feed as well: read them by
        // version, from the customer's primary key, starting after the cursor's version.
        (Some(customer), kind) => {
            let rows = sqlx::query!(
                r#"SELECT h.horizon AS "horizon!", n.version AS "newest?", e.version AS "version?",
                          e.feed_xid AS "feed_xid?", e.seq AS "seq?", e.body AS "body?"
                     FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon) h
                     LEFT JOIN LATERAL (
                          SELECT version FROM customer_events
                           WHERE org_id = $1 AND mode = $2
                             AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                             AND customer_id = $3
                             AND feed_xid < h.horizon
                           ORDER BY version DESC
                           LIMIT 1) n ON true
                     LEFT JOIN LATERAL (
                          SELECT version, feed_xid, seq, body::text AS body
                            FROM customer_events
                           WHERE org_id = $1 AND mode = $2
                             AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                             AND customer_id = $3
                             AND version > $4
                             AND (feed_xid, seq) > ($5, $6)
                             AND feed_xid < h.horizon
                             AND ($7::text IS NULL OR type = $7)
                           ORDER BY version
                           LIMIT $8) e ON true"#,
                tenant.org,
                tenant.mode.as_str(),
                customer,
                after_version,
                after.feed_xid,
                after.seq,
                kind,
                limit
            )
            .fetch_all(db)
            .await?;
            let horizon = rows.first().map_or(0, |r| r.horizon);
            let newest = rows.first().and_then(|r| r.newest);
            let rows = rows
                .into_iter()
                .map(|r| (r.version, r.feed_xid, r.seq, r.body))
                .collect();
            (horizon, newest, rows)
        }
        (None, None) => {
            let rows = sqlx::query!(
                r#"SELECT h.horizon AS "horizon!", e.version AS "version?",
                          e.feed_xid AS "feed_xid?", e.seq AS "seq?", e.body AS "body?"
                     FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon) h
                     LEFT JOIN LATERAL (
                          SELECT version, feed_xid, seq, body::text AS body
                            FROM customer_events
                           WHERE org_id = $1 AND mode = $2
                             AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                             AND (feed_xid, seq) > ($3, $4) AND seq > 0
                             AND feed_xid < h.horizon
                           ORDER BY feed_xid, seq
                           LIMIT $5) e ON true"#,
                tenant.org,
                tenant.mode.as_str(),
                after.feed_xid,
                after.seq,
                limit
            )
            .fetch_all(db)
            .await?;
            let horizon = rows.first().map_or(0, |r| r.horizon);
            let rows = rows
                .into_iter()
                .map(|r| (r.version, r.feed_xid, r.seq, r.body))
                .collect();
            (horizon, None, rows)
        }
        // A type has its own feed index (`type IS NOT NULL`, which `type = $n` implies and no
        // other statement states): a rare type costs the events of that type, not the tenant's.
        (None, Some(kind)) => {
            let rows = sqlx::query!(
                r#"SELECT h.horizon AS "horizon!", e.version AS "version?",
                          e.feed_xid AS "feed_xid?", e.seq AS "seq?", e.body AS "body?"
                     FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon) h
                     LEFT JOIN LATERAL (
                          SELECT version, feed_xid, seq, body::text AS body
                            FROM customer_events
                           WHERE org_id = $1 AND mode = $2
                             AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                             AND type = $3
                             AND (feed_xid, seq) > ($4, $5)
                             AND feed_xid < h.horizon
                           ORDER BY feed_xid, seq
                           LIMIT $6) e ON true"#,
                tenant.org,
                tenant.mode.as_str(),
                kind,
                after.feed_xid,
                after.seq,
                limit
            )
            .fetch_all(db)
            .await?;
            let horizon = rows.first().map_or(0, |r| r.horizon);
            let rows = rows
                .into_iter()
                .map(|r| (r.version, r.feed_xid, r.seq, r.body))
                .collect();
            (horizon, None, rows)
        }
    };
    let mut events: Vec<StoredEvent> = rows
        .into_iter()
        .filter_map(|(version, feed_xid, seq, body)| {
            Some(StoredEvent::new(version?, feed_xid?, seq?, body?))
        })
        .collect();
    // The rows come in the inner scan's order; sorting the page itself keeps that a guarantee.
    events.sort_by_key(|e| e.position);
    Ok(FeedPage {
        events,
        horizon,
        newest_version,
    })
}
