//! Customers this instance read or wrote lately, kept as a guess of their current version. A
//! write of one customer without an idempotency key takes the customer it changes (and so its
//! compare-and-set's expected version) from here instead of reading it first: one round trip
//! instead of two. Nothing is ever answered from it. A stale entry (another instance wrote the
//! customer since) loses the compare-and-set, and the write then reads the customer and goes on
//! exactly as without the cache (`service::change`).
//!
//! It holds only what committed (docs/reliability.md#the-write-cache): what a read returned, and
//! a write's new version once its transaction has committed ([`Recent::after_write`]); a write
//! that failed, or whose outcome is unknown, forgets the customer. A lost database connection
//! (a failover may have lost commits) makes every older entry unusable. And a guess is checked
//! by the transaction that wrote it as well as by its version ([`Xmin`](super::domain::Xmin)),
//! so even an entry that slipped past these rules could only lose its compare-and-set.
//!
//! Entries are compact (the policy and metadata as JSON text, parsed again when used) and the
//! cache is bounded by their weight in bytes, not by their number: a customer of an ordinary
//! policy is about 1 KB, the largest the rules allow tens of KB, so a count would bound nothing.
//! `cache.customers_mib` sets the budget; 0 turns it off.

use std::sync::Arc;

use serde_json::Value;

use super::model::{Customer, Member};
use crate::ids::CustomerId;
use crate::tenant::Tenant;

type Key = (Tenant, CustomerId);

pub struct Recent {
    entries: Option<quick_cache::sync::Cache<Key, Arc<Entry>, Weight>>,
}

/// A customer with its JSON members as text, and the database connections' generation when it
/// was remembered (see [`crate::db::connection_generation`]).
struct Entry {
    customer: Customer<Box<str>>,
    generation: u64,
}

/// What an entry takes in memory, about: its text and the fixed parts of the key, the entry and
/// the cache's own slot (docs/performance.md#memory has the measurement behind the figure).
#[derive(Clone)]
struct Weight;

/// The fixed part: the key and entry structs, the `Arc`, the cache's slot and allocator rounding.
const FIXED_BYTES: u64 = 512;

impl quick_cache::Weighter<Key, Arc<Entry>> for Weight {
    fn weight(&self, (tenant, id): &Key, entry: &Arc<Entry>) -> u64 {
        let entry = &entry.customer;
        let text = [
            tenant.org.len(),
            2 * id.as_str().len(),
            entry.email.as_ref().map_or(0, String::len),
            entry.phone.as_ref().map_or(0, String::len),
            entry.first_name.as_ref().map_or(0, String::len),
            entry.last_name.as_ref().map_or(0, String::len),
            entry.policy.as_ref().map_or(0, |p| p.len()),
            entry.metadata.len(),
        ];
        FIXED_BYTES + text.iter().sum::<usize>() as u64
    }
}

impl Recent {
    /// Room for customers weighing up to `bytes`; 0: remembers nothing.
    pub fn new(bytes: u64) -> Self {
        Self {
            entries: (bytes > 0).then(|| {
                // An estimate for the table's initial size only; the weight is the bound.
                let items = usize::try_from(bytes / 1024).unwrap_or(usize::MAX).max(16);
                quick_cache::sync::Cache::with_weighter(items, bytes, Weight)
            }),
        }
    }

    /// Remembers `customer`, as read from the database or written by a transaction that has
    /// committed, as the latest this instance saw of it. Never call it with a version that may
    /// not have committed.
    pub fn remember(&self, tenant: &Tenant, customer: &Customer<impl Member>) {
        let Some(entries) = &self.entries else {
            return;
        };
        // Taken before anything else, so an entry can only be older than its generation says.
        let generation = crate::db::connection_generation();
        let key = (tenant.clone(), customer.id.clone());
        // Never replace a newer version with an older one (two requests finishing out of
        // order), and do not build again the entry of the version already held: a version
        // written by one transaction is one content, and most GETs are of customers that did
        // not change since.
        if entries.get(&key).is_some_and(|known| {
            known.generation == generation
                && (known.customer.version > customer.version
                    || (known.customer.version == customer.version
                        && known.customer.xmin == customer.xmin))
        }) {
            return;
        }
        // The stored text as it is; a value written as the answers write it.
        let Ok(customer) = customer.try_map_json(|json| {
            Ok::<_, std::convert::Infallible>(json.text().to_text().into_boxed_str())
        });
        entries.insert(
            key,
            Arc::new(Entry {
                customer,
                generation,
            }),
        );
    }

    /// Forgets the customer: a write of it failed, and may or may not have committed.
    pub fn forget(&self, tenant: &Tenant, id: &CustomerId) {
        if let Some(entries) = &self.entries {
            entries.remove(&(tenant.clone(), id.clone()));
        }
    }

    /// A write of one customer (`None`: one not created yet) is starting: the [`Writing`]
    /// handle remembers what it wrote once the write is known to have committed, and forgets
    /// the customer otherwise — also when the request is dropped midway (a deadline), when
    /// nothing is known.
    pub fn writing<'a>(&'a self, tenant: &'a Tenant, id: Option<&CustomerId>) -> Writing<'a> {
        Writing {
            recent: self,
            tenant,
            id: id.cloned(),
        }
    }

