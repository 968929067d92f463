//! Compatibility with the Proxy API: the responses of its five customer routes validate against
//! the schemas of Proxy's OpenAPI document, kept in `tests/fixtures/proxy-customers-openapi.json`
//! (where the shared reference folder sits beside the checkout, a test checks the copy is the
//! same).
//!
//! Sparse customers (no name, no policy) are checked too: `name` and `policy` are left out when
//! nothing is set in them, as Proxy's schema (optional, not nullable) describes.

use serde_json::{json, Value};

use crate::support::*;

fn spec() -> Value {
    let text = include_str!("../fixtures/proxy-customers-openapi.json");
    serde_json::from_str(text).expect("the reference parses")
}

/// OpenAPI 3.0 schema → JSON Schema: `$ref`s inlined, `nullable: true` turned into "or null".
fn to_json_schema(schema: &Value, spec: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                let pointer = reference.trim_start_matches('#');
                let target = spec.pointer(pointer).expect("the $ref resolves");
                return to_json_schema(target, spec);
            }
            let mut out = serde_json::Map::new();
            for (key, value) in map {
                if key != "nullable" {
                    out.insert(key.clone(), to_json_schema(value, spec));
                }
            }
            let converted = Value::Object(out);
            if map.get("nullable") == Some(&Value::Bool(true)) {
                json!({"anyOf": [converted, {"type": "null"}]})
            } else {
                converted
            }
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| to_json_schema(v, spec)).collect())
        }
        other => other.clone(),
    }
}

/// The JSON Schema of one response of one operation of the reference.
fn response_schema(spec: &Value, path: &str, method: &str, status: &str) -> Value {
    let operation = &spec["paths"][path][method];
    let mut response = operation["responses"][status].clone();
    if let Some(reference) = response.get("$ref").and_then(Value::as_str) {
        response = spec
            .pointer(reference.trim_start_matches('#'))
            .expect("the response $ref resolves")
            .clone();
    }
    let schema = &response["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {path} {status} has a schema");
    to_json_schema(schema, spec)
}

fn assert_valid(schema: &Value, instance: &Value, what: &str) {
    let validator = jsonschema::validator_for(schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match the reference: {errors:?}\n{instance}"
    );
}

/// `assert_valid` against the schema of one response of one operation of the reference.
fn assert_answers(
    spec: &Value,
    (path, method, status): (&str, &str, &str),
    instance: &Value,
    what: &str,
) {
    assert_valid(&response_schema(spec, path, method, status), instance, what);
}

const CREATE: (&str, &str, &str) = ("/customers", "post", "201");
const GET: (&str, &str, &str) = ("/customers/{customerId}", "get", "200");
const UPDATE: (&str, &str, &str) = ("/customers/{customerId}", "patch", "200");
const LIST: (&str, &str, &str) = ("/customers", "get", "200");
const DELETE: (&str, &str, &str) = ("/customers/{customerId}", "delete", "200");

/// A corporate customer with every field set.
fn full() -> Value {
    json!({
        "type": "corporate",
        "email": "ops@example.com",
        "phone": "+442071234567",
        "name": {"first": "Ada", "last": "Lovelace"},
        "policy": {
            "requireIntent": true, "requireAttestation": false, "requireApproval": true,
            "autoApproveBelow": 1000, "attestationWindowMinutes": 5, "cooldownMinutes": 1,
            "ttlMinutes": 60, "ttlDays": 30,
            "limits": {"perAuth": 1000, "perDay": 5000, "perMonth": 20000},
            "allowedMccs": ["5734"], "blockedMccs": ["7995"], "allowedMerchants": ["Acme"],
            "lockToFirstMerchant": false
        },
        "metadata": {"team": "payments", "n": 3}
    })
}

/// A list page of the given query; must be 200.
async fn page(app: &TestApp, query: &str) -> Value {
    let response = app.list_raw(query).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_five_proxy_routes_answer_what_the_reference_describes() {
    let spec = spec();
    let app = spawn_app().await;

    // createCustomer: 201 Customer
    let response = app.create(full()).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_answers(&spec, CREATE, &created, "createCustomer");
    let id = created["id"].as_str().unwrap();

    // getCustomer: 200 Customer
    assert_answers(&spec, GET, &app.get_json(id).await, "getCustomer");

    // updateCustomer: 200 Customer
    let response = app
        .patch(id, json!({"policy": {"limits": {"perDay": 6000}}}))
        .await;
    assert_eq!(response.status(), 200);
    let patched: Value = response.json().await.unwrap();
    assert_answers(&spec, UPDATE, &patched, "updateCustomer");

    // listCustomers: 200 {data, nextCursor}
    app.create_ok(full()).await;
    let first = page(&app, "?limit=1").await;
    assert!(first["nextCursor"].is_string());
    assert_answers(&spec, LIST, &first, "listCustomers");

    // deleteCustomer: 200 Customer
    let response = app.delete(id, None).await;
    assert_eq!(response.status(), 200);
    let deleted: Value = response.json().await.unwrap();
    assert_answers(&spec, DELETE, &deleted, "deleteCustomer");
}

/// Sparse customers, alone and in a list page: no name, no policy, email only.
#[tokio::test]
async fn sparse_customers_answer_what_the_reference_describes() {
    let spec = spec();
    let app = spawn_app().await;
    for _ in 0..2 {
        app.create_ok(full()).await;
    }
    for body in [
        json!({"email": "only@example.com"}),
        json!({"name": {"first": "Grace"}}),
        json!({"policy": {"requireIntent": true}}),
        json!({}),
    ] {
        let sparse = app.create_ok(body.clone()).await;
        let got = app.get_json(sparse["id"].as_str().unwrap()).await;
        assert_answers(&spec, GET, &got, &format!("getCustomer of {body}"));
    }
    let all = page(&app, "?limit=100").await;
    assert_eq!(all["data"].as_array().map(Vec::len), Some(6));
    assert_answers(&spec, LIST, &all, "listCustomers with sparse customers");
}

/// The error responses the reference names: 400, 401, 404.
#[tokio::test]
async fn the_errors_answer_what_the_reference_describes() {
    let spec = spec();
    let app = spawn_app().await;
    let bad = app.create(json!({"email": 5})).await;
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert_answers(&spec, ("/customers", "post", "400"), &bad, "BadRequest");
    let unauthorized = app.get_anonymous("/v1/customers").await;
    assert_eq!(unauthorized.status(), 401);
    let unauthorized: Value = unauthorized.json().await.unwrap();
    assert_answers(
        &spec,
        ("/customers", "get", "401"),
        &unauthorized,
        "Unauthorized",
    );
    let missing = app.get(MISSING_ID).await;
    assert_eq!(missing.status(), 404);
    let missing: Value = missing.json().await.unwrap();
    assert_answers(
        &spec,
        ("/customers/{customerId}", "get", "404"),
        &missing,
        "NotFound",
    );
}

#[test]
fn the_vendored_reference_is_the_shared_one() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/proxy-customers-openapi.json");
    // Only checkable where shared/ sits beside the checkout (sessions and CI).
    if let Ok(text) = std::fs::read_to_string(shared) {
        assert_eq!(
            text,
            include_str!("../fixtures/proxy-customers-openapi.json")
        );
    }
}
