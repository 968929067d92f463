//! All SQL about webhooks. Every statement is scoped by tenant (org_id, mode) and binds that
//! tenant for the row-level security policies in the statement itself, as the customers'
//! statements do (see `customers::repo`'s header):
//!
//! ```sql
//! AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
//! ```
//!
//! The dispatcher's and the senders' statements work across tenants
//! (`consumers::dispatcher::outbox`): their transactions set `app.webhooks = on` instead
//! (migration 9). Events are read from `customer_events` by SQL of this module's own: the
//! webhooks know stored events, not customers.

pub mod deliveries;
pub mod sealed;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::PgConnection;

use super::model::{Webhook, Writable};
use crate::tenant::Tenant;

struct Row {
    id: String,
    url: String,
    events: Vec<String>,
    enabled: bool,
    description: Option<String>,
    metadata: Value,
    disabled_reason: Option<String>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Row> for Webhook {
    fn from(r: Row) -> Self {
        let metadata = match r.metadata {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Webhook {
            id: r.id,
            writable: Writable {
                url: r.url,
                events: r.events,
                enabled: r.enabled,
                description: r.description,
                metadata,
            },
            disabled_reason: r.disabled_reason,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A new webhook and its first secret (sealed), in one statement.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: &str,
    w: &Writable,
    sealed: &[u8],
) -> Result<Webhook, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        r#"WITH w AS (
               INSERT INTO webhooks (org_id, mode, id, url, events, enabled, description, metadata,
                                     disabled_reason, created_at, updated_at)
               SELECT $1, $2, $3, $4, $5, $6, $7, $8,
                      CASE WHEN $6 THEN NULL ELSE 'manual' END, now(), now()
                WHERE set_config('app.tenant', $2 || '/' || $1, true) IS NOT NULL
               RETURNING *),
           s AS (
               INSERT INTO webhook_secrets (org_id, mode, webhook_id, sealed)
               SELECT org_id, mode, id, $9 FROM w)
           SELECT id AS "id!", url AS "url!", events AS "events!", enabled AS "enabled!",
                  description, metadata AS "metadata!", disabled_reason, version AS "version!",
                  created_at AS "created_at!", updated_at AS "updated_at!"
             FROM w"#,
        tenant.org,
        tenant.mode.as_str(),
        id,
        w.url,
        &w.events,
        w.enabled,
        w.description,
        Value::Object(w.metadata.clone()),
        sealed
    )
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// One webhook of the tenant; `lock`: FOR UPDATE, for a read-modify-write.
pub async fn find(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: &str,
    lock: bool,
) -> Result<Option<Webhook>, sqlx::Error> {
    let row = if lock {
        sqlx::query_as!(
            Row,
            r#"SELECT id, url, events, enabled, description, metadata, disabled_reason, version,
                      created_at, updated_at
                 FROM webhooks
                WHERE org_id = $1 AND mode = $2
                  AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                  AND id = $3
                  FOR UPDATE"#,
            tenant.org,
            tenant.mode.as_str(),
            id
        )
        .fetch_optional(conn)
        .await?
    } else {
        sqlx::query_as!(
            Row,
            r#"SELECT id, url, events, enabled, description, metadata, disabled_reason, version,
                      created_at, updated_at
                 FROM webhooks
                WHERE org_id = $1 AND mode = $2
                  AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                  AND id = $3"#,
            tenant.org,
            tenant.mode.as_str(),
            id
        )
        .fetch_optional(conn)
        .await?
    };
    Ok(row.map(Into::into))
}

/// Writes the next version. Enabling clears `disabled_reason` (and the failing clock);
/// disabling sets `reason` unless the webhook was disabled already (its reason stays).
pub async fn update(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: &str,
    w: &Writable,
    reason: &str,
) -> Result<Webhook, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        r#"UPDATE webhooks
              SET url = $4, events = $5, enabled = $6, description = $7, metadata = $8,
                  disabled_reason = CASE WHEN $6 THEN NULL
                                         WHEN enabled THEN $9
                                         ELSE disabled_reason END,
                  failing_since = CASE WHEN $6 AND NOT enabled THEN NULL ELSE failing_since END,
                  version = version + 1, updated_at = now()
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND id = $3
        RETURNING id, url, events, enabled, description, metadata, disabled_reason, version,
                  created_at, updated_at"#,
        tenant.org,
        tenant.mode.as_str(),
        id,
        w.url,
        &w.events,
        w.enabled,
        w.description,
        Value::Object(w.metadata.clone()),
        reason
    )
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// A page of the tenant's webhooks, newest first, after `after` (created_at, id).
pub async fn list(
    conn: &mut PgConnection,
    tenant: &Tenant,
    after: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<Webhook>, sqlx::Error> {
    let (at, id) = after.unzip();
    let rows = sqlx::query_as!(
        Row,
        r#"SELECT id, url, events, enabled, description, metadata, disabled_reason, version,
                  created_at, updated_at
             FROM webhooks
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::text))
            ORDER BY created_at DESC, id DESC
            LIMIT $5"#,
        tenant.org,
        tenant.mode.as_str(),
        at,
        id,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The current secret, sealed.
pub async fn current_secret(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: &str,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT sealed
             FROM webhook_secrets
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND webhook_id = $3 AND expires_at IS NULL
            ORDER BY n DESC
            LIMIT 1"#,
        tenant.org,
        tenant.mode.as_str(),
        id
    )
    .fetch_optional(conn)
    .await
}

/// A new current secret. The secrets still signing stop after `grace_secs` at the latest (at
/// once with 0); one already ending sooner keeps its end.
pub async fn rotate_secret(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: &str,
    sealed: &[u8],
    grace_secs: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"WITH old AS (
               UPDATE webhook_secrets
                  SET expires_at = LEAST(COALESCE(expires_at, 'infinity'),
                                         now() + make_interval(secs => $5::bigint::float8))
                WHERE org_id = $1 AND mode = $2
                  AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                  AND webhook_id = $3 AND (expires_at IS NULL OR expires_at > now())
               RETURNING 1)
           INSERT INTO webhook_secrets (org_id, mode, webhook_id, sealed)
           SELECT $1, $2, $3, $4
            WHERE set_config('app.tenant', $2 || '/' || $1, true) IS NOT NULL
              AND (SELECT count(*) FROM old) >= 0"#,
        tenant.org,
        tenant.mode.as_str(),
        id,
        sealed,
        grace_secs
    )
    .execute(conn)
    .await?;
    Ok(())
}
