//! The customer routes and the Customer object (see `docs/api-rules.md`): create, retrieve,
//! soft delete and activate, ids, and what is stored.

use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn create_returns_201_location_etag_and_the_customer() {
    let app = spawn_app().await;
    let response = app
        .create(json!({
            "email": "alice@example.com",
            "phone": "+14155551234",
            "name": {"first": "Alice", "last": "Smith"},
            "policy": {"requireIntent": true, "limits": {"perDay": 500000}},
            "metadata": {"plan": "pro"}
        }))
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/customers/{id}"));
    assert_eq!(etag, "\"1\"");
    assert!(id.starts_with("cus_") && id.len() == 30, "{id}");
    assert_eq!(body["type"], "consumer");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["name"], json!({"first": "Alice", "last": "Smith"}));
    assert_eq!(
        body["policy"],
        json!({"requireIntent": true, "limits": {"perDay": 500000}})
    );
    assert_eq!(body["metadata"], json!({"plan": "pro"}));
    let created = body["createdAt"].as_str().unwrap();
    assert_eq!(created.len(), "2026-11-27T10:30:00.000Z".len());
    assert!(created.ends_with('Z'));
    assert_eq!(body["createdAt"], body["updatedAt"]);

    // What is stored is what was answered.
    let (email, version, policy): (Option<String>, i64, Option<serde_json::Value>) =
        sqlx::query_as("SELECT email, version, policy FROM customers WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(email.as_deref(), Some("alice@example.com"));
    assert_eq!(version, 1);
    assert_eq!(
        policy,
        Some(json!({"requireIntent": true, "limits": {"perDay": 500000}}))
    );
}

#[tokio::test]
async fn an_empty_create_makes_a_bare_consumer() {
    let app = spawn_app().await;
    let body = app.create_ok(json!({})).await;
    assert_eq!(body["type"], "consumer");
    assert_eq!(body["email"], serde_json::Value::Null);
    // Left out, not null: Proxy's schema makes them optional but not nullable.
    assert!(body.get("name").is_none(), "{body}");
    assert!(body.get("policy").is_none(), "{body}");
    assert_eq!(body["metadata"], json!({}));
    let corporate = app.create_ok(json!({"type": "corporate"})).await;
    assert_eq!(corporate["type"], "corporate");
}

#[tokio::test]
async fn ids_are_unique_and_time_ordered() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.create_id(json!({})).await);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    sorted.dedup();
    assert_eq!(sorted.len(), 5);
}

#[tokio::test]
async fn retrieve_returns_the_customer_with_its_etag() {
    let app = spawn_app().await;
    let created = app.create_ok(json!({"email": "bob@example.com"})).await;
    let id = created["id"].as_str().unwrap();
    let response = app.get(id).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, created);
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404() {
    let app = spawn_app().await;
    for id in ["cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E", "nope", "cus_%00"] {
        let response = app.get(id).await;
        error_body(response, 404, "not_found").await;
    }
}

#[tokio::test]
async fn delete_is_soft_and_returns_the_customer() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    let response = app
        .call(Method::DELETE, &format!("/v1/customers/{id}"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "deleted");
    // Still retrievable, still stored.
    assert_eq!(app.get_json(&id).await["status"], "deleted");
    let status: String = sqlx::query_scalar("SELECT status FROM customers WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(status, "deleted");
    // Deleting again: 200, unchanged.
    let again = app
        .call(Method::DELETE, &format!("/v1/customers/{id}"))
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["etag"], "\"2\"");
    assert_eq!(app.stored_version(&id).await, 2);
}

#[tokio::test]
async fn activate_moves_pending_to_active_once() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    let path = format!("/v1/customers/{id}/activate");
    let response = app.call(Method::POST, &path).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "active");
    assert_eq!(app.stored_version(&id).await, 2);
    // Active already: 200, unchanged.
    let again = app.call(Method::POST, &path).await;
    assert_eq!(again.status(), 200);
    assert_eq!(app.stored_version(&id).await, 2);
}

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let response = app.get_anonymous(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers().contains_key("x-request-id"));
    }
}

#[tokio::test]
async fn numbers_in_metadata_come_back_exactly() {
    let app = spawn_app().await;
    // serde_json without float_roundtrip parsed this one ulp off (…036).
    let body = app
        .create_ok(json!({"metadata": {"ratio": -96355.24996917037, "big": 9007199254740993u64}}))
        .await;
    let id = body["id"].as_str().expect("id");
    let text = app.get(id).await.text().await.expect("a body");
    assert!(text.contains("-96355.24996917037"), "{text}");
    assert!(text.contains("9007199254740993"), "{text}");
}

/// A customer is the same bytes wherever it is shown: the write's answer, GET, a list page and
/// the write's event — with members whose keys sort differently by length and alphabetically.
#[tokio::test]
async fn a_customer_is_the_same_bytes_in_every_answer_that_shows_it() {
    let app = spawn_app().await;
    let body = json!({
        "email": "bytes@example.com",
        "policy": {"ttlDays": 30, "cooldownMinutes": 5, "limits": {"perMonth": 900, "perDay": 90, "perAuth": 9},
                   "allowedMccs": ["5411"], "requireIntent": true},
        "metadata": {"zeta": 1, "a": {"long key": [1, {"y": true, "xx": null}], "b": 2.5}, "mid": "x"}
    });
    let created = send(app.request(Method::POST, "/v1/customers").json(&body)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.id();
    let get = send(app.request(Method::GET, &format!("/v1/customers/{id}"))).await;
    assert_eq!(get.text(), created.text(), "GET shows what create answered");
    let page = send(app.request(Method::GET, "/v1/customers")).await;
    assert!(
        page.text().contains(&created.text()),
        "the list page holds the same bytes: {}",
        page.text()
    );
    let patched = send(
        app.request(Method::PATCH, &format!("/v1/customers/{id}"))
            .json(&json!({"policy": {"limits": {"perDay": 100}}, "metadata": {"mid": null}})),
    )
    .await;
    let get = send(app.request(Method::GET, &format!("/v1/customers/{id}"))).await;
    assert_eq!(get.text(), patched.text(), "GET shows what PATCH answered");
    let events = send(app.request(Method::GET, &format!("/v1/customers/{id}/events"))).await;
    assert!(
        events
            .text()
            .contains(&format!("\"object\":{}", patched.text())),
        "the event holds the same bytes"
    );
}
