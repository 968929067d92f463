//! Compatibility with the Proxy API: the responses of its five customer routes validate against
//! the schemas of `proxy-customers-openapi.json` (a copy of `../shared/reference/` kept in
//! `tests/fixtures/` so the test does not depend on a folder outside the repository).
//!
//! Sparse customers (no name, no policy) are checked too: `name` and `policy` are left out when
//! nothing is set in them, as Proxy's schema (optional, not nullable) describes.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

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

#[tokio::test]
async fn the_five_proxy_routes_answer_what_the_reference_describes() {
    let spec = spec();
    let app = spawn_app().await;
    let full = json!({
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
    });

    // createCustomer: 201 Customer
    let response = app.create(full.clone()).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_valid(
        &response_schema(&spec, "/customers", "post", "201"),
        &created,
        "createCustomer",
    );
    let id = created["id"].as_str().unwrap();

    // getCustomer: 200 Customer
    let got = app.get_json(id).await;
    assert_valid(
        &response_schema(&spec, "/customers/{customerId}", "get", "200"),
        &got,
        "getCustomer",
    );

    // updateCustomer: 200 Customer
    let response = app
        .patch(id, json!({"policy": {"limits": {"perDay": 6000}}}))
        .await;
    assert_eq!(response.status(), 200);
    let patched: Value = response.json().await.unwrap();
    assert_valid(
        &response_schema(&spec, "/customers/{customerId}", "patch", "200"),
        &patched,
        "updateCustomer",
    );

    // listCustomers: 200 {data, nextCursor}
    app.create_ok(full.clone()).await;
    let response = app
        .request(Method::GET, "/v1/customers?limit=1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    assert!(page["nextCursor"].is_string());
    assert_valid(
        &response_schema(&spec, "/customers", "get", "200"),
        &page,
        "listCustomers",
    );

    // Sparse customers, alone and in a list page: no name, no policy, email only.
    for body in [
        json!({"email": "only@example.com"}),
        json!({"name": {"first": "Grace"}}),
        json!({"policy": {"requireIntent": true}}),
        json!({}),
    ] {
        let sparse = app.create_ok(body.clone()).await;
        let got = app.get_json(sparse["id"].as_str().unwrap()).await;
        assert_valid(
            &response_schema(&spec, "/customers/{customerId}", "get", "200"),
            &got,
            &format!("getCustomer of {body}"),
        );
    }
    let page: Value = app
        .request(Method::GET, "/v1/customers?limit=100")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().map(Vec::len), Some(6));
    assert_valid(
        &response_schema(&spec, "/customers", "get", "200"),
        &page,
        "listCustomers with sparse customers",
    );

    // deleteCustomer: 200 Customer
    let response = app
        .request(Method::DELETE, &format!("/v1/customers/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let deleted: Value = response.json().await.unwrap();
    assert_valid(
        &response_schema(&spec, "/customers/{customerId}", "delete", "200"),
        &deleted,
        "deleteCustomer",
    );

    // The error responses the reference names: 400, 401, 404.
    let bad = app.create(json!({"email": 5})).await;
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert_valid(
        &response_schema(&spec, "/customers", "post", "400"),
        &bad,
        "BadRequest",
    );
    let unauthorized = app
        .client
        .get(app.url("/v1/customers"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let unauthorized: Value = unauthorized.json().await.unwrap();
    assert_valid(
        &response_schema(&spec, "/customers", "get", "401"),
        &unauthorized,
        "Unauthorized",
    );
    let missing = app.get("cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E").await;
    assert_eq!(missing.status(), 404);
    let missing: Value = missing.json().await.unwrap();
    assert_valid(
        &response_schema(&spec, "/customers/{customerId}", "get", "404"),
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