    /// The latest this instance saw of the customer, if it remembers one from after the last
    /// lost database connection.
    pub fn recall(&self, tenant: &Tenant, id: &CustomerId) -> Option<Customer> {
        let entries = self.entries.as_ref()?;
        let key = (tenant.clone(), id.clone());
        let entry = entries.get(&key)?;
        if entry.generation != crate::db::connection_generation() {
            entries.remove(&key);
            return None;
        }
        entry
            .customer
            .try_map_json(|text| serde_json::from_str::<Value>(text))
            .ok()
    }
}

/// A write in progress (see [`Recent::writing`]).
pub struct Writing<'a> {
    recent: &'a Recent,
    tenant: &'a Tenant,
    /// The customer to forget if the write does not settle; `None` once settled.
    id: Option<CustomerId>,
}

impl Writing<'_> {
    /// The write has ended: `written` is the version it wrote, if it wrote one, and
    /// `committed` whether its transaction is known to have committed. A committed version is
    /// remembered; after a write that did not commit — a failure at COMMIT, a lost connection:
    /// the database may hold either version — the customer is forgotten.
    pub fn settle(mut self, written: Option<&Customer<impl Member>>, committed: bool) {
        let id = self.id.take();
        match (written, committed) {
            (Some(customer), true) => self.recent.remember(self.tenant, customer),
            (None, true) => {}
            (written, false) => {
                if let Some(id) = id.as_ref().or(written.map(|c| &c.id)) {
                    self.recent.forget(self.tenant, id);
                }
            }
        }
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if let Some(id) = &self.id {
            self.recent.forget(self.tenant, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customers::domain::{CustomerType, Version, Xmin};
    use crate::customers::model::CustomerValues;
    use crate::tenant::Mode;
    use serde_json::json;

    fn tenant(org: &str) -> Tenant {
        Tenant {
            org: org.into(),
            mode: Mode::Test,
        }
    }

    #[test]
    fn it_gives_back_what_it_was_given_and_never_an_older_version() {
        let recent = Recent::new(1 << 20);
        let (id, at) = CustomerId::generate();
        let values = CustomerValues {
            policy: Some(json!({"limits": {"perDay": 5}})),
            metadata: json!({"a": [1, {"b": null}]}),
            ..Default::default()
        };
        let v1 = Customer::new(id.clone(), CustomerType::Consumer, values, at);
        recent.remember(&tenant("a"), &v1);
        assert_eq!(recent.recall(&tenant("a"), &id), Some(v1.clone()));
        assert_eq!(recent.recall(&tenant("b"), &id), None, "per tenant");
        let v2 = v1.next_version(at, |c| c.email = Some("x@example.com".into()));
        recent.remember(&tenant("a"), &v2);
        recent.remember(&tenant("a"), &v1);
        assert_eq!(
            recent.recall(&tenant("a"), &id).unwrap().version,
            Version::new(2)
        );
        assert_eq!(Recent::new(0).recall(&tenant("a"), &id), None);
    }

    /// A lost database connection (a failover may have lost commits) makes what was remembered
    /// before it unusable; what is remembered after it is used again.
    #[test]
    fn a_lost_connection_forgets_what_was_remembered_before_it() {
        let recent = Recent::new(1 << 20);
        let (id, at) = CustomerId::generate();
        let v1 = Customer::new(id.clone(), CustomerType::Consumer, Default::default(), at);
        recent.remember(&tenant("a"), &v1);
        assert!(recent.recall(&tenant("a"), &id).is_some());
        crate::db::connection_lost();
        assert_eq!(recent.recall(&tenant("a"), &id), None);
        recent.remember(&tenant("a"), &v1);
        assert_eq!(recent.recall(&tenant("a"), &id), Some(v1));
    }

    /// A write that did not settle (dropped midway) or did not commit forgets the customer; one
    /// that committed is remembered with the transaction that wrote it.
    #[test]
    fn a_write_is_remembered_only_once_committed() {
        let recent = Recent::new(1 << 20);
        let a = tenant("a");
        let (id, at) = CustomerId::generate();
        let v1 = Customer::new(id.clone(), CustomerType::Consumer, Default::default(), at);
        recent.remember(&a, &v1);
        drop(recent.writing(&a, Some(&id)));
        assert_eq!(recent.recall(&a, &id), None, "dropped midway");
        recent.remember(&a, &v1);
        let mut v2 = v1.next_version(at, |c| c.email = Some("x@example.com".into()));
        recent.writing(&a, Some(&id)).settle(Some(&v2), false);
        assert_eq!(recent.recall(&a, &id), None, "not committed");
        v2.xmin = Some(Xmin::new_for_tests(7));
        recent.writing(&a, Some(&id)).settle(Some(&v2), true);
        assert_eq!(recent.recall(&a, &id), Some(v2));
    }

    /// Large customers fill the budget with fewer entries: the bound is bytes, whatever the
    /// customers weigh.
    #[test]
    fn the_budget_bounds_the_weight_not_the_count() {
        let budget = 256 * 1024;
        let recent = Recent::new(budget);
        let large = json!({ "notes": "x".repeat(10_000) });
        for _ in 0..200 {
            let (id, at) = CustomerId::generate();
            let values = CustomerValues {
                metadata: large.clone(),
                ..Default::default()
            };
            let customer = Customer::new(id, CustomerType::Consumer, values, at);
            recent.remember(&tenant("a"), &customer);
        }
        let entries = recent.entries.as_ref().unwrap();
        assert!(
            entries.weight() <= budget,
            "{} > {budget}",
            entries.weight()
        );
        // 200 customers of 10 KB each would be 2 MB; about 25 fit.
        assert!(
            (10..=26).contains(&entries.len()),
            "{} entries",
            entries.len()
        );
    }
}
