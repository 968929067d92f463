//! No-ops, concurrent patches, versions (the ETag) and `If-Match` preconditions.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;

#[tokio::test]
async fn an_empty_patch_is_a_no_op() {
    let app = spawn_app().await;
    let created = app.create_ok(alice()).await;
    let id = created["id"].as_str().unwrap();
    let before = app.snapshot(id).await;
    // Give a write something to change in updatedAt.
    tokio::time::sleep(Duration::from_millis(20)).await;

    let response = app.patch(id, json!({})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(etag(&response), "\"1\"");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, created, "200 with the customer, unchanged");
    assert_eq!(app.snapshot(id).await, before, "no write");
    assert_eq!(app.stored_version(id).await, 1);

    // The same sent as application/json.
    let response = send_patch(&app, id, "{}", Some("application/json"), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.snapshot(id).await, before, "no write");
}

#[tokio::test]
async fn a_patch_that_changes_nothing_is_a_no_op() {
    let app = spawn_app().await;
    let created = app.create_ok(alice()).await;
    let id = created["id"].as_str().unwrap();
    let before = app.snapshot(id).await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    for body in [
        json!({"email": "alice@example.com"}),
        json!({"name": {"first": "Alice"}}),
        alice(),
        json!({"policy": {"limits": {"perDay": 50_000}}, "metadata": {"plan": "pro"}}),
        json!({"policy": {"allowedMccs": ["5411", "5812"]}}),
        // Clearing what is not set changes nothing either.
        json!({"metadata": {"absent": null}}),
        json!({"policy": {"autoApproveBelow": null}}),
    ] {
        let response = app.patch(id, body.clone()).await;
        assert_eq!(response.status(), 200, "{body}");
        assert_eq!(etag(&response), "\"1\"", "{body}");
        let customer: Value = response.json().await.unwrap();
        assert_eq!(customer, created, "{body}");
        assert_eq!(app.snapshot(id).await, before, "no write for {body}");
    }

    // Same for a customer with nothing set.
    let bare = app.create_ok(json!({})).await;
    let bare_id = bare["id"].as_str().unwrap();
    let bare_before = app.snapshot(bare_id).await;
    for body in [
        json!({"email": null, "phone": null, "name": null, "policy": null, "metadata": null}),
        json!({"policy": {"limits": null}}),
        json!({"name": {"first": null}}),
        json!({"name": {}, "policy": {}, "metadata": {}}),
        json!({"policy": {"limits": {}}}),
    ] {
        let response = app.patch(bare_id, body.clone()).await;
        assert_eq!(response.status(), 200, "{body}");
        let customer: Value = response.json().await.unwrap();
        assert_eq!(customer, bare, "{body}");
        assert_eq!(
            app.snapshot(bare_id).await,
            bare_before,
            "no write for {body}"
        );
    }
}

#[tokio::test]
async fn concurrent_patches_never_lose_a_change() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    let patches = (0..50).map(|i| {
        let app = &app;
        let id = id.as_str();
        async move {
            let response = app
                .patch(id, json!({"metadata": { format!("k{i}"): i }}))
                .await;
            let status = response.status();
            (status, response.text().await.unwrap())
        }
    });
    let results = futures_util::future::join_all(patches).await;
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
    }
    let metadata = stored_metadata(&app, &id).await;
    let expected: serde_json::Map<String, Value> =
        (0..50).map(|i| (format!("k{i}"), json!(i))).collect();
    assert_eq!(metadata, Value::Object(expected), "all 50 keys are present");
    assert_eq!(app.stored_version(&id).await, 51);
    assert_eq!(
        app.get_json(&id).await["metadata"]
            .as_object()
            .unwrap()
            .len(),
        50
    );
}

