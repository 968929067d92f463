//! All SQL that reads events (they are written by the customer writes, in the same statement:
//! see `customers::repo`). Each statement binds its tenant for the row-level security policies
//! the way the customers' statements do.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;

use crate::customers::domain::CustomerId;
use crate::tenant::Tenant;

/// An event as stored: its place and its JSON.
#[derive(Debug)]
pub struct StoredEvent {
    pub version: i64,
    pub position: FeedPosition,
    pub body: String,
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
pub async fn history(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    customer: &CustomerId,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT version, feed_xid, seq, body::text AS "body!"
             FROM customer_events
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND customer_id = $3
              AND ($4::bigint IS NULL OR version < $4)
            ORDER BY version DESC
            LIMIT $5"#,
        tenant.org,
        tenant.mode.as_str(),
        customer.as_str(),
        before,
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| StoredEvent {
            version: r.version,
            position: FeedPosition {
                feed_xid: r.feed_xid,
                seq: r.seq,
            },
            body: r.body,
        })
        .collect())
}

/// What is known of a customer around an instant: its last event at or before `at`, and its
/// first event of all (the oldest state the history can give back, through `data.previous`).
pub struct Around {
    pub at_or_before: Option<StoredEvent>,
    pub first: Option<StoredEvent>,
}

pub async fn around(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    customer: &CustomerId,
    at: DateTime<Utc>,
) -> Result<Around, sqlx::Error> {
    let rows = sqlx::query!(
        r#"(SELECT true AS "before!", version AS "version!", feed_xid AS "feed_xid!",
                   seq AS "seq!", body::text AS "body!"
              FROM customer_events
             WHERE org_id = $1 AND mode = $2
               AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
               AND customer_id = $3 AND occurred_at <= $4
             ORDER BY version DESC
             LIMIT 1)
           UNION ALL
           (SELECT false, version, feed_xid, seq, body::text
              FROM customer_events
             WHERE org_id = $1 AND mode = $2
               AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
               AND customer_id = $3
             ORDER BY version
             LIMIT 1)"#,
        tenant.org,
        tenant.mode.as_str(),
        customer.as_str(),
        at
    )
    .fetch_all(db)
    .await?;
    let mut around = Around {
        at_or_before: None,
        first: None,
    };
    for r in rows {
        let event = StoredEvent {
            version: r.version,
            position: FeedPosition {
                feed_xid: r.feed_xid,
                seq: r.seq,
            },
            body: r.body,
        };
        if r.before {
            around.at_or_before = Some(event);
        } else {
            around.first = Some(event);
        }
    }
    Ok(around)
}

/// The filters of the feed beyond the tenant.
#[derive(Debug, Default)]
pub struct FeedFilter {
    pub kind: Option<&'static str>,
    pub customer: Option<String>,
}

/// The tenant's feed, oldest first, strictly after `after`, holding back every event whose
/// transaction, or a transaction that began before it, may still be running: only events with
/// a feed_xid below the oldest running transaction (`pg_snapshot_xmin`) are shown, so a
/// follower never passes an event that could still commit before its position.
pub async fn feed(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    filter: &FeedFilter,
    after: FeedPosition,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = match &filter.customer {
        // One customer's events are in version order in the feed as well: read them by
        // version, from the customer's own index.
        Some(customer) => sqlx::query!(
            r#"SELECT version, feed_xid, seq, body::text AS "body!"
                 FROM customer_events
                WHERE org_id = $1 AND mode = $2
                  AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                  AND customer_id = $3
                  AND (feed_xid, seq) > ($4, $5)
                  AND feed_xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
                  AND ($6::text IS NULL OR type = $6)
                ORDER BY version
                LIMIT $7"#,
            tenant.org,
            tenant.mode.as_str(),
            customer,
            after.feed_xid,
            after.seq,
            filter.kind,
            limit
        )
        .fetch_all(db)
        .await?
        .into_iter()
        .map(|r| (r.version, r.feed_xid, r.seq, r.body))
        .collect::<Vec<_>>(),
        None => sqlx::query!(
            r#"SELECT version, feed_xid, seq, body::text AS "body!"
                 FROM customer_events
                WHERE org_id = $1 AND mode = $2
                  AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                  AND (feed_xid, seq) > ($3, $4) AND seq > 0
                  AND feed_xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
                  AND ($5::text IS NULL OR type = $5)
                ORDER BY feed_xid, seq
                LIMIT $6"#,
            tenant.org,
            tenant.mode.as_str(),
            after.feed_xid,
            after.seq,
            filter.kind,
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
        .map(|(version, feed_xid, seq, body)| StoredEvent {
            version,
            position: FeedPosition { feed_xid, seq },
            body,
        })
        .collect())
}
