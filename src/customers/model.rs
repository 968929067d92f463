//! The stored customer ([`Customer`]) and the JSON document of the writable fields that merge
//! patches apply to. Its API representation and the request bodies' types are in
//! [`super::schema`].

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::domain::{CustomerStatus, CustomerType, Version, Xmin};
use super::json_text::{JsonText, StoredJson};
pub use super::timestamps::{timestamp, write_timestamp};
use super::validation::{CustomerFields, Name, Policy};
use crate::ids::CustomerId;

/// One row of `customers`, as every query returns it. Its JSON members (policy, metadata) are
/// values (`J = Value`) where the service works with them, and the stored JSON text where it
/// only shows them ([`ListedCustomer`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Customer<J = Value> {
    pub id: CustomerId,
    pub kind: CustomerType,
    pub status: CustomerStatus,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub policy: Option<J>,
    pub metadata: J,
    pub version: Version,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The transaction that wrote this version, when it was read from or written to the
    /// database; `None` for a version not stored yet (and in list pages, which never need it).
    pub xmin: Option<Xmin>,
}

/// A customer as a list page shows it: its policy and metadata passed through as stored.
pub type ListedCustomer = Customer<StoredJson>;

/// What a customer's JSON members are, for showing them.
pub trait Member {
    fn text(&self) -> JsonText<'_>;
}

impl Member for Value {
    fn text(&self) -> JsonText<'_> {
        JsonText::Value(self)
    }
}

impl Member for StoredJson {
    fn text(&self) -> JsonText<'_> {
        JsonText::Stored(self)
    }
}

impl<J> Customer<J> {
    /// The same customer with its JSON members converted by `convert` (e.g. to text and back).
    pub fn try_map_json<K, E>(
        &self,
        convert: impl Fn(&J) -> Result<K, E>,
    ) -> Result<Customer<K>, E> {
        Ok(Customer {
            id: self.id.clone(),
            kind: self.kind,
            status: self.status,
            email: self.email.clone(),
            phone: self.phone.clone(),
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            policy: self.policy.as_ref().map(&convert).transpose()?,
            metadata: convert(&self.metadata)?,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            xmin: self.xmin,
        })
    }
}

impl Customer {
    /// A new customer of `kind` with `values`, at version 1.
    pub fn new(
        id: CustomerId,
        kind: CustomerType,
        values: CustomerValues,
        created_at: DateTime<Utc>,
    ) -> Self {
        let CustomerValues {
            email,
            phone,
            first_name,
            last_name,
            policy,
            metadata,
        } = values;
        Customer {
            id,
            kind,
            status: CustomerStatus::Pending,
            email,
            phone,
            first_name,
            last_name,
            policy,
            metadata,
            version: Version::FIRST,
            created_at,
            updated_at: created_at,
            xmin: None,
        }
    }

    /// The next version of this customer, changed by `change`, written at `at` (never before
    /// the current `updatedAt`, so a customer's clock never runs backwards, even across
    /// instances whose clocks differ).
    pub fn next_version(&self, at: DateTime<Utc>, change: impl FnOnce(&mut Customer)) -> Customer {
        let mut next = self.clone();
        change(&mut next);
        next.version = self.version.next();
        next.updated_at = at.max(self.updated_at);
        next.xmin = None;
        next
    }

