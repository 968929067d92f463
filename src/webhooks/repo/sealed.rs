//! SQL of sealing the secrets again after `webhooks.secrets_key` changed (`webhooks::reseal`).
//! Across tenants, as the dispatcher's statements: each statement sets `app.webhooks = on`
//! (migration 9) for its transaction instead of binding a tenant.

use sqlx::PgConnection;

/// A secret that still signs (current, or in a rotation's grace period), as stored.
pub struct StoredSecret {
    pub org_id: String,
    pub mode: String,
    pub webhook_id: String,
    pub n: i64,
    pub sealed: Vec<u8>,
}

/// Where a walk through the secrets stands: the key of the last one read.
#[derive(Default, Clone)]
pub struct After {
    pub org_id: String,
    pub mode: String,
    pub webhook_id: String,
    pub n: i64,
}

/// Up to `limit` signing secrets after `after`, in key order.
pub async fn signing_secrets(
    conn: &mut PgConnection,
    after: &After,
    limit: i64,
) -> Result<Vec<StoredSecret>, sqlx::Error> {
    sqlx::query_as!(
        StoredSecret,
        r#"SELECT org_id, mode, webhook_id, n, sealed
             FROM webhook_secrets
            WHERE (SELECT set_config('app.webhooks', 'on', true)) IS NOT NULL
              AND (org_id, mode, webhook_id, n) > ($1, $2, $3, $4)
              AND (expires_at IS NULL OR expires_at > now())
            ORDER BY org_id, mode, webhook_id, n
            LIMIT $5"#,
        after.org_id,
        after.mode,
        after.webhook_id,
        after.n,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Replaces each secret's sealed bytes with the new ones, where they are still the bytes read
/// (a rotation or another instance's pass meanwhile wins). Returns how many were replaced.
pub async fn replace_sealed(
    conn: &mut PgConnection,
    replaced: Vec<(StoredSecret, Vec<u8>)>,
) -> Result<u64, sqlx::Error> {
    let mut org_ids = Vec::with_capacity(replaced.len());
    let mut modes = Vec::with_capacity(replaced.len());
    let mut webhook_ids = Vec::with_capacity(replaced.len());
    let mut ns = Vec::with_capacity(replaced.len());
    let mut olds = Vec::with_capacity(replaced.len());
    let mut news = Vec::with_capacity(replaced.len());
    for (stored, new) in replaced {
        org_ids.push(stored.org_id);
        modes.push(stored.mode);
        webhook_ids.push(stored.webhook_id);
        ns.push(stored.n);
        olds.push(stored.sealed);
        news.push(new);
    }
    let done = sqlx::query!(
        r#"UPDATE webhook_secrets s
              SET sealed = r.new
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bytea[], $6::bytea[])
                  AS r(org_id, mode, webhook_id, n, old, new)
            WHERE (SELECT set_config('app.webhooks', 'on', true)) IS NOT NULL
              AND s.org_id = r.org_id AND s.mode = r.mode AND s.webhook_id = r.webhook_id
              AND s.n = r.n AND s.sealed = r.old"#,
        &org_ids,
        &modes,
        &webhook_ids,
        &ns,
        &olds,
        &news
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
