//! Sealing the webhooks' secrets again after `webhooks.secrets_key` changed.
//!
//! The operator's procedure (docs/webhooks.md#changing-the-secrets-key): put the old key in
//! `webhooks.previous_secrets_keys` and the new one in `webhooks.secrets_key`, on every instance.
//! Secrets then open under either key, and each instance walks the secrets that still sign every
//! `idempotency.sweep_interval`, sealing under the new key each one that only a previous key
//! opens. When a pass finds none left it says so in the log, and the old key may be removed.
//! The walk repeats because an instance not yet given the new key (a rolling deploy) still
//! seals under the old one.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::repo::sealed::{self, After, StoredSecret};
use super::secret::SealedUnder;
use super::shared::Webhooks;
use crate::tenant::{Mode, Tenant};

/// Secrets read per transaction.
const BATCH: i64 = 200;

/// What one pass through the secrets found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Sealed again under `webhooks.secrets_key`.
    pub resealed: u64,
    /// Opened by no configured key: their webhooks' deliveries fail until the secret is rotated.
    pub unreadable: u64,
}

/// Every `interval` until `stop`, while previous keys are configured (otherwise returns at once).
pub async fn run(
    pool: sqlx::PgPool,
    hooks: Arc<Webhooks>,
    interval: Duration,
    stop: CancellationToken,
) {
    if !hooks.secrets.has_previous_keys() {
        return;
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut said_done = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match pass(&pool, &hooks, &stop).await {
            Ok(found) => {
                if found.unreadable > 0 {
                    tracing::warn!(
                        unreadable = found.unreadable,
                        "webhook secrets open with no configured key: their deliveries fail \
                         until each such webhook's secret is rotated"
                    );
                }
                if found.resealed > 0 {
                    tracing::info!(
                        resealed = found.resealed,
                        "webhook secrets sealed again under webhooks.secrets_key"
                    );
                    said_done = false;
                } else if !said_done && found.unreadable == 0 {
                    tracing::info!(
                        "every webhook secret is sealed under webhooks.secrets_key: \
                         webhooks.previous_secrets_keys may be removed"
                    );
                    said_done = true;
                }
            }
            Err(e) => tracing::warn!(error = %e, "sealing webhook secrets again failed"),
        }
    }
}

/// One walk through the secrets that still sign, each batch in its own short transaction.
pub async fn pass(
    pool: &sqlx::PgPool,
    hooks: &Webhooks,
    stop: &CancellationToken,
) -> Result<Pass, sqlx::Error> {
    let mut found = Pass::default();
    let mut after = After::default();
    loop {
        let mut tx = crate::db::begin(pool).await?;
        let batch = sealed::signing_secrets(&mut tx, &after, BATCH).await?;
        let Some(last) = batch.last() else {
            tx.commit().await?;
            return Ok(found);
        };
        after = After {
            org_id: last.org_id.clone(),
            mode: last.mode.clone(),
            webhook_id: last.webhook_id.clone(),
            n: last.n,
        };
        let full = batch.len() as i64 == BATCH;
        let mut replaced: Vec<(StoredSecret, Vec<u8>)> = Vec::new();
        for stored in batch {
            let tenant = Tenant {
                org: stored.org_id.clone(),
                mode: Mode::from_stored(&stored.mode),
            };
            match hooks
                .secrets
                .open_telling_key(&tenant, &stored.webhook_id, &stored.sealed)
            {
                Some((_, SealedUnder::Current)) => {}
                Some((secret, SealedUnder::Previous)) => {
                    let new = hooks.secrets.seal(&tenant, &stored.webhook_id, &secret);
                    replaced.push((stored, new));
                }
                None => found.unreadable += 1,
            }
        }
        if !replaced.is_empty() {
            found.resealed += sealed::replace_sealed(&mut tx, replaced).await?;
        }
        tx.commit().await?;
        if !full || stop.is_cancelled() {
            return Ok(found);
        }
    }
}
