//! Deleted customers: a PATCH or an activation is 409, deleting again is 200 unchanged; and
//! activating an active customer is 200 unchanged.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;

#[tokio::test]
async fn patching_a_deleted_customer_is_409() {
    let app = spawn_app().await;
    let (id, _) = deleted_customer(&app).await;
    let before = app.snapshot(&id).await;
    for body in [
        json!({"email": "bob@example.com"}),
        json!({}),
        json!({"metadata": null}),
    ] {
        let response = app.patch(&id, body.clone()).await;
        error_body(response, 409, "customer_deleted").await;
        assert_eq!(
            app.snapshot(&id).await,
            before,
            "nothing changed for {body}"
        );
    }
    let response = send_patch(
        &app,
        &id,
        &json!({"email": "bob@example.com"}).to_string(),
        Some("application/json"),
        Some("\"2\""),
    )
    .await;
    error_body(response, 409, "customer_deleted").await;
    assert_eq!(app.snapshot(&id).await, before);
}

#[tokio::test]
async fn activating_a_deleted_customer_is_409() {
    let app = spawn_app().await;
    let (id, _) = deleted_customer(&app).await;
    let before = app.snapshot(&id).await;
    let response = app.activate(&id, None).await;
    error_body(response, 409, "customer_deleted").await;
    let response = app.activate(&id, Some("*")).await;
    error_body(response, 409, "customer_deleted").await;
    assert_eq!(app.snapshot(&id).await, before);
    assert_eq!(status_of(&app, &id).await, "deleted");

    // Also when it had been active before being deleted.
    let active = app.create_id(json!({})).await;
    assert_eq!(app.activate(&active, None).await.status(), 200);
    assert_eq!(app.delete(&active, None).await.status(), 200);
    let response = app.activate(&active, None).await;
    error_body(response, 409, "customer_deleted").await;
    assert_eq!(status_of(&app, &active).await, "deleted");
    assert_eq!(app.stored_version(&active).await, 3);
}

#[tokio::test]
async fn deleting_a_deleted_customer_is_200_unchanged() {
    let app = spawn_app().await;
    let (id, first) = deleted_customer(&app).await;
    let before = app.snapshot(&id).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    for if_match in [None, Some("*"), Some("\"2\"")] {
        let response = app.delete(&id, if_match).await;
        assert_eq!(response.status(), 200, "{if_match:?}");
        assert_eq!(etag(&response), "\"2\"");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, first, "the same customer, unchanged");
        assert_eq!(app.snapshot(&id).await, before, "no write");
    }
}

#[tokio::test]
async fn activating_an_active_customer_is_200_unchanged() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    let response = app.activate(&id, None).await;
    assert_eq!(response.status(), 200);
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["status"], "active");
    let before = app.snapshot(&id).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    for if_match in [None, Some("*"), Some("\"2\"")] {
        let response = app.activate(&id, if_match).await;
        assert_eq!(response.status(), 200, "{if_match:?}");
        assert_eq!(etag(&response), "\"2\"");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, first, "the same customer, unchanged");
        assert_eq!(app.snapshot(&id).await, before, "no write");
    }
    assert_eq!(app.stored_version(&id).await, 2);
}