    /// [`Customer::next_version`] with the writable fields `values`, without copying the
    /// fields that `values` replace (a PATCH's customer has its policy and metadata as values).
    pub fn next_with_values(&self, at: DateTime<Utc>, values: CustomerValues) -> Customer {
        let CustomerValues {
            email,
            phone,
            first_name,
            last_name,
            policy,
            metadata,
        } = values;
        Customer {
            id: self.id.clone(),
            kind: self.kind,
            status: self.status,
            email,
            phone,
            first_name,
            last_name,
            policy,
            metadata,
            version: self.version.next(),
            created_at: self.created_at,
            updated_at: at.max(self.updated_at),
            xmin: None,
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.status == CustomerStatus::Deleted
    }

    /// The writable fields as the JSON document a merge patch applies to: a member is present
    /// exactly when it is set.
    pub fn writable_document(&self) -> Value {
        let mut doc = Map::new();
        if let Some(email) = &self.email {
            doc.insert("email".into(), Value::String(email.clone()));
        }
        if let Some(phone) = &self.phone {
            doc.insert("phone".into(), Value::String(phone.clone()));
        }
        let mut name = Map::new();
        if let Some(first) = &self.first_name {
            name.insert("first".into(), Value::String(first.clone()));
        }
        if let Some(last) = &self.last_name {
            name.insert("last".into(), Value::String(last.clone()));
        }
        if !name.is_empty() {
            doc.insert("name".into(), Value::Object(name));
        }
        if let Some(policy) = &self.policy {
            doc.insert("policy".into(), policy.clone());
        }
        doc.insert("metadata".into(), self.metadata.clone());
        Value::Object(doc)
    }
}

impl Customer {
    /// Whether `doc` is this customer's [`Customer::writable_document`], compared member by
    /// member without building that document (a PATCH compares its merged document with it to
    /// find a no-op).
    pub fn is_document(&self, doc: &Value) -> bool {
        fn text(doc: &Map<String, Value>, key: &str, field: &Option<String>) -> bool {
            match (doc.get(key), field) {
                (None, None) => true,
                (Some(Value::String(a)), Some(b)) => a == b,
                _ => false,
            }
        }
        let Value::Object(doc) = doc else {
            return false;
        };
        let set = |field: &Option<String>| usize::from(field.is_some());
        let name_parts = set(&self.first_name) + set(&self.last_name);
        let name = match doc.get("name") {
            None => name_parts == 0,
            Some(Value::Object(name)) => {
                name_parts > 0
                    && name.len() == name_parts
                    && text(name, "first", &self.first_name)
                    && text(name, "last", &self.last_name)
            }
            Some(_) => false,
        };
        // Each member present exactly when it is set, and no other: every expected one is
        // checked below, so the count rules out the rest.
        let members = set(&self.email)
            + set(&self.phone)
            + usize::from(name_parts > 0)
            + usize::from(self.policy.is_some())
            + 1;
        doc.len() == members
            && name
            && text(doc, "email", &self.email)
            && text(doc, "phone", &self.phone)
            && doc.get("policy") == self.policy.as_ref()
            && doc.get("metadata") == Some(&self.metadata)
    }
}

/// Brings a merged document to its one canonical spelling: empty `name`, `policy` and
/// `policy.limits` objects mean "nothing set" and are dropped; metadata is always an object.
/// Two documents that mean the same customer are then equal, which is how a no-op is found.
pub fn normalize(doc: &mut Value) {
    let Some(map) = doc.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(policy)) = map.get_mut("policy") {
        if matches!(policy.get("limits"), Some(Value::Object(l)) if l.is_empty()) {
            policy.remove("limits");
        }
    }
    for key in ["name", "policy"] {
        if matches!(map.get(key), Some(Value::Object(o)) if o.is_empty()) {
            map.remove(key);
        }
    }
    if !matches!(map.get("metadata"), Some(Value::Object(_))) {
        map.insert("metadata".into(), Value::Object(Map::new()));
    }
}

/// The writable fields as a write stores them, from validated fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CustomerValues {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub policy: Option<Value>,
    pub metadata: Value,
}

