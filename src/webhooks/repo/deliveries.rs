//! SQL of the delivery log: listing, retry, recover, and ending the pending deliveries of a
//! webhook that is disabled. Tenant-bound like every route's statement.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::tenant::Tenant;

pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub struct AttemptRow {
    pub delivery_id: String,
    pub at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// A page of one webhook's deliveries, newest first, after `after` (created_at, id).
pub async fn list(
    conn: &mut PgConnection,
    tenant: &Tenant,
    webhook_id: &str,
    status: Option<&str>,
    after: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let (at, id) = after.unzip();
    sqlx::query_as!(
        DeliveryRow,
        r#"SELECT id, webhook_id, event_id, event_type, status, next_attempt_at, created_at
             FROM webhook_deliveries
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND webhook_id = $3
              AND created_at < 'infinity' -- webhook_deliveries_by_webhook is partial on it
              AND ($4::text IS NULL OR status = $4)
              AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6::text))
            ORDER BY created_at DESC, id DESC
            LIMIT $7"#,
        tenant.org,
        tenant.mode.as_str(),
        webhook_id,
        status,
        at,
        id,
        limit
    )
    .fetch_all(conn)
    .await
}

/// One delivery of one webhook.
pub async fn find(
    conn: &mut PgConnection,
    tenant: &Tenant,
    webhook_id: &str,
    id: &str,
) -> Result<Option<DeliveryRow>, sqlx::Error> {
    sqlx::query_as!(
        DeliveryRow,
        r#"SELECT id, webhook_id, event_id, event_type, status, next_attempt_at, created_at
             FROM webhook_deliveries
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND id = $3 AND webhook_id = $4"#,
        tenant.org,
        tenant.mode.as_str(),
        id,
        webhook_id
    )
    .fetch_optional(conn)
    .await
}

/// The attempts of these deliveries, in order.
pub async fn attempts_of(
    conn: &mut PgConnection,
    tenant: &Tenant,
    delivery_ids: &[String],
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as!(
        AttemptRow,
        r#"SELECT delivery_id, at, status_code, duration_ms, error, response_body
             FROM webhook_attempts
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND delivery_id = ANY($3)
            ORDER BY delivery_id, n"#,
        tenant.org,
        tenant.mode.as_str(),
        delivery_ids
    )
    .fetch_all(conn)
    .await
}

/// Makes a delivery due now (pending again after it ended). One whose attempt is in flight is
/// left alone: it is attempted already. `false`: no such delivery of this webhook.
pub async fn retry(
    conn: &mut PgConnection,
    tenant: &Tenant,
    webhook_id: &str,
    delivery_id: &str,
) -> Result<bool, sqlx::Error> {
    let found = sqlx::query_scalar!(
        r#"UPDATE webhook_deliveries
              SET status = 'pending',
                  next_attempt_at = CASE WHEN leased_until > now() THEN next_attempt_at
                                         ELSE now() END
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND id = $3 AND webhook_id = $4
        RETURNING 1 AS "found!""#,
        tenant.org,
        tenant.mode.as_str(),
        delivery_id,
        webhook_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// Ends the pending deliveries of a webhook that was just disabled (they are `failed`; retry or
/// recover brings them back).
pub async fn fail_pending(
    conn: &mut PgConnection,
    tenant: &Tenant,
    webhook_id: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        r#"UPDATE webhook_deliveries
              SET status = 'failed', next_attempt_at = NULL
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND webhook_id = $3 AND status = 'pending'
              AND created_at < 'infinity' -- webhook_deliveries_by_webhook is partial on it
              AND (leased_until IS NULL OR leased_until <= now())"#,
        tenant.org,
        tenant.mode.as_str(),
        webhook_id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// An event to deliver, as new deliveries are made of it.
pub struct EventKey {
    pub id: String,
    pub kind: String,
    pub customer_id: String,
    pub version: i64,
    pub recorded_at: DateTime<Utc>,
    pub occurred_at: DateTime<Utc>,
}

/// A page of the tenant's events that occurred at or after `since`, matched by `types` (empty:
/// all), in (occurred_at, customer_id, version) order after `after`.
pub async fn events_since(
    conn: &mut PgConnection,
    tenant: &Tenant,
    since: DateTime<Utc>,
    types: &[String],
    after: Option<(DateTime<Utc>, String, i64)>,
    limit: i64,
) -> Result<Vec<EventKey>, sqlx::Error> {
    let (at, customer, version) = match after {
        Some((at, customer, version)) => (Some(at), Some(customer), Some(version)),
        None => (None, None, None),
    };
    sqlx::query_as!(
        EventKey,
        r#"SELECT id, type AS kind, customer_id, version, recorded_at, occurred_at
             FROM customer_events
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND occurred_at >= $3
              AND occurred_at < 'infinity' -- the index's condition (migration 12)
              AND ($5::timestamptz IS NULL
                   OR (occurred_at, customer_id, version) > ($5, $6::text, $7::bigint))
              AND (cardinality($4::text[]) = 0 OR type = ANY($4))
            ORDER BY occurred_at, customer_id, version
            LIMIT $8"#,
        tenant.org,
        tenant.mode.as_str(),
        since,
        types,
        at,
        customer,
        version,
        limit
    )
    .fetch_all(conn)
    .await
}

/// New pending deliveries, due now: `(webhook, event, delivery id)` for each.
pub async fn insert_many(
    conn: &mut PgConnection,
    tenant: &Tenant,
    new: &[(String, &EventKey, String)],
) -> Result<u64, sqlx::Error> {
    let mut webhooks = Vec::with_capacity(new.len());
    let mut ids = Vec::with_capacity(new.len());
    let (mut events, mut kinds, mut customers, mut versions, mut recorded) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (webhook, event, id) in new {
        webhooks.push(webhook.clone());
        ids.push(id.clone());
        events.push(event.id.clone());
        kinds.push(event.kind.clone());
        customers.push(event.customer_id.clone());
        versions.push(event.version);
        recorded.push(event.recorded_at);
    }
    let done = sqlx::query!(
        r#"INSERT INTO webhook_deliveries (org_id, mode, id, webhook_id, event_id, event_type,
                                          customer_id, event_version, next_attempt_at,
                                          event_recorded_at)
           SELECT $1, $2, n.id, n.webhook_id, n.event_id, n.kind, n.customer_id, n.version, now(),
                  n.recorded_at
             FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::bigint[], $9::timestamptz[])
                  AS n(id, webhook_id, event_id, kind, customer_id, version, recorded_at)
            WHERE set_config('app.tenant', $2 || '/' || $1, true) IS NOT NULL"#,
        tenant.org,
        tenant.mode.as_str(),
        &ids,
        &webhooks,
        &events,
        &kinds,
        &customers,
        &versions,
        &recorded
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