#[tokio::test]
async fn the_etag_changes_with_every_change() {
    let app = spawn_app().await;
    let response = app.create(json!({"email": "alice@example.com"})).await;
    assert_eq!(etag(&response), "\"1\"");
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app.patch(&id, json!({"email": "bob@example.com"})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(etag(&response), "\"2\"");
    assert_eq!(etag(&app.get(&id).await), "\"2\"");
    let response = app.patch(&id, json!({"phone": "+14155551234"})).await;
    assert_eq!(etag(&response), "\"3\"");
    // A no-op keeps it.
    let response = app.patch(&id, json!({"phone": "+14155551234"})).await;
    assert_eq!(etag(&response), "\"3\"");
    assert_eq!(app.stored_version(&id).await, 3);
    // Status changes too.
    assert_eq!(etag(&app.activate(&id, None).await), "\"4\"");
    assert_eq!(etag(&app.delete(&id, None).await), "\"5\"");
    assert_eq!(app.stored_version(&id).await, 5);
}

/// A merge-patch PATCH of `body` with `If-Match: if_match`.
async fn patch_if_match(app: &TestApp, id: &str, body: &Value, if_match: &str) -> Response {
    send_patch(
        app,
        id,
        &body.to_string(),
        Some("application/merge-patch+json"),
        Some(if_match),
    )
    .await
}

#[tokio::test]
async fn a_stale_if_match_on_patch_is_412_and_changes_nothing() {
    let app = spawn_app().await;
    let id = app.create_id(json!({"email": "alice@example.com"})).await;
    patch_ok(&app, &id, json!({"email": "bob@example.com"})).await;
    let before = app.snapshot(&id).await;
    let body = json!({"email": "carol@example.com"});
    for if_match in ["\"1\"", "\"3\"", "W/\"2\"", "\"1\", \"3\"", "\"abc\""] {
        let response = patch_if_match(&app, &id, &body, if_match).await;
        error_body(response, 412, "precondition_failed").await;
        assert_eq!(
            app.snapshot(&id).await,
            before,
            "nothing changed ({if_match})"
        );
    }
    // Also for a patch that would change nothing.
    let response = patch_if_match(&app, &id, &json!({}), "\"1\"").await;
    error_body(response, 412, "precondition_failed").await;
    assert_eq!(
        stored(&app, &id).await.0.as_deref(),
        Some("bob@example.com")
    );
    assert_eq!(app.stored_version(&id).await, 2);
}

#[tokio::test]
async fn a_matching_if_match_or_star_lets_the_patch_through() {
    let app = spawn_app().await;
    let id = app.create_id(json!({"email": "alice@example.com"})).await;
    for (email, if_match, new_etag) in [
        ("bob@example.com", "\"1\"", "\"2\""),
        // One of several listed tags.
        ("carol@example.com", "\"7\", \"2\"", "\"3\""),
        ("dave@example.com", "*", "\"4\""),
    ] {
        let response = patch_if_match(&app, &id, &json!({ "email": email }), if_match).await;
        assert_eq!(response.status(), 200, "{if_match}");
        assert_eq!(etag(&response), new_etag);
        assert_eq!(stored(&app, &id).await.0.as_deref(), Some(email));
    }
    assert_eq!(app.stored_version(&id).await, 4);
}

#[tokio::test]
async fn if_match_on_delete() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    patch_ok(&app, &id, json!({"email": "alice@example.com"})).await;
    for stale in ["\"1\"", "\"3\"", "W/\"2\"", "\"1\", \"3\""] {
        let response = app.delete(&id, Some(stale)).await;
        error_body(response, 412, "precondition_failed").await;
        assert_eq!(status_of(&app, &id).await, "pending", "{stale}");
        assert_eq!(app.stored_version(&id).await, 2);
    }
    let response = app.delete(&id, Some("\"2\"")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(etag(&response), "\"3\"");
    assert_eq!(status_of(&app, &id).await, "deleted");

    // `*` on another customer; a list that contains the current tag on a third.
    let other = app.create_id(json!({})).await;
    let response = app.delete(&other, Some("*")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(status_of(&app, &other).await, "deleted");
    let third = app.create_id(json!({})).await;
    let response = app.delete(&third, Some("\"5\", \"1\"")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(status_of(&app, &third).await, "deleted");
    assert_eq!(app.stored_version(&third).await, 2);
}

#[tokio::test]
async fn if_match_on_activate() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    patch_ok(&app, &id, json!({"email": "alice@example.com"})).await;
    for stale in ["\"1\"", "\"3\"", "W/\"2\""] {
        let response = app.activate(&id, Some(stale)).await;
        error_body(response, 412, "precondition_failed").await;
        assert_eq!(status_of(&app, &id).await, "pending", "{stale}");
        assert_eq!(app.stored_version(&id).await, 2);
    }
    let response = app.activate(&id, Some("\"2\"")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(etag(&response), "\"3\"");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "active");
    assert_eq!(status_of(&app, &id).await, "active");

    let other = app.create_id(json!({})).await;
    let response = app.activate(&other, Some("*")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(status_of(&app, &other).await, "active");
    assert_eq!(app.stored_version(&other).await, 2);
}