impl From<CustomerFields> for CustomerValues {
    fn from(fields: CustomerFields) -> Self {
        let Name { first, last } = fields.name.unwrap_or_default();
        let policy = fields
            .policy
            .filter(|p| *p != Policy::default())
            .map(|p| serde_json::to_value(p).expect("a policy always serialises"));
        Self {
            email: fields.email,
            phone: fields.phone,
            first_name: first,
            last_name: last,
            policy,
            metadata: Value::Object(fields.metadata),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Customer, CustomerValues};
    use crate::customers::domain::{CustomerStatus, CustomerType, Xmin};
    use crate::ids::CustomerId;
    use chrono::{TimeZone, Utc};
    use serde_json::{json, Value};

    #[test]
    fn is_document_is_equality_with_the_writable_document() {
        let created = Utc.with_ymd_and_hms(2026, 12, 6, 10, 30, 0).unwrap();
        let text = |s: Option<&str>| s.map(str::to_owned);
        let mut customers = Vec::new();
        for email in [None, Some("a@example.com")] {
            for phone in [None, Some("+14155551234")] {
                for (first, last) in [
                    (None, None),
                    (Some("Ada"), None),
                    (None, Some("L")),
                    (Some("Ada"), Some("L")),
                ] {
                    for policy in [
                        None,
                        Some(json!({"ttlDays": 3})),
                        Some(json!({"ttlDays": 4})),
                    ] {
                        for metadata in [json!({}), json!({"a": [1]})] {
                            let values = CustomerValues {
                                email: text(email),
                                phone: text(phone),
                                first_name: text(first),
                                last_name: text(last),
                                policy: policy.clone(),
                                metadata,
                            };
                            customers.push(Customer::new(
                                CustomerId::generate().0,
                                CustomerType::Consumer,
                                values,
                                created,
                            ));
                        }
                    }
                }
            }
        }
        // Every customer's document, and documents that differ from one in a way no customer's
        // does: extra members, nulls, wrong types, an empty name.
        let mut docs: Vec<Value> = customers.iter().map(Customer::writable_document).collect();
        let odd = [
            json!({"metadata": {}, "type": "consumer"}),
            json!({"metadata": {}, "email": null}),
            json!({"metadata": {}, "email": 5}),
            json!({"metadata": {}, "name": {}}),
            json!({"metadata": {}, "name": {"first": "Ada", "last": null}}),
            json!({"metadata": {}, "name": {"first": "Ada", "middle": "B"}}),
            json!({"metadata": {}, "name": "Ada"}),
            json!({"metadata": {}, "policy": null}),
            json!({"metadata": null}),
            json!({}),
            json!([]),
            json!(null),
        ];
        docs.extend(odd);
        for c in &customers {
            for doc in &docs {
                assert_eq!(c.is_document(doc), *doc == c.writable_document(), "{doc}");
            }
        }
    }

    #[test]
    fn next_with_values_is_next_version_with_the_values_set() {
        let created = Utc.with_ymd_and_hms(2026, 12, 6, 10, 30, 0).unwrap();
        let mut current = Customer::new(
            CustomerId::generate().0,
            CustomerType::Corporate,
            CustomerValues {
                email: Some("a@example.com".into()),
                first_name: Some("Ada".into()),
                policy: Some(json!({"ttlDays": 3})),
                metadata: json!({"a": 1}),
                ..CustomerValues::default()
            },
            created,
        );
        current.status = CustomerStatus::Active;
        current.xmin = Some(Xmin::new_for_tests(7));
        let values = CustomerValues {
            phone: Some("+14155551234".into()),
            last_name: Some("L".into()),
            metadata: json!({"b": [2]}),
            ..CustomerValues::default()
        };
        // Both a later and an earlier clock: updatedAt never runs backwards.
        for at in [
            created + chrono::Duration::seconds(5),
            created - chrono::Duration::seconds(5),
        ] {
            let expected = current.next_version(at, |next| {
                next.email = values.email.clone();
                next.phone = values.phone.clone();
                next.first_name = values.first_name.clone();
                next.last_name = values.last_name.clone();
                next.policy = values.policy.clone();
                next.metadata = values.metadata.clone();
            });
            assert_eq!(current.next_with_values(at, values.clone()), expected);
        }
    }
}
