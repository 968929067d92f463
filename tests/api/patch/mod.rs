//! PATCH as an RFC 7396 merge patch (the rules are in `docs/api-rules.md`): the merge rules
//! (`merge`), content types and the validation of the merged result (`refusals`), no-ops,
//! concurrency, versions and preconditions (`versions`), deleted customers (`deleted`), the
//! instance's memory of customers (`recent`) and writes that fail at COMMIT (`commit_failures`).

mod commit_failures;
mod deleted;
mod merge;
mod recent;
mod refusals;
mod versions;

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::support::*;

/// PATCHes `body`, expects 200, checks the answer is what a GET now returns and that the ETag
/// is the stored version; returns the customer.
async fn patch_ok(app: &TestApp, id: &str, body: Value) -> Value {
    let response = app.patch(id, body.clone()).await;
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "patch {body} failed: {text}");
    let customer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        customer,
        app.get_json(id).await,
        "the answer is what is stored"
    );
    assert_eq!(
        etag,
        Some(format!("\"{}\"", app.stored_version(id).await)),
        "the ETag is the stored version"
    );
    customer
}

/// The stored writable columns: (email, phone, first_name, last_name, policy, metadata).
type Stored = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Value>,
    Value,
);

async fn stored(app: &TestApp, id: &str) -> Stored {
    sqlx::query_as(
        "SELECT email, phone, first_name, last_name, policy, metadata FROM customers WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .expect("the customer is stored")
}

async fn stored_policy(app: &TestApp, id: &str) -> Option<Value> {
    stored(app, id).await.4
}

async fn stored_metadata(app: &TestApp, id: &str) -> Value {
    stored(app, id).await.5
}

async fn status_of(app: &TestApp, id: &str) -> String {
    sqlx::query_scalar("SELECT status FROM customers WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

fn etag(response: &Response) -> String {
    response
        .headers()
        .get("etag")
        .expect("an ETag")
        .to_str()
        .unwrap()
        .to_owned()
}

/// A PATCH with an explicit content type (or none) and optional If-Match.
async fn send_patch(
    app: &TestApp,
    id: &str,
    body: &str,
    content_type: Option<&str>,
    if_match: Option<&str>,
) -> Response {
    let mut request = app
        .request(Method::PATCH, &format!("/v1/customers/{id}"))
        .body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(if_match) = if_match {
        request = request.header("if-match", if_match);
    }
    request.send().await.expect("request sent")
}

/// A customer with most fields set, for patches to merge into.
fn alice() -> Value {
    json!({
        "email": "alice@example.com",
        "phone": "+14155551234",
        "name": {"first": "Alice", "last": "Smith"},
        "policy": {
            "requireIntent": true,
            "cooldownMinutes": 30,
            "ttlDays": 90,
            "limits": {"perAuth": 10_000, "perDay": 50_000, "perMonth": 500_000},
            "allowedMccs": ["5411", "5812"]
        },
        "metadata": {"plan": "pro", "region": "eu", "tags": ["a", "b"]}
    })
}

async fn deleted_customer(app: &TestApp) -> (String, Value) {
    let id = app.create_id(alice()).await;
    let response = app.delete(&id, None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "deleted");
    (id, body)
}
