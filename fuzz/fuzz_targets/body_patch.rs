//! Bytes → the write routes' body pipeline: strict JSON parsing, then (for an object) the merge
//! patch and validation, as a create and as a PATCH of a fully populated customer. Nothing in
//! it may panic, and a patch that succeeded must be a no-op when applied again (RFC 7396 merge
//! is idempotent, and so must be normalisation and validation around it).

#![no_main]

use customers_api::customers::input::BodyKind;
use customers_api::customers::model::CustomerValues;
use customers_api::customers::patch::{apply, Outcome};
use customers_api::json_body::parse_strict;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

fn stored(values: &CustomerValues) -> Value {
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

fn check(current: &Value, body: &Map<String, Value>, kind: BodyKind) {
    if let Ok(Outcome::Changed(values)) = apply(current, body, kind) {
        let once = stored(&values);
        assert!(
            matches!(apply(&once, body, BodyKind::Patch), Ok(Outcome::Unchanged)),
            "applying the body again changed {once}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(body)) = parse_strict(data) else {
        return;
    };
    let empty = json!({"metadata": {}});
    check(&empty, &body, BodyKind::Create);
    let customer = json!({
        "email": "fuzz@example.com",
        "phone": "+14155550100",
        "name": {"first": "Fuzz", "last": "Target"},
        "policy": {
            "requireIntent": true,
            "requireAttestation": false,
            "requireApproval": true,
            "lockToFirstMerchant": false,
            "autoApproveBelow": 500,
            "attestationWindowMinutes": 10,
            "cooldownMinutes": 5,
            "ttlMinutes": 60,
            "ttlDays": 30,
            "limits": {"perAuth": 1000, "perDay": 5000, "perMonth": 50000},
            "allowedMccs": ["5411", "5812"],
            "blockedMccs": ["7995"],
            "allowedMerchants": ["Acme", "Globex"]
        },
        "metadata": {"plan": "pro", "nested": {"a": [1, null, "x"]}}
    });
    check(&customer, &body, BodyKind::Patch);
});
