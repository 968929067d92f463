//! Coalesced reads of one customer by id (`GET /v1/customers/{id}`): the reads of one tenant
//! that arrive while another read of that tenant is in flight wait for it, then go to the
//! database together, as one statement (one probe of the primary key per id), and each is answered as soon as that
//! statement returns. Per-statement work (a round trip, a wake-up of a backend and of the
//! server, the protocol on both sides, the pool's acquire and release) is then paid once per
//! batch instead of once per read.
//!
//! Nothing waits that would not have waited anyway: a read that finds no read of its tenant in
//! flight goes alone at once, as the statement of an uncoalesced read, and a batch takes only
//! the reads already queued. A queue is per tenant (org and mode), so a batch binds one tenant
//! for row-level security exactly as a single read does; reads of two tenants never share a
//! statement.
//!
//! How a batch is run: the queue of a tenant exists while one of its reads is in flight (its
//! *leader*). When the leader's statement returns, it answers the reads it carried and hands
//! the reads that queued meanwhile to the first of them, which leads the next batch from its
//! own request (its own connection, its own deadline and tenant slot). The lead is a value,
//! [`Leading`], whose `Drop` hands on: a leader whose request is dropped mid-statement, or
//! before it even took the lead it was sent, hands its unanswered reads on the same way, so a
//! tenant's queue never stays without a read in flight. A batch that fails lets each of its
//! reads try again alone, so that each gets its own error.
//!
//! `database.coalesce_reads` switches it on (docs/performance.md has the A/B that decided the
//! default).

use foldhash::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::oneshot;

use super::model::ListedCustomer;
use super::repo;
use crate::ids::CustomerId;
use crate::tenant::Tenant;

/// The statement of a batch (for the test of its plan).
pub const BATCH_STATEMENT: &str = repo::FIND_MANY_TO_SHOW;

/// The most reads one statement carries; more queued wait for the next batch.
const MAX_BATCH: usize = 64;

/// A tenant is here while one of its reads is in flight; the reads queued behind it.
type Queues = Arc<Mutex<HashMap<Tenant, Vec<Waiting>>>>;

/// The reads of customers by id, coalesced per tenant when `enabled`.
pub struct Coalescer {
    enabled: bool,
    /// How long a queued read waits for its turn: the bound of a request's database part
    /// (`acquire_timeout + statement_timeout`), which a read that never asked the pool for a
    /// connection would otherwise not have; past it, 503 as for a full pool.
    wait: Duration,
    queues: Queues,
}

/// A read queued behind the one in flight.
struct Waiting {
    id: CustomerId,
    turn: oneshot::Sender<Turn>,
}

/// What a queued read is told when its turn comes.
enum Turn {
    /// Its batch returned: the customer, or `None` (404).
    Answer(Option<ListedCustomer>),
    /// Its batch failed: read alone, to get an answer (or an error) of its own.
    Alone,
    /// Lead the next batch.
    Lead(Leading),
}

impl Coalescer {
    pub fn new(enabled: bool, wait: Duration) -> Self {
        Self {
            enabled,
            wait,
            queues: Arc::new(Mutex::new(HashMap::default())),
        }
    }

