//! Authentication and tenancy: bearer JWTs (`tokens`), scopes with implication (`scopes`), and
//! the tenant (org, mode) confining every read and write (`tenancy`), keys fetched from an
//! identity provider (`jwks`). The rules are in
//! `docs/api-rules.md`; token attacks beyond these are in `security`.

mod jwks;
mod scopes;
mod tenancy;
mod tokens;

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::support::*;

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request sent")
}

async fn create_as(app: &TestApp, token: &str, body: Value) -> String {
    let response = send(app, Method::POST, "/v1/customers", Some(token), Some(body)).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn list_ids(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let response = send(
        app,
        Method::GET,
        &format!("/v1/customers{query}"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// (org, mode, version, status, email) as stored.
async fn stored(app: &TestApp, id: &str) -> (String, String, i64, String, Option<String>) {
    sqlx::query_as("SELECT org_id, mode, version, status, email FROM customers WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .expect("the customer is stored")
}

/// The routes of one customer: GET, PATCH (with `patch`), DELETE and activate.
fn routes_of(id: &str, patch: Value) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, format!("/v1/customers/{id}"), None),
        (Method::PATCH, format!("/v1/customers/{id}"), Some(patch)),
        (Method::DELETE, format!("/v1/customers/{id}"), None),
        (Method::POST, format!("/v1/customers/{id}/activate"), None),
    ]
}

/// A tuple of what [`stored`] reads, for a customer of `org` in test mode.
fn row(
    org: &str,
    version: i64,
    status: &str,
    email: &str,
) -> (String, String, i64, String, Option<String>) {
    (
        org.into(),
        "test".into(),
        version,
        status.into(),
        Some(email.into()),
    )
}

/// Every route refuses the Authorization header value `header` (None: no header) with 401, and
/// nothing is written.
async fn assert_refused_everywhere(app: &TestApp, header: Option<&str>, what: &str) {
    let id = app.create_id(json!({"email": "keep@example.com"})).await;
    let before = app.count_customers().await;
    let mut routes = vec![
        (Method::GET, "/v1/customers".to_owned(), None),
        (
            Method::POST,
            "/v1/customers".to_owned(),
            Some(json!({"email": "new@example.com"})),
        ),
    ];
    routes.extend(routes_of(&id, json!({"email": "changed@example.com"})));
    for (method, path, body) in routes {
        let mut request = app.client.request(method.clone(), app.url(&path));
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_401(response, &format!("{what}: {method} {path}")).await;
    }
    assert_eq!(app.count_customers().await, before, "{what}");
    assert_eq!(
        stored(app, &id).await,
        row(ORG, 1, "pending", "keep@example.com"),
        "{what}"
    );
}
