//! A per-tenant bound on the pooled connections requests hold, so that one tenant's slow
//! requests (deep history reads, a burst of them) cannot take every connection of the pool
//! from the other tenants (docs/operations.md, `database.tenant_max_connections`).
//!
//! A request takes its tenant's slot when it first asks for a connection (`db::acquire`,
//! through `db::deadline`) and keeps it until it has answered. A tenant at its bound queues:
//! up to `database.tenant_queue` requests wait, each within its `acquire_timeout` (past it,
//! 503 as for a pool without a free connection); a request that finds the queue full answers
//! 429 `rate_limited` with `Retry-After`, having done nothing. The default bound is three
//! quarters of the pool, so one tenant alone still gets most of it, and its excess load waits
//! in its own queue rather than failing.

use foldhash::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::configuration::DatabaseSettings;
use crate::tenant::Tenant;

pub struct TenantLimits {
    per_tenant: u32,
    queue: u32,
    tenants: Mutex<HashMap<Tenant, Arc<Gate>>>,
}

/// One tenant's slots and the number of its requests waiting for one.
struct Gate {
    slots: Arc<Semaphore>,
    waiting: AtomicU32,
}

/// Why a request got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The tenant's queue was full.
    QueueFull,
    /// It waited until its bound.
    TimedOut,
}

/// A slot held; given back when dropped.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    // Held for its count: the tenant's entry is forgotten when no slot nor waiter holds it.
    _gate: Arc<Gate>,
    tenant: Tenant,
    limits: Arc<TenantLimits>,
}

impl TenantLimits {
    pub fn from_settings(settings: &DatabaseSettings) -> Arc<Self> {
        // Three quarters, rounded up: a pool of 2 or 3 stays whole for a lone tenant.
        let per_tenant = match settings.tenant_max_connections {
            0 => settings.max_connections - settings.max_connections / 4,
            n => n,
        };
        Arc::new(Self {
            per_tenant: per_tenant.max(1),
            queue: settings.tenant_queue,
            tenants: Mutex::new(HashMap::default()),
        })
    }

    /// The connections one tenant may hold.
    pub fn per_tenant(&self) -> u32 {
        self.per_tenant
    }

    /// Takes a slot of `tenant`, waiting in its queue until `until` at most.
    pub async fn enter(self: &Arc<Self>, tenant: &Tenant, until: Instant) -> Result<Slot, Refused> {
        let gate = {
            let mut tenants = self.tenants.lock().expect("the tenant table");
            tenants
                .entry(tenant.clone())
                .or_insert_with(|| {
                    Arc::new(Gate {
                        slots: Arc::new(Semaphore::new(self.per_tenant as usize)),
                        waiting: AtomicU32::new(0),
                    })
                })
                .clone()
        };
        let slot = |permit| Slot {
            permit: Some(permit),
            _gate: gate.clone(),
            tenant: tenant.clone(),
            limits: self.clone(),
        };
        if let Ok(permit) = gate.slots.clone().try_acquire_owned() {
            return Ok(slot(permit));
        }
        // Counted while waiting, also when the request is dropped meanwhile.
        struct Waiting<'a>(&'a AtomicU32);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if gate.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
            gate.waiting.fetch_sub(1, Ordering::AcqRel);
            self.forget_if_idle(tenant);
            return Err(Refused::QueueFull);
        }
        let waiting = Waiting(&gate.waiting);
        let acquired = tokio::time::timeout_at(until, gate.slots.clone().acquire_owned()).await;
        drop(waiting);
        match acquired {
            Ok(Ok(permit)) => Ok(slot(permit)),
            // The semaphore is never closed; a timeout is the other way out.
            _ => {
                self.forget_if_idle(tenant);
                Err(Refused::TimedOut)
            }
        }
    }

    /// Drops the tenant's entry when no request holds or waits for one of its slots, so the
    /// table holds only the tenants with requests in flight. The caller holds one reference to
    /// the tenant's gate (and no permit any more).
    fn forget_if_idle(&self, tenant: &Tenant) {
        let mut tenants = self.tenants.lock().expect("the tenant table");
        if let Some(gate) = tenants.get(tenant) {
            // Gates are cloned only under this lock: the table's and the caller's are then the
            // only references when no other request holds or waits.
            if Arc::strong_count(gate) == 2 {
                tenants.remove(tenant);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.limits.forget_if_idle(&self.tenant);
    }
}
