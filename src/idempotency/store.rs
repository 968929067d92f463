//! The statements about idempotency keys that no other statement continues: the plain claim,
//! the stored reply of a key that was taken, the plain save, and the sweeper's delete.

use actix_web::http::StatusCode;
use sqlx::PgConnection;
use tracing::Instrument;

use super::binds::{Claim, SaveReply};
use super::sql::{query_claiming, query_saving};
use super::Reply;

/// A key that a claim found taken.
pub enum Taken {
    /// Used before (and not expired): replay or refuse.
    Used { fingerprint: Vec<u8>, reply: Reply },
    /// A row without a reply: cannot be committed by this service, so only a foreign writer
    /// could leave it; treated like a request still running.
    InProgress,
    /// Gone since the claim looked (it had expired and was swept): free again.
    Gone,
}

/// Claims the key for this transaction: `true` when it is now this transaction's.
pub async fn claim(conn: &mut PgConnection, claim: &Claim) -> Result<bool, sqlx::Error> {
    query_claiming!(
        claim,
        r#"SELECT EXISTS (SELECT 1 FROM claim) AS "claimed!""#
    )
    .fetch_one(conn)
    .instrument(crate::statement_span!("idempotency.claim"))
    .await
    .map(|row| row.claimed)
}

/// What holds a key that a claim found taken.
pub async fn taken(conn: &mut PgConnection, claim: &Claim) -> Result<Taken, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT fingerprint, status_code, body, location, etag
             FROM idempotency_keys
            WHERE org_id = $1 AND mode = $2
              AND (SELECT set_config('app.tenant', $2 || '/' || $1, true)) IS NOT NULL
              AND key = $3"#,
        claim.org(),
        claim.mode(),
        claim.key()
    )
    .fetch_optional(conn)
    .instrument(crate::statement_span!("idempotency.taken"))
    .await?;
    let Some(row) = row else {
        return Ok(Taken::Gone);
    };
    let (Some(status), Some(body)) = (row.status_code, row.body) else {
        return Ok(Taken::InProgress);
    };
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok(Taken::Used {
        fingerprint: row.fingerprint,
        reply: Reply {
            status,
            body,
            location: row.location,
            etag: row.etag,
        },
    })
}

/// Stores the reply in the claiming transaction, so it commits with the business write.
pub async fn save(conn: &mut PgConnection, save: &SaveReply<'_>) -> Result<(), sqlx::Error> {
    query_saving!(
        save,
        ["written AS (SELECT 1)"],
        r#"SELECT EXISTS (SELECT 1 FROM saved) AS "saved!""#
    )
    .fetch_one(conn)
    .instrument(crate::statement_span!("idempotency.save"))
    .await?;
    Ok(())
}

/// Deletes up to `batch` expired keys; returns how many. Rows locked by a request that is
/// reusing an expired key are skipped, so the sweeper never waits on a request.
///
/// The sweeper works across tenants, so it binds none: its transaction sets `app.sweeper`, which
/// the row-level security policies answer with expired keys only.
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
