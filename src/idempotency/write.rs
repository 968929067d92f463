//! [`Write`]: the handle a write route drives, from the claim of its key to the commit.

use std::future::Future;
use tracing::Instrument;

use actix_web::HttpResponse;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::binds::{Claim, SaveReply, Saver};
use super::store::{self, Taken};
use super::{claim_error, KeyedRequest, Reply};
use crate::configuration::IdempotencySettings;
use crate::error::ApiError;
use crate::tenant::Tenant;

/// How a write begins: run it, or answer with what the key already holds.
pub enum Begun<T> {
    /// Run the write on this handle. `T` is what was read together with the claim, if anything.
    Fresh(Write, T),
    /// The key was used by the same request: its stored reply, replayed.
    Replay(HttpResponse),
}

/// A read that can run in the same statement as the claim of a key: one round trip for both.
/// What it reads comes from before any wait on the key, so it may be stale by the time the key
/// is this write's; the write must treat it as a hint (a compare-and-set catches a stale one).
pub trait ReadWithClaim {
    type Output;
    /// Claims the key and reads: whether the key is now this transaction's, and what was read.
    fn read_with_claim(
        self,
        conn: &mut PgConnection,
        claim: &Claim,
    ) -> impl Future<Output = Result<(bool, Self::Output), sqlx::Error>>;
}

enum Conn {
    /// No transaction: each statement commits on its own.
    Plain(PoolConnection<Postgres>),
    Transaction(Transaction<'static, Postgres>),
}

/// The connection a write's statements run on. With an idempotency key it is a transaction in
/// which the key is claimed, and [`Write::finish`] stores the reply in it and commits.
pub struct Write {
    conn: Conn,
    tenant: Tenant,
    claim: Option<Claim>,
    /// The reply a write statement already stored under the key (`query_saving!`), so that
    /// `finish` need not store it again.
    saved: Option<Reply>,
}

impl Write {
    /// Starts a write: without a key, a plain connection; with one, a transaction that has
    /// claimed the key, or the answer the key already holds.
    pub async fn begin(
        pool: &PgPool,
        settings: &IdempotencySettings,
        tenant: &Tenant,
        keyed: Option<KeyedRequest>,
    ) -> Result<Begun<()>, ApiError> {
        let Some(keyed) = keyed else {
            return Ok(Begun::Fresh(Self::without_key(pool, tenant).await?, ()));
        };
        let mut write = Self::with_key(pool, settings, tenant, keyed).await?;
        loop {
            let (conn, claim) = write.conn_and_claim();
            let claimed = store::claim(conn, claim).await.map_err(claim_error)?;
            match write.settle(claimed).await? {
                Settled::Claimed => return Ok(Begun::Fresh(write, ())),
                Settled::Answered(response) => return Ok(Begun::Replay(response)),
                // Swept in between: it had expired, so the key is free again.
                Settled::Gone => continue,
            }
        }
    }

    /// Like [`Write::begin`], with `read` done in the claim's own statement when there is a key
    /// (`Some` of what it read, a hint). Without a key nothing is read here (`None`).
    pub async fn begin_reading<R: ReadWithClaim>(
        pool: &PgPool,
        settings: &IdempotencySettings,
        tenant: &Tenant,
        keyed: Option<KeyedRequest>,
        read: R,
    ) -> Result<Begun<Option<R::Output>>, ApiError> {
        let Some(keyed) = keyed else {
            return Ok(Begun::Fresh(Self::without_key(pool, tenant).await?, None));
        };
        let mut write = Self::with_key(pool, settings, tenant, keyed).await?;
        let (conn, claim) = write.conn_and_claim();
        let (claimed, hint) = read
            .read_with_claim(conn, claim)
            .await
            .map_err(claim_error)?;
        match write.settle(claimed).await? {
            Settled::Claimed => Ok(Begun::Fresh(write, Some(hint))),
            Settled::Answered(response) => Ok(Begun::Replay(response)),
            Settled::Gone => match Self::begin(pool, settings, tenant, write.into_keyed()).await? {
                Begun::Fresh(write, ()) => Ok(Begun::Fresh(write, None)),
                Begun::Replay(response) => Ok(Begun::Replay(response)),
            },
        }
    }

