//! What a PATCH may be sent as (both JSON content types, nothing else), and the validation of
//! the merged result rather than of the patch alone.

use serde_json::{json, Value};

use super::*;

#[tokio::test]
async fn both_json_content_types_are_accepted() {
    let app = spawn_app().await;
    let id = app.create_id(json!({"email": "alice@example.com"})).await;
    for (i, content_type) in [
        "application/json",
        "application/merge-patch+json",
        "application/json; charset=utf-8",
        "application/merge-patch+json; charset=UTF-8",
    ]
    .into_iter()
    .enumerate()
    {
        let email = format!("user{i}@example.com");
        let response = send_patch(
            &app,
            &id,
            &json!({ "email": email }).to_string(),
            Some(content_type),
            None,
        )
        .await;
        assert_eq!(response.status(), 200, "{content_type}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["email"], email.as_str());
        assert_eq!(stored(&app, &id).await.0.as_deref(), Some(email.as_str()));
    }
    assert_eq!(app.stored_version(&id).await, 5);
}

#[tokio::test]
async fn other_content_types_are_415() {
    let app = spawn_app().await;
    let id = app.create_id(json!({"email": "alice@example.com"})).await;
    let before = app.snapshot(&id).await;
    let body = json!({"email": "bob@example.com"}).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json-patch+json"),
        Some("application/xml"),
        None,
    ] {
        let response = send_patch(&app, &id, &body, content_type, None).await;
        error_body(response, 415, "unsupported_media_type").await;
    }
    assert_eq!(app.snapshot(&id).await, before, "nothing changed");
}

#[tokio::test]
async fn a_patch_valid_alone_but_invalid_merged_is_rejected() {
    let app = spawn_app().await;
    let id = app.create_id(json!({"policy": {"requireIntent": true, "limits": {"perDay": 50000, "perMonth": 500000}}}),
    )
    .await;
    let before = app.snapshot(&id).await;

    // perAuth alone is fine; above the stored perDay it is not.
    let response = app
        .patch(&id, json!({"policy": {"limits": {"perAuth": 90000}}}))
        .await;
    let error = error_body(response, 400, "parameter_invalid").await;
    assert_eq!(error["param"], "policy.limits.perAuth");
    assert_eq!(
        error_params(&error),
        vec!["policy.limits.perAuth".to_owned()]
    );
    assert_eq!(app.snapshot(&id).await, before, "nothing changed");

    // The same for perMonth below the stored perDay.
    let response = app
        .patch(&id, json!({"policy": {"limits": {"perMonth": 100}}}))
        .await;
    let error = error_body(response, 400, "parameter_invalid").await;
    let param = error["param"].as_str().unwrap();
    assert!(
        param == "policy.limits.perDay" || param == "policy.limits.perMonth",
        "{error}"
    );
    assert_eq!(app.snapshot(&id).await, before, "nothing changed");

    // Raising perDay in the same patch makes it valid.
    let after = patch_ok(
        &app,
        &id,
        json!({"policy": {"limits": {"perAuth": 90000, "perDay": 100000}}}),
    )
    .await;
    assert_eq!(
        after["policy"]["limits"],
        json!({"perAuth": 90000, "perDay": 100000, "perMonth": 500000})
    );
    assert_eq!(app.stored_version(&id).await, 2);
}
