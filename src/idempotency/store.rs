//! All SQL about idempotency keys. Like the customers' SQL, each statement binds its tenant
//! for the row-level security policies in its own tenant condition (see customers::repo).

use actix_web::http::StatusCode;
use sqlx::PgConnection;

use super::{IdempotencyKey, PendingKey, WriteResponse};
use crate::auth::Tenant;

pub struct Stored {
    pub fingerprint: Vec<u8>,
    pub response: WriteResponse,
}

pub enum Claim {
    /// This transaction owns the key now; its response must be saved before commit.
    Claimed,
    /// The key was used before (and not expired): replay or refuse.
    Existing(Stored),
    /// A row without a response: cannot be committed by this service, so only a foreign writer
    /// could leave it; treated like a request still running.
    InProgress,
}

/// Takes the key for this transaction. An insert that meets the uncommitted row of a request
/// still running blocks until that request's transaction ends, then sees its committed row, so a
/// duplicate never runs twice. An expired row is taken over.
///
/// The wait is bounded by `lock_timeout = wait`, set in the same statement before the insert
/// (the WHERE of the SELECT runs first) and set back to 0 in RETURNING, which runs only for a
/// claimed key and only after any wait: the request's own work is never cut off by the bound
/// meant for duplicates (the statement timeout still bounds it). One round trip for all of it.
///
/// `customers::repo::claim_and_find` runs this same INSERT as a CTE beside the read of a keyed
/// PATCH (sqlx checks each statement as one literal, so the text is repeated there): a change to
/// one is a change to both.
pub async fn claim(conn: &mut PgConnection, pending: &PendingKey) -> Result<Claim, sqlx::Error> {
    let (tenant, key) = (&pending.tenant, &pending.key);
    let claimed = sqlx::query_scalar!(
        r#"INSERT INTO idempotency_keys (org_id, mode, key, fingerprint, expires_at)
           SELECT $1, $2, $3, $4, now() + make_interval(secs => $5)
            WHERE set_config('app.tenant', $2 || '/' || $1, true) IS NOT NULL
              AND set_config('lock_timeout', $6, true) IS NOT NULL
           ON CONFLICT (org_id, mode, key) DO UPDATE
              SET fingerprint = EXCLUDED.fingerprint, status_code = NULL, body = NULL,
                  location = NULL, etag = NULL, created_at = now(),
                  expires_at = EXCLUDED.expires_at
            WHERE idempotency_keys.expires_at <= now()
           RETURNING set_config('lock_timeout', '0', true) IS NOT NULL AS "claimed!""#,
        tenant.org,
        tenant.mode.as_str(),
        key.as_str(),
        &pending.fingerprint[..],
        pending.claim_retention_secs(),
        pending.claim_wait_ms()
    )
    .fetch_optional(&mut *conn)
    .await?;
    if claimed.is_some() {
        return Ok(Claim::Claimed);
    }
    match existing(conn, tenant, key).await? {
        Some(claim) => Ok(claim),
        // Swept between the two statements: it had expired, so the key is free again.
        None => Box::pin(claim(conn, pending)).await,
    }
}

/// The key's row when a claim found it taken: its stored response, or `InProgress` for a row
/// without one. `None` when the row is gone (it had expired and was swept in between).
pub async fn existing(
    conn: &mut PgConnection,
    tenant: &Tenant,
    key: &IdempotencyKey,
) -> Result<Option<Claim>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT fingerprint, status_code, body, location, etag
             FROM idempotency_keys
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND key = $3"#,
        tenant.org,
        tenant.mode.as_str(),
        key.as_str()
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (Some(status), Some(body)) = (row.status_code, row.body) else {
        return Ok(Some(Claim::InProgress));
    };
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok(Some(Claim::Existing(Stored {
        fingerprint: row.fingerprint,
        response: WriteResponse {
            status,
            body,
            location: row.location,
            etag: row.etag,
            stored: true,
        },
    })))
}

/// Stores the response in the claiming transaction, so it commits with the business write.
pub async fn save(
    conn: &mut PgConnection,
    tenant: &Tenant,
    key: &IdempotencyKey,
    response: &WriteResponse,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE idempotency_keys
              SET status_code = $4, body = $5, location = $6, etag = $7
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND key = $3"#,
        tenant.org,
        tenant.mode.as_str(),
        key.as_str(),
        response.status.as_u16() as i16,
        response.body,
        response.location,
        response.etag
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes up to `batch` expired keys; returns how many. Rows locked by a request that is
/// reusing an expired key are skipped, so the sweeper never waits on a request.
///
/// The sweeper works across tenants, so it binds none: its transaction sets `app.sweeper`, which
/// the policies of migration 3 answer with expired keys only.
pub async fn delete_expired(conn: &mut PgConnection, batch: i64) -> Result<u64, sqlx::Error> {
    use sqlx::Connection;
    let mut tx = conn
        .begin_with("BEGIN; SELECT set_config('app.sweeper', 'on', true)")
        .await?;
    let done = sqlx::query!(
        r#"DELETE FROM idempotency_keys
            WHERE ctid IN (SELECT ctid FROM idempotency_keys
                            WHERE expires_at <= now()
                            ORDER BY expires_at
                            LIMIT $1
                              FOR UPDATE SKIP LOCKED)"#,
        batch
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}
