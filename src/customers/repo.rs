//! All SQL about customers. Every statement is scoped by tenant (org_id, mode), and also binds
//! that tenant for the row-level security policies of migration 3, in the statement itself:
//!
//! ```sql
//! AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
//! ```
//!
//! The condition refers to no row, so PostgreSQL evaluates it once, as a gate ("One-Time
//! Filter") before the scan below it starts: the policy, checked on every row, always sees the
//! binding. `is_local` ends it with the statement's transaction, so it never outlives the
//! request. No extra round trip; and a statement that forgot it finds nothing.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, Postgres, QueryBuilder};

use super::model::{CustomerRow, CustomerValues};
use crate::auth::Tenant;
use crate::idempotency::{PendingKey, WriteResponse};

pub async fn find(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    id: &str,
) -> Result<Option<CustomerRow>, sqlx::Error> {
    sqlx::query_as!(
        CustomerRow,
        r#"SELECT id, type AS kind, status, email, phone, first_name, last_name, policy, metadata,
                  version, created_at, updated_at
             FROM customers
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND id = $3"#,
        tenant.org,
        tenant.mode.as_str(),
        id
    )
    .fetch_optional(db)
    .await
}

/// `find` that also claims the key of a keyed PATCH, in one statement (the executor's claim,
/// `idempotency::store::claim`, repeated here as a CTE to save its round trip: keep the two
/// INSERTs the same). `claimed` is false
/// when the key was used or is in use; the customer is then of no interest.
///
/// The tenant gate runs first, then the customer is read, then the claim (in the projection)
/// inserts the key row, waiting, bounded by `lock_timeout`, on a duplicate still in flight. The
/// customer was read before any such wait, so it may be stale by then: a stale version loses
/// the compare-and-set, and the caller does not trust it for no-op detection.
pub async fn claim_and_find(
    conn: &mut sqlx::PgConnection,
    pending: &PendingKey,
    id: &str,
) -> Result<(bool, Option<CustomerRow>), sqlx::Error> {
    let tenant = &pending.tenant;
    let row = sqlx::query!(
        r#"WITH claim AS (
               INSERT INTO idempotency_keys (org_id, mode, key, fingerprint, expires_at)
               SELECT $1, $2, $4, $5, now() + make_interval(secs => $6)
                WHERE set_config('app.tenant', $2 || '/' || $1, true) IS NOT NULL
                  AND set_config('lock_timeout', $7, true) IS NOT NULL
               ON CONFLICT (org_id, mode, key) DO UPDATE
                  SET fingerprint = EXCLUDED.fingerprint, status_code = NULL, body = NULL,
                      location = NULL, etag = NULL, created_at = now(),
                      expires_at = EXCLUDED.expires_at
                WHERE idempotency_keys.expires_at <= now()
               RETURNING set_config('lock_timeout', '0', true) IS NOT NULL AS claimed
           )
           SELECT EXISTS (SELECT 1 FROM claim) AS "claimed!",
                  c.id AS "id?", c.type AS "kind?", c.status AS "status?", c.email, c.phone,
                  c.first_name, c.last_name, c.policy, c.metadata AS "metadata?",
                  c.version AS "version?", c.created_at AS "created_at?",
                  c.updated_at AS "updated_at?"
             FROM (SELECT 1) AS one
             LEFT JOIN customers c ON c.org_id = $1 AND c.mode = $2 AND c.id = $3
            WHERE (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL"#,
        tenant.org,
        tenant.mode.as_str(),
        id,
        pending.key.as_str(),
        &pending.fingerprint[..],
        pending.claim_retention_secs(),
        pending.claim_wait_ms()
    )
    .fetch_one(conn)
    .await?;
    let customer = match (
        row.id,
        row.kind,
        row.status,
        row.metadata,
        row.version,
        row.created_at,
        row.updated_at,
    ) {
        (
            Some(id),
            Some(kind),
            Some(status),
            Some(metadata),
            Some(version),
            Some(created_at),
            Some(updated_at),
        ) => Some(CustomerRow {
            id,
            kind,
            status,
            email: row.email,
            phone: row.phone,
            first_name: row.first_name,
            last_name: row.last_name,
            policy: row.policy,
            metadata,
            version,
            created_at,
            updated_at,
        }),
        _ => None,
    };
    Ok((row.claimed, customer))
}

/// Like `find`, but locks the row until the transaction ends: used when optimistic updates
/// keep losing to concurrent writers, so that a PATCH always makes progress.
pub async fn find_for_update(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    id: &str,
) -> Result<Option<CustomerRow>, sqlx::Error> {
    sqlx::query_as!(
        CustomerRow,
        r#"SELECT id, type AS kind, status, email, phone, first_name, last_name, policy, metadata,
                  version, created_at, updated_at
             FROM customers
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND id = $3
              FOR UPDATE"#,
        tenant.org,
        tenant.mode.as_str(),
        id
    )
    .fetch_optional(db)
    .await
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    id: &str,
    kind: &str,
    values: &CustomerValues,
    now: DateTime<Utc>,
) -> Result<CustomerRow, sqlx::Error> {
    sqlx::query_as!(
        CustomerRow,
        r#"INSERT INTO customers (org_id, mode, id, type, email, phone, first_name, last_name,
                                  policy, metadata, created_at, updated_at)
           SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11
            WHERE set_config('app.tenant', $2 || '/' || $1, true) IS NOT NULL
           RETURNING id, type AS kind, status, email, phone, first_name, last_name, policy,
                     metadata, version, created_at, updated_at"#,
        tenant.org,
        tenant.mode.as_str(),
        id,
        kind,
        values.email,
        values.phone,
        values.first_name,
        values.last_name,
        values.policy,
        values.metadata,
        now
    )
    .fetch_one(db)
    .await
}

