//! The stored document a successful write produces, rebuilt from the values it stores: what a
//! patch must leave unchanged when applied again. Shared with the cargo-fuzz target
//! (`fuzz/fuzz_targets/body_patch.rs` includes this file), so it may use only `customers_api`
//! and `serde_json`.

use customers_api::customers::model::CustomerValues;
use serde_json::{json, Map, Value};

/// The stored document a successful write produces, rebuilt from the values it stores.
pub fn stored_document(values: &CustomerValues) -> Value {
    let mut doc = Map::new();
    if let Some(email) = &values.email {
        doc.insert("email".into(), json!(email));
    }
    if let Some(phone) = &values.phone {
        doc.insert("phone".into(), json!(phone));
    }
    let mut name = Map::new();
    if let Some(first) = &values.first_name {
        name.insert("first".into(), json!(first));
    }
    if let Some(last) = &values.last_name {
        name.insert("last".into(), json!(last));
    }
    if !name.is_empty() {
        doc.insert("name".into(), Value::Object(name));
    }
    if let Some(policy) = &values.policy {
        doc.insert("policy".into(), policy.clone());
    }
    doc.insert("metadata".into(), values.metadata.clone());
    Value::Object(doc)
}
