//! Customers this instance read or wrote lately, kept as a guess of their current version. A
//! write of one customer without an idempotency key takes the customer it changes (and so its
//! compare-and-set's expected version) from here instead of reading it first: one round trip
//! instead of two. Nothing is ever answered from it. A stale entry (another instance wrote the
//! customer since) loses the compare-and-set, and the write then reads the customer and goes on
//! exactly as without the cache (`service::change`).
//!
//! Entries are compact (the policy and metadata as JSON text, parsed again when used), so that
//! the default capacity of 100,000 customers costs tens of MB; `cache.customers = 0` turns it off.

use std::sync::Arc;

use serde_json::Value;

use super::domain::CustomerId;
use super::model::Customer;
use crate::tenant::Tenant;

pub struct Recent {
    entries: Option<quick_cache::sync::Cache<(Tenant, CustomerId), Arc<Entry>>>,
}

/// A customer with its JSON members as text.
struct Entry {
    customer: Customer,
    policy: Option<Box<str>>,
    metadata: Box<str>,
}

impl Recent {
    /// Room for `capacity` customers; 0: remembers nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
        }
    }

    /// Remembers `customer` as the latest this instance saw of it.
    pub fn remember(&self, tenant: &Tenant, customer: &Customer) {
        let Some(entries) = &self.entries else {
            return;
        };
        let mut compact = customer.clone();
        let policy = compact
            .policy
            .take()
            .map(|p| p.to_string().into_boxed_str());
        let metadata = std::mem::take(&mut compact.metadata)
            .to_string()
            .into_boxed_str();
        let key = (tenant.clone(), customer.id.clone());
        let entry = Arc::new(Entry {
            customer: compact,
            policy,
            metadata,
        });
        // Never replace a newer version with an older one (two requests finishing out of order).
        match entries.get(&key) {
            Some(known) if known.customer.version > customer.version => {}
            _ => entries.insert(key, entry),
        }
    }

    /// The latest this instance saw of the customer, if it remembers one.
    pub fn recall(&self, tenant: &Tenant, id: &CustomerId) -> Option<Customer> {
        let entry = self.entries.as_ref()?.get(&(tenant.clone(), id.clone()))?;
        let mut customer = entry.customer.clone();
        customer.policy = match &entry.policy {
            Some(text) => Some(serde_json::from_str(text).ok()?),
            None => None,
        };
        customer.metadata = serde_json::from_str::<Value>(&entry.metadata).ok()?;
        Some(customer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customers::domain::{CustomerType, Version};
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
        let recent = Recent::new(10);
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
}