/// Compare-and-set: writes the fields only if the customer is still at `version`, making it
/// `version + 1` with `updated_at`. `false` means someone else changed it in between (or it
/// vanished); the caller re-reads and retries. With `save`, the same statement stores the
/// idempotent response under its key, but only when the customer was written: the keyed PATCH
/// then needs no separate round trip for it.
pub async fn update_fields(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    id: &str,
    version: i64,
    values: &CustomerValues,
    updated_at: DateTime<Utc>,
    save: Option<(&PendingKey, &WriteResponse)>,
) -> Result<bool, sqlx::Error> {
    let Some((pending, response)) = save else {
        let written = sqlx::query_scalar!(
            r#"UPDATE customers
                  SET email = $5, phone = $6, first_name = $7, last_name = $8, policy = $9,
                      metadata = $10, version = version + 1, updated_at = $11
                WHERE org_id = $1 AND mode = $2
                  AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                  AND id = $3 AND version = $4
                  AND status <> 'deleted'
               RETURNING 1 AS "written!""#,
            tenant.org,
            tenant.mode.as_str(),
            id,
            version,
            values.email,
            values.phone,
            values.first_name,
            values.last_name,
            values.policy,
            values.metadata,
            updated_at
        )
        .fetch_optional(db)
        .await?;
        return Ok(written.is_some());
    };
    let written = sqlx::query_scalar!(
        r#"WITH written AS (
               UPDATE customers
                  SET email = $5, phone = $6, first_name = $7, last_name = $8, policy = $9,
                      metadata = $10, version = version + 1, updated_at = $11
                WHERE org_id = $1 AND mode = $2
                  AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                  AND id = $3 AND version = $4
                  AND status <> 'deleted'
               RETURNING 1
           ), saved AS (
               UPDATE idempotency_keys
                  SET status_code = $13, body = $14, location = NULL, etag = $15
                WHERE org_id = $1 AND mode = $2
                  AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
                  AND key = $12
                  AND EXISTS (SELECT 1 FROM written)
               RETURNING 1
           )
           SELECT EXISTS (SELECT 1 FROM written) AND EXISTS (SELECT 1 FROM saved) AS "written!""#,
        tenant.org,
        tenant.mode.as_str(),
        id,
        version,
        values.email,
        values.phone,
        values.first_name,
        values.last_name,
        values.policy,
        values.metadata,
        updated_at,
        pending.key.as_str(),
        response.status.as_u16() as i16,
        response.body,
        response.etag
    )
    .fetch_one(db)
    .await?;
    Ok(written)
}

/// Moves a customer from `from` to `to` in one statement, honouring an expected version
/// (If-Match). `None` when the customer is missing, not in `from`, or at another version; the
/// caller reads it to say which.
pub async fn transition(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    id: &str,
    from: &[&str],
    to: &str,
    expected_version: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Option<CustomerRow>, sqlx::Error> {
    let from: Vec<String> = from.iter().map(|s| (*s).to_owned()).collect();
    sqlx::query_as!(
        CustomerRow,
        r#"UPDATE customers
              SET status = $5, version = version + 1, updated_at = GREATEST($7, updated_at)
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND id = $3 AND status = ANY($4)
              AND ($6::bigint IS NULL OR version = $6)
           RETURNING id, type AS kind, status, email, phone, first_name, last_name, policy,
                     metadata, version, created_at, updated_at"#,
        tenant.org,
        tenant.mode.as_str(),
        id,
        &from,
        to,
        expected_version,
        now
    )
    .fetch_optional(db)
    .await
}

pub struct ListFilter<'a> {
    pub status: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub email: Option<&'a str>,
}

/// One page, newest first, by keyset: strictly after `after` = (created_at, id) of the last
/// customer of the previous page. The WHERE clause is built from fixed fragments so that each
/// filter combination matches its index (the default listing uses the partial index on
/// `status <> 'deleted'`), and a page costs the same however deep it is.
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant: &Tenant,
    filter: &ListFilter<'_>,
    after: Option<(DateTime<Utc>, &str)>,
    limit: i64,
) -> Result<Vec<CustomerRow>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT id, type AS kind, status, email, phone, first_name, last_name, policy, metadata, \
                version, created_at, updated_at \
           FROM customers WHERE org_id = ",
    );
    q.push_bind(&tenant.org)
        .push(" AND mode = ")
        .push_bind(tenant.mode.as_str())
        .push(" AND (SELECT set_config('app.tenant', ")
        .push_bind(format!("{}/{}", tenant.mode.as_str(), tenant.org))
        .push(", true)) IS NOT NULL");
    match filter.status {
        Some(status) => q.push(" AND status = ").push_bind(status),
        None => q.push(" AND status <> 'deleted'"),
    };
    if let Some(kind) = filter.kind {
        q.push(" AND type = ").push_bind(kind);
    }
    if let Some(email) = filter.email {
        // email_lower, not lower(email): see migration 3 (leakproof conditions under RLS).
        q.push(" AND email_lower = lower(")
            .push_bind(email)
            .push(")");
    }
    if let Some((created_at, id)) = after {
        q.push(" AND (created_at, id) < (")
            .push_bind(created_at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(limit);
    q.build_query_as::<CustomerRow>().fetch_all(db).await
}