    async fn without_key(pool: &PgPool, tenant: &Tenant) -> Result<Self, ApiError> {
        Ok(Self {
            conn: Conn::Plain(crate::db::acquire(pool).await?),
            tenant: tenant.clone(),
            claim: None,
            saved: None,
        })
    }

    async fn with_key(
        pool: &PgPool,
        settings: &IdempotencySettings,
        tenant: &Tenant,
        keyed: KeyedRequest,
    ) -> Result<Self, ApiError> {
        let tx = crate::db::begin(pool).await?;
        Ok(Self {
            conn: Conn::Transaction(tx),
            tenant: tenant.clone(),
            claim: Some(Claim {
                tenant: tenant.clone(),
                keyed,
                retention: settings.retention,
                wait: settings.wait,
            }),
            saved: None,
        })
    }

    fn into_keyed(self) -> Option<KeyedRequest> {
        self.claim.map(|claim| claim.keyed)
    }

    /// After a claim statement: claimed, or the answer for a key that was taken. A taken key's
    /// transaction is dropped (rolled back) with the handle.
    async fn settle(&mut self, claimed: bool) -> Result<Settled, ApiError> {
        if claimed {
            return Ok(Settled::Claimed);
        }
        let (conn, claim) = self.conn_and_claim();
        let taken = store::taken(conn, claim).await?;
        match taken {
            Taken::Gone => Ok(Settled::Gone),
            Taken::InProgress => Err(ApiError::IdempotencyInProgress),
            Taken::Used { fingerprint, .. } if fingerprint != claim.fingerprint() => {
                crate::metrics::idempotency_event("mismatch");
                Err(ApiError::IdempotencyKeyReused)
            }
            Taken::Used { reply, .. } => {
                crate::metrics::idempotency_event("replay");
                Ok(Settled::Answered(reply.into_http(true)))
            }
        }
    }

    /// The connection and the claim of a keyed write.
    fn conn_and_claim(&mut self) -> (&mut PgConnection, &Claim) {
        let claim = self.claim.as_ref().expect("only a keyed write claims");
        (connection(&mut self.conn), claim)
    }

    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The idempotency key of this write, if it has one.
    pub fn key(&self) -> Option<&str> {
        self.claim.as_ref().map(Claim::key)
    }

    /// The connection every statement of this write runs on.
    pub fn conn(&mut self) -> &mut PgConnection {
        connection(&mut self.conn)
    }

    /// What a write statement needs to store a reply under this write's key (see
    /// [`Saver::save`]); taken once, so that it can be used while the connection is borrowed.
    pub fn saver(&self) -> Saver {
        Saver {
            tenant: self.tenant.clone(),
            key: self.key().map(str::to_owned),
        }
    }

    /// Records that a write statement stored `reply` under the key, so `finish` need not.
    pub fn saved(&mut self, reply: &Reply) {
        if self.claim.is_some() {
            self.saved = Some(reply.clone());
        }
    }

    /// Ends the write with its outcome. With a key: a success or a business error (404, 409,
    /// 412) is stored under it and committed with the write; any other error rolls everything
    /// back and leaves the key free for a retry.
    pub async fn finish(self, outcome: Result<Reply, ApiError>) -> Result<HttpResponse, ApiError> {
        let Self {
            conn,
            tenant,
            claim,
            saved,
            ..
        } = self;
        let reply = match (outcome, &claim) {
            (Ok(reply), _) => reply,
            (Err(e), Some(_)) if e.is_business_outcome() => Reply::from_error(&e),
            // Rejected or failed: nothing is stored (the transaction, if any, rolls back).
            (Err(e), _) => return Err(e),
        };
        if let Conn::Transaction(mut tx) = conn {
            if let Some(claim) = &claim {
                if saved.as_ref() != Some(&reply) {
                    let save = SaveReply {
                        tenant: &tenant,
                        key: Some(claim.key()),
                        reply: &reply,
                    };
                    store::save(&mut tx, &save).await?;
                }
            }
            tx.commit()
                .instrument(crate::statement_span!("COMMIT"))
                .await?;
        }
        Ok(reply.into_http(false))
    }
}

fn connection(conn: &mut Conn) -> &mut PgConnection {
    match conn {
        Conn::Plain(conn) => conn,
        Conn::Transaction(tx) => tx,
    }
}

enum Settled {
    Claimed,
    Answered(HttpResponse),
    Gone,
}
