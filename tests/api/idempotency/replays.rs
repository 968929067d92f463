//! A new key runs and stores its response with the write; the same request again is a replay of
//! it, byte for byte; another request under the same key is refused.

use serde_json::json;

use super::*;

#[tokio::test]
async fn a_new_key_executes_and_stores_the_response_with_the_write() {
    let app = spawn_app().await;
    let first = create_keyed(
        &app,
        "new-key-1",
        r#"{"email":"new@example.com","metadata":{"plan":"pro"}}"#,
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert!(!first.replayed());
    let id = first.id();
    assert_eq!(
        first.header("location"),
        Some(format!("/v1/customers/{id}").as_str())
    );
    assert_eq!(first.header("etag"), Some("\"1\""));

    let (org, mode, expires_in_hours): (String, String, f64) = sqlx::query_as(
        "SELECT org_id, mode, extract(epoch FROM expires_at - now())::float8 / 3600
           FROM idempotency_keys WHERE key = 'new-key-1'",
    )
    .fetch_one(&app.db)
    .await
    .expect("the key is stored");
    type StoredResponse = (Option<i16>, Option<Vec<u8>>, Option<String>, Option<String>);
    let (status, body, location, etag): StoredResponse = sqlx::query_as(
        "SELECT status_code, body, location, etag FROM idempotency_keys WHERE key = 'new-key-1'",
    )
    .fetch_one(&app.db)
    .await
    .expect("the response is stored");
    assert_eq!((org.as_str(), mode.as_str()), (ORG, "test"));
    assert_eq!(status, Some(201));
    assert_eq!(body.as_deref(), Some(first.body.as_slice()), "stored body");
    assert_eq!(location.as_deref(), first.header("location"));
    assert_eq!(etag.as_deref(), first.header("etag"));
    assert!(
        (23.9..=24.0).contains(&expires_in_hours),
        "default retention is 24 h, row expires in {expires_in_hours} h"
    );
    assert_eq!(app.count_customers().await, 1);
}

#[tokio::test]
async fn a_replay_returns_the_stored_response_and_runs_nothing() {
    let app = spawn_app().await;
    let body = r#"{"email":"replay@example.com","name":{"first":"Ann"}}"#;
    let first = create_keyed(&app, "create-1", body).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let id = first.id();
    for _ in 0..3 {
        let replay = create_keyed(&app, "create-1", body).await;
        assert_replay_of(&first, &replay);
    }
    assert_eq!(app.count_customers().await, 1, "only one customer");

    // PATCH: the replay returns the stored (now stale) response, and does not write again.
    let patch = r#"{"metadata":{"a":"1"}}"#;
    let patched = patch_keyed(&app, &id, "patch-1", patch).await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.header("etag"), Some("\"2\""));
    let undo = app.patch(&id, json!({"metadata": {"a": null}})).await;
    assert_eq!(undo.status(), 200);
    assert_eq!(app.stored_version(&id).await, 3);
    let replay = patch_keyed(&app, &id, "patch-1", patch).await;
    assert_replay_of(&patched, &replay);
    assert_eq!(
        replay.json()["metadata"],
        json!({"a": "1"}),
        "the stored body"
    );
    assert_eq!(app.stored_version(&id).await, 3, "the replay wrote nothing");
    assert_eq!(app.get_json(&id).await["metadata"], json!({}));

    // activate and DELETE replay too.
    let activated = keyed_action(&app, "activate", &id, "activate-1").await;
    assert_eq!(activated.status, 200, "{}", activated.text());
    assert_eq!(activated.json()["status"], "active");
    assert_replay_of(
        &activated,
        &keyed_action(&app, "activate", &id, "activate-1").await,
    );
    let deleted = keyed_action(&app, "delete", &id, "delete-1").await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["status"], "deleted");
    let version = app.stored_version(&id).await;
    assert_replay_of(
        &deleted,
        &keyed_action(&app, "delete", &id, "delete-1").await,
    );
    assert_eq!(app.stored_version(&id).await, version);
    assert_eq!(key_rows(&app.db).await, 4);
}

#[tokio::test]
async fn key_order_and_spacing_of_the_body_do_not_matter() {
    let app = spawn_app().await;
    let first = create_keyed(
        &app,
        "order-1",
        r#"{"email":"order@example.com","metadata":{"x":"1","y":"2"},"policy":{"limits":{"perDay":100,"perMonth":200}}}"#,
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let replay = create_keyed(
        &app,
        "order-1",
        "{\n  \"policy\" : { \"limits\" : { \"perMonth\" : 200 , \"perDay\" : 100 } },\n  \"metadata\" : {\"y\":\"2\",\t\"x\":\"1\"},\n  \"email\" : \"order@example.com\"\n}",
    )
    .await;
    assert_replay_of(&first, &replay);
    assert_eq!(app.count_customers().await, 1);

    let id = first.id();
    let patched = patch_keyed(&app, &id, "order-2", r#"{"name":{"first":"A","last":"B"}}"#).await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    let replay = patch_keyed(
        &app,
        &id,
        "order-2",
        r#"  { "name" : { "last" : "B" , "first" : "A" } }  "#,
    )
    .await;
    assert_replay_of(&patched, &replay);
    assert_eq!(app.stored_version(&id).await, 2);
}

#[tokio::test]
async fn the_same_key_with_a_different_request_is_422_and_runs_nothing() {
    let app = spawn_app().await;
    let first = create_keyed(&app, "reuse-1", r#"{"email":"one@example.com"}"#).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let id = first.id();

    // A different body.
    let reply = create_keyed(&app, "reuse-1", r#"{"email":"two@example.com"}"#).await;
    let error = reply.error(422, "idempotency_key_reused");
    assert_eq!(error["type"], "idempotency_error");
    assert!(!reply.replayed());
    // A body that only adds a member.
    create_keyed(
        &app,
        "reuse-1",
        r#"{"email":"one@example.com","metadata":{}}"#,
    )
    .await
    .error(422, "idempotency_key_reused");
    assert_eq!(app.count_customers().await, 1, "nothing was created");

    // A different path and method with the same key.
    let other = app.create_id(json!({})).await;
    let patch = r#"{"metadata":{"a":"1"}}"#;
    let patched = patch_keyed(&app, &id, "reuse-2", patch).await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    patch_keyed(&app, &other, "reuse-2", patch)
        .await
        .error(422, "idempotency_key_reused");
    keyed_action(&app, "delete", &id, "reuse-2")
        .await
        .error(422, "idempotency_key_reused");
    keyed_action(&app, "activate", &id, "reuse-2")
        .await
        .error(422, "idempotency_key_reused");
    // The create's key on a PATCH of the customer it made.
    patch_keyed(&app, &id, "reuse-1", patch)
        .await
        .error(422, "idempotency_key_reused");

    assert_eq!(
        app.stored_version(&id).await,
        2,
        "only the first PATCH wrote"
    );
    assert_eq!(
        app.stored_version(&other).await,
        1,
        "the other is untouched"
    );
    let current = app.get_json(&id).await;
    assert_eq!(
        current["status"], "pending",
        "neither deleted nor activated"
    );
    assert_eq!(current["email"], "one@example.com");
    assert_eq!(app.count_customers().await, 2);

    // The original requests still replay their own results.
    assert_replay_of(
        &first,
        &create_keyed(&app, "reuse-1", r#"{"email":"one@example.com"}"#).await,
    );
    assert_replay_of(&patched, &patch_keyed(&app, &id, "reuse-2", patch).await);
}
