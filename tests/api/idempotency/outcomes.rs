//! What is stored under a key: nothing for a request refused before it ran (the key stays free
//! for the corrected retry), the answer for a business outcome (404, 409, 412).

use reqwest::Method;
use serde_json::json;

use super::*;

/// `refused` was refused with `status` and `code`, and nothing was stored under `key`.
async fn assert_refused_unstored(
    app: &TestApp,
    key: &str,
    refused: Reply,
    status: u16,
    code: &str,
) {
    refused.error(status, code);
    assert_eq!(stored_key_status(&app.db, ORG, key).await, None, "{key}");
}

/// The retry with the same key ran (the key was free): `status`, not a replay.
fn assert_ran(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text());
    assert!(!reply.replayed(), "{what}");
}

/// Creates refused for their body store nothing; the corrected create with the same key runs.
#[tokio::test]
async fn rejected_creates_store_nothing_and_the_key_stays_free() {
    let app = spawn_app().await;

    // 400 validation on create, then the corrected create with the same key runs.
    let bad = create_keyed(&app, "fix-400", r#"{"email":"not-an-email"}"#).await;
    assert_refused_unstored(&app, "fix-400", bad, 400, "parameter_invalid").await;
    assert_eq!(app.count_customers().await, 0);
    let fixed = create_keyed(&app, "fix-400", r#"{"email":"fixed@example.com"}"#).await;
    assert_ran(&fixed, 201, "the corrected retry runs");
    assert_eq!(fixed.json()["email"], "fixed@example.com");
    assert_eq!(app.count_customers().await, 1);
    assert_replay_of(
        &fixed,
        &create_keyed(&app, "fix-400", r#"{"email":"fixed@example.com"}"#).await,
    );

    // 400 unknown field, 400 invalid JSON and 413 (a body over 64 KiB), then a normal one.
    let huge = format!(r#"{{"metadata":{{"big":"{}"}}}}"#, "x".repeat(70_000));
    for (key, body, status, code) in [
        (
            "fix-unknown",
            r#"{"emial":"x@example.com"}"#,
            400,
            "parameter_unknown",
        ),
        ("fix-json", r#"{"email": "#, 400, "invalid_json"),
        ("fix-413", huge.as_str(), 413, "payload_too_large"),
    ] {
        let refused = create_keyed(&app, key, body).await;
        assert_refused_unstored(&app, key, refused, status, code).await;
        assert_ran(&create_keyed(&app, key, "{}").await, 201, key);
    }

    // One row per request that ran, none for the rejected ones.
    assert_eq!(key_rows(&app.db).await, 4);
    assert_eq!(app.count_customers().await, 4);
}

/// PATCHes refused for their result or their content type store nothing and write nothing;
/// the corrected PATCH with the same key runs.
#[tokio::test]
async fn rejected_patches_store_nothing_and_the_key_stays_free() {
    let app = spawn_app().await;
    let id = app
        .create_id(json!({"policy": {"limits": {"perDay": 500}}}))
        .await;

    // 400 on a PATCH whose result is invalid, then corrected.
    let version = app.stored_version(&id).await;
    let refused = patch_keyed(
        &app,
        &id,
        "fix-patch",
        r#"{"policy":{"limits":{"perAuth":900}}}"#,
    )
    .await;
    assert_refused_unstored(&app, "fix-patch", refused, 400, "parameter_invalid").await;
    assert_eq!(app.stored_version(&id).await, version);
    let reply = patch_keyed(
        &app,
        &id,
        "fix-patch",
        r#"{"policy":{"limits":{"perAuth":100}}}"#,
    )
    .await;
    assert_ran(&reply, 200, "fix-patch");
    assert_eq!(app.stored_version(&id).await, version + 1);

    // 415: a PATCH with the wrong content type, then with the right one.
    let version = app.stored_version(&id).await;
    let refused = send(
        keyed(
            &app,
            Method::PATCH,
            &format!("/v1/customers/{id}"),
            "fix-415",
        )
        .header("content-type", "text/plain")
        .body(r#"{"metadata":{"m":"1"}}"#),
    )
    .await;
    assert_refused_unstored(&app, "fix-415", refused, 415, "unsupported_media_type").await;
    assert_eq!(app.stored_version(&id).await, version);
    let reply = patch_keyed(&app, &id, "fix-415", r#"{"metadata":{"m":"1"}}"#).await;
    assert_ran(&reply, 200, "fix-415");
    assert_eq!(app.stored_version(&id).await, version + 1);

    // One row per request that ran, none for the rejected ones.
    assert_eq!(key_rows(&app.db).await, 2);
}

/// A write refused for its token (401, 403) stores nothing; with a good token the key runs.
#[tokio::test]
async fn unauthorized_and_forbidden_writes_store_nothing_and_the_key_stays_free() {
    let app = spawn_app().await;
    let body = r#"{"email":"auth@example.com"}"#;
    let post = |token: &str| {
        app.request_as(Method::POST, "/v1/customers", token)
            .header("idempotency-key", "fix-auth")
            .header("content-type", "application/json")
            .body(body)
    };
    // 401: no valid token.
    let refused = send(post("not-a-token")).await;
    assert_refused_unstored(&app, "fix-auth", refused, 401, "unauthorized").await;
    // 403: a read-only token.
    let refused = send(post(&token(ORG, "test", READ))).await;
    assert_refused_unstored(&app, "fix-auth", refused, 403, "insufficient_scope").await;
    assert_ran(&create_keyed(&app, "fix-auth", body).await, 201, "fix-auth");

    assert_eq!(key_rows(&app.db).await, 1);
    assert_eq!(app.count_customers().await, 1);
}

#[tokio::test]
async fn business_outcomes_404_409_412_are_stored_and_replayed() {
    let app = spawn_app().await;

    // 404: PATCH of a customer that does not exist.
    let patch = r#"{"metadata":{"a":"1"}}"#;
    let missing = patch_keyed(&app, MISSING_ID, "outcome-404", patch).await;
    missing.error(404, "not_found");
    assert_eq!(
        stored_key_status(&app.db, ORG, "outcome-404").await,
        Some(Some(404))
    );
    let replay = patch_keyed(&app, MISSING_ID, "outcome-404", patch).await;
    assert_replay_of(&missing, &replay);
    replay.error(404, "not_found");

    // 409: activate of a deleted customer.
    let id = app.create_id(json!({})).await;
    assert_eq!(app.delete(&id, None).await.status(), 200);
    let version = app.stored_version(&id).await;
    let conflict = keyed_action(&app, "activate", &id, "outcome-409").await;
    conflict.error(409, "customer_deleted");
    assert!(conflict.header("retry-after").is_none());
    assert_eq!(
        stored_key_status(&app.db, ORG, "outcome-409").await,
        Some(Some(409))
    );
    let replay = keyed_action(&app, "activate", &id, "outcome-409").await;
    assert_replay_of(&conflict, &replay);
    assert_eq!(app.stored_version(&id).await, version);
    assert_eq!(app.get_json(&id).await["status"], "deleted");

    // 412: a stale If-Match.
    let live = app.create_id(json!({})).await;
    let bumped = app.patch(&live, json!({"metadata": {"v": "2"}})).await;
    assert_eq!(bumped.status(), 200);
    let stale =
        send(keyed_json_patch(&app, &live, "outcome-412", patch).header("if-match", "\"1\"")).await;
    stale.error(412, "precondition_failed");
    assert_eq!(
        stored_key_status(&app.db, ORG, "outcome-412").await,
        Some(Some(412))
    );
    assert_eq!(app.stored_version(&live).await, 2);
    let replay =
        send(keyed_json_patch(&app, &live, "outcome-412", patch).header("if-match", "\"1\"")).await;
    assert_replay_of(&stale, &replay);
    assert_eq!(app.stored_version(&live).await, 2, "nothing was written");
    assert_eq!(app.get_json(&live).await["metadata"], json!({"v": "2"}));
}
