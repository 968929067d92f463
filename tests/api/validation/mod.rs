//! The validation of a create body and of the result of every patch (the rules are in
//! `docs/api-rules.md`): the shape of the body and its fields (`fields`), contact details
//! (`contact`), the spending policy (`policy`), metadata (`metadata`), and the body as a whole
//! (`body`: every violation at once, size, NUL characters).
//!
//! Every rejected case checks the status, the envelope code, the `param` (dotted path), the
//! `details.errors` list, and that nothing was written.

mod body;
mod contact;
mod fields;
mod metadata;
mod policy;

use serde_json::{json, Value};

use crate::support::*;

/// Every entry of `details.errors` is `{param, code, message}` with non-empty strings.
fn check_details(error: &Value) {
    let errors = error["details"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("details.errors is a list: {error}"));
    assert!(!errors.is_empty(), "details.errors is not empty: {error}");
    for e in errors {
        for field in ["param", "code", "message"] {
            assert!(
                e[field].as_str().is_some_and(|s| !s.is_empty()),
                "each entry of details.errors has a {field}: {error}"
            );
        }
    }
}

/// `param` is `path` or something under it (`policy.allowedMccs.3` is under `policy.allowedMccs`).
fn is_under(param: &str, path: &str) -> bool {
    param == path || param.starts_with(&format!("{path}."))
}

/// Every path of `expected` is named by some entry of `details.errors`.
fn assert_lists_all(error: &Value, expected: &[&str]) {
    let params = error_params(error);
    for path in expected {
        assert!(
            params.iter().any(|p| is_under(p, path)),
            "details.errors should name {path}; got {params:?} in {error}"
        );
    }
    let param = error["param"].as_str().unwrap_or_default();
    assert!(
        params.iter().any(|p| p == param),
        "the envelope's param ({param}) is one of details.errors: {params:?}"
    );
}

/// POSTs `body` as a create; expects 400 with `code` and that no customer was written.
async fn create_rejected(app: &TestApp, body: Value, code: &str) -> Value {
    let before = app.count_customers().await;
    let response = app.create(body.clone()).await;
    let status = response.status().as_u16();
    assert_eq!(status, 400, "create should be rejected: {body}");
    let error = error_body(response, 400, code).await;
    check_details(&error);
    assert_eq!(
        app.count_customers().await,
        before,
        "nothing is written for {body}"
    );
    error
}

/// A create rejected with `parameter_invalid` whose only violations are at `path` (or under
/// it, for an item of a list).
async fn invalid_at(app: &TestApp, body: Value, path: &str) -> Value {
    let error = create_rejected(app, body.clone(), "parameter_invalid").await;
    let param = error["param"].as_str().unwrap_or_default();
    assert!(
        is_under(param, path),
        "param should be {path} for {body}: {error}"
    );
    let params = error_params(&error);
    assert!(
        params.iter().all(|p| is_under(p, path)),
        "only {path} is reported for {body}: {error}"
    );
    error
}

/// A create that must be accepted; returns the customer.
async fn accepted(app: &TestApp, body: Value) -> Value {
    let before = app.count_customers().await;
    let response = app.create(body.clone()).await;
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    assert_eq!(status, 201, "create should be accepted: {body}: {text}");
    assert_eq!(app.count_customers().await, before + 1);
    serde_json::from_str(&text).expect("a JSON customer")
}

/// PATCHes `body`; expects 400 with `code` and the stored row unchanged.
async fn patch_rejected(app: &TestApp, id: &str, body: Value, code: &str) -> Value {
    let before = app.snapshot(id).await;
    let response = app.patch(id, body.clone()).await;
    assert_eq!(
        response.status().as_u16(),
        400,
        "patch should be rejected: {body}"
    );
    let error = error_body(response, 400, code).await;
    check_details(&error);
    assert_eq!(app.snapshot(id).await, before, "nothing changed for {body}");
    error
}

/// `{"policy": {...}}` with `value` at the path under `policy`.
fn policy_at(path: &[&str], value: Value) -> Value {
    let mut inner = value;
    for key in path.iter().rev() {
        inner = json!({ *key: inner });
    }
    json!({ "policy": inner })
}

/// A create rejected with `parameter_unknown` naming exactly `param`, and nothing else.
async fn unknown_at(app: &TestApp, body: Value, param: &str) {
    let error = create_rejected(app, body, "parameter_unknown").await;
    assert_eq!(error["param"], param);
    assert_eq!(error_params(&error), vec![param.to_owned()]);
}
