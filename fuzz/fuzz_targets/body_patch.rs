//! Bytes → the write routes' body pipeline: strict JSON parsing, then (for an object) the merge
//! patch and validation, as a create and as a PATCH of a fully populated customer. Nothing in
//! it may panic, and a patch that succeeded must be a no-op when applied again (RFC 7396 merge
//! is idempotent, and so must be normalisation and validation around it).

#![no_main]

use std::sync::LazyLock;

use customers_api::customers::input::BodyKind;
use customers_api::customers::patch::{apply, Outcome};
use customers_api::json_body::parse_strict;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

// The stored document of a write, as the property tests rebuild it (`tests/api/properties/`).
#[path = "../../tests/api/support/document.rs"]
mod document;
use document::stored_document;

/// The fully populated customer the property tests patch too (`tests/api/properties/`).
static FULL_CUSTOMER: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../tests/fixtures/full-customer.json"))
        .expect("the full customer fixture is JSON")
});

fn check(current: &Value, body: &Map<String, Value>, kind: BodyKind) {
    if let Ok(Outcome::Changed(values)) = apply(current, body, kind) {
        let once = stored_document(&values);
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
    check(&FULL_CUSTOMER, &body, BodyKind::Patch);
});