    /// The customer `id` of `tenant`, as GET shows it; `None` when there is none.
    pub async fn find_to_show(
        &self,
        pool: &PgPool,
        tenant: &Tenant,
        id: &CustomerId,
    ) -> Result<Option<ListedCustomer>, sqlx::Error> {
        if !self.enabled {
            return alone(pool, tenant, id).await;
        }
        let told = {
            let mut queues = self.queues.lock().expect("the read queues");
            match queues.get_mut(tenant) {
                Some(waiting) => {
                    let (turn, told) = oneshot::channel();
                    waiting.push(Waiting {
                        id: id.clone(),
                        turn,
                    });
                    Ok(told)
                }
                None => {
                    queues.insert(tenant.clone(), Vec::new());
                    // Made before any await: dropped, it ends the tenant's read in flight.
                    Err(Leading {
                        queues: self.queues.clone(),
                        tenant: tenant.clone(),
                        carried: Vec::new(),
                        armed: true,
                    })
                }
            }
        };
        let told = match told {
            Ok(told) => told,
            Err(leading) => return leading.read(pool, id).await,
        };
        match tokio::time::timeout(self.wait, told).await {
            Ok(Ok(Turn::Answer(customer))) => Ok(customer),
            Ok(Ok(Turn::Lead(leading))) => leading.read(pool, id).await,
            // A failed batch; or a leader gone without a word, which `Leading` never does.
            Ok(Ok(Turn::Alone)) | Ok(Err(_)) => alone(pool, tenant, id).await,
            // Its place in the queue is skipped once its receiver is gone (`hand_on`).
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    }
}

/// One read, alone: the statement of an uncoalesced GET.
async fn alone(
    pool: &PgPool,
    tenant: &Tenant,
    id: &CustomerId,
) -> Result<Option<ListedCustomer>, sqlx::Error> {
    let mut conn = crate::db::acquire(pool).await?;
    repo::find_to_show(&mut *conn, tenant, id).await
}

/// The lead of a tenant's reads: the read in flight, with the queued reads it carries. Dropped
/// (done, cancelled, or never taken by the read it was sent to), it hands what is still queued,
/// and any read it did not answer, to the next leader.
struct Leading {
    queues: Queues,
    tenant: Tenant,
    carried: Vec<Waiting>,
    /// Off only for a lead that could not be sent, whose reads [`hand_on`] takes back itself.
    armed: bool,
}

impl Leading {
    async fn read(
        mut self,
        pool: &PgPool,
        id: &CustomerId,
    ) -> Result<Option<ListedCustomer>, sqlx::Error> {
        if self.carried.is_empty() {
            return alone(pool, &self.tenant, id).await;
        }
        let found = async {
            let mut conn = crate::db::acquire(pool).await?;
            let ids: Vec<&str> = std::iter::once(id.as_str())
                .chain(self.carried.iter().map(|w| w.id.as_str()))
                .collect();
            repo::find_many_to_show(&mut *conn, &self.tenant, &ids).await
        }
        .await;
        let rows = match found {
            Ok(rows) => rows,
            Err(e) => {
                for waiting in self.carried.drain(..) {
                    let _ = waiting.turn.send(Turn::Alone);
                }
                return Err(e);
            }
        };
        let by_id: HashMap<&str, &ListedCustomer> =
            rows.iter().map(|row| (row.id.as_str(), row)).collect();
        for waiting in self.carried.drain(..) {
            let customer = by_id.get(waiting.id.as_str()).map(|row| (*row).clone());
            // A read whose request is gone no longer listens.
            let _ = waiting.turn.send(Turn::Answer(customer));
        }
        Ok(by_id.get(id.as_str()).map(|row| (*row).clone()))
    }

    /// The reads of a lead that could not be sent, without handing them on.
    fn disarm(mut self) -> Vec<Waiting> {
        self.armed = false;
        std::mem::take(&mut self.carried)
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        if self.armed {
            // Reads this leader did not answer (its request was dropped) go first.
            hand_on(
                &self.queues,
                &self.tenant,
                std::mem::take(&mut self.carried),
            );
        }
    }
}

/// Ends a batch of `tenant`: the reads still `unanswered` and those queued meanwhile (up to
/// [`MAX_BATCH`]) go to the first of them that still listens, to lead the next batch; with none,
/// the tenant has no read in flight any more and its next read goes alone at once.
fn hand_on(queues: &Queues, tenant: &Tenant, mut unanswered: Vec<Waiting>) {
    let mut map = queues.lock().expect("the read queues");
    loop {
        let mut next = std::mem::take(&mut unanswered);
        if let Some(waiting) = map.get_mut(tenant) {
            let room = MAX_BATCH.saturating_sub(next.len()).min(waiting.len());
            next.extend(waiting.drain(..room));
        }
        if next.is_empty() {
            map.remove(tenant);
            return;
        }
        let mut rest = next.into_iter();
        while let Some(leader) = rest.next() {
            let lead = Leading {
                queues: queues.clone(),
                tenant: tenant.clone(),
                carried: rest.collect(),
                armed: true,
            };
            match leader.turn.send(Turn::Lead(lead)) {
                // A read is in flight again; the queue stays.
                Ok(()) => return,
                // Its request is gone: the next one leads.
                Err(Turn::Lead(lead)) => rest = lead.disarm().into_iter(),
                Err(_) => break,
            }
        }
        // Every one of them was gone: take the next from the queue.
    }
}
