//! Listing (the rules are in `docs/api-rules.md`): page sizes, the page's shape and order
//! (`pages`), cursors (`cursors`), filters (`filters`), and keyset pagination under concurrent
//! writes (`concurrent`).

mod concurrent;
mod cursors;
mod filters;
mod pages;

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::support::*;

/// `GET /v1/customers` with the given query pairs (properly URL-encoded), as `ORG` admin.
async fn list(app: &TestApp, query: &[(&str, &str)]) -> Response {
    app.request(Method::GET, "/v1/customers")
        .query(query)
        .send()
        .await
        .expect("request sent")
}

/// A list page; panics unless 200.
async fn list_ok(app: &TestApp, query: &[(&str, &str)]) -> Value {
    let response = list(app, query).await;
    assert_eq!(
        response.status(),
        200,
        "list {query:?} failed: {:?}",
        response.text().await
    );
    response.json().await.expect("a JSON page")
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data is an array")
        .iter()
        .map(|c| c["id"].as_str().expect("an id").to_owned())
        .collect()
}

fn next_cursor(page: &Value) -> String {
    page["nextCursor"]
        .as_str()
        .unwrap_or_else(|| panic!("a nextCursor string: {page}"))
        .to_owned()
}

/// Creates `n` customers, ten at a time concurrently (so several share a millisecond).
async fn create_many(app: &TestApp, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let batch = left.min(10);
        let created =
            futures_util::future::join_all((0..batch).map(|_| app.create_id(json!({})))).await;
        out.extend(created);
        left -= batch;
    }
    out
}

/// Pages through a listing to the end; returns every id in the order served.
async fn page_through(app: &TestApp, filters: &[(&str, &str)], limit: usize) -> Vec<String> {
    let limit = limit.to_string();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut query: Vec<(&str, &str)> = filters.to_vec();
        query.push(("limit", &limit));
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        let page = list_ok(app, &query).await;
        seen.extend(ids(&page));
        if page["hasMore"] == json!(true) {
            cursor = Some(next_cursor(&page));
        } else {
            assert_eq!(page["nextCursor"], Value::Null, "last page: {page}");
            return seen;
        }
    }
    panic!("paging never ended");
}

async fn delete_ok(app: &TestApp, id: &str) {
    let response = app.delete(id, None).await;
    assert_eq!(response.status(), 200, "delete {id}");
}

async fn activate_ok(app: &TestApp, id: &str) {
    let response = app.activate(id, None).await;
    assert_eq!(response.status(), 200, "activate {id}");
}

/// Asserts that the ids are in the service's order: createdAt descending, then id descending.
async fn assert_newest_first(app: &TestApp, ids: &[String]) {
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, created_at FROM customers WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&app.db)
            .await
            .unwrap();
    let created: std::collections::HashMap<String, _> = rows.into_iter().collect();
    for pair in ids.windows(2) {
        let a = (created[&pair[0]], &pair[0]);
        let b = (created[&pair[1]], &pair[1]);
        assert!(a > b, "{a:?} must come before {b:?}");
    }
}
