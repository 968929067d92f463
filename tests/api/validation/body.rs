//! The body as a whole: it must be an object, every violation is listed at once, its size is
//! limited (announced or chunked), and a NUL character anywhere is a 400, never a 500.

use serde_json::json;

use super::*;
use crate::support::raw::post_chunked;

#[tokio::test]
async fn a_body_that_is_not_an_object_is_invalid_request() {
    let app = spawn_app().await;
    for raw in ["[]", "[{}]", "\"customer\"", "42", "true", "null"] {
        let response = app.post_raw(raw).await;
        error_body(response, 400, "invalid_request").await;
    }
    assert_eq!(app.count_customers().await, 0, "nothing is written");

    // The same on PATCH.
    let id = app.create_id(json!({"email": "alice@example.com"})).await;
    let before = app.snapshot(&id).await;
    for raw in ["[]", "[{\"email\": null}]", "\"x\"", "1", "null"] {
        let response = app.patch_raw(&id, raw).await;
        error_body(response, 400, "invalid_request").await;
    }
    assert_eq!(app.snapshot(&id).await, before);

    // An object is accepted.
    let response = app.post_raw("{}").await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.count_customers().await, 2);
}

#[tokio::test]
async fn every_violation_is_listed_at_once() {
    let app = spawn_app().await;
    let error = create_rejected(
        &app,
        json!({
            "email": "not-an-email",
            "phone": "123",
            "name": {"first": "   ", "last": "x".repeat(101)},
            "policy": {
                "requireIntent": "yes",
                "autoApproveBelow": -1,
                "attestationWindowMinutes": 0,
                "cooldownMinutes": 525_601,
                "ttlMinutes": 0,
                "ttlDays": 3_651,
                "limits": {"perAuth": 12.5, "perMonth": 1_000_000_000_001i64},
                "allowedMccs": ["12a4"],
                "allowedMerchants": ["ok", ""]
            },
            "metadata": {"a[b]": 1, "long": "x".repeat(600)}
        }),
        "parameter_invalid",
    )
    .await;
    let expected = [
        "email",
        "phone",
        "name.first",
        "name.last",
        "policy.requireIntent",
        "policy.autoApproveBelow",
        "policy.attestationWindowMinutes",
        "policy.cooldownMinutes",
        "policy.ttlMinutes",
        "policy.ttlDays",
        "policy.limits.perAuth",
        "policy.limits.perMonth",
        "policy.allowedMccs",
        "policy.allowedMerchants",
        "metadata.a[b]",
        "metadata.long",
    ];
    assert_lists_all(&error, &expected);
    assert!(error_params(&error).len() >= expected.len(), "{error}");

    // The same for a PATCH, where the merged result is what is checked.
    let id = app
        .create_id(json!({"policy": {"limits": {"perDay": 50_000}}}))
        .await;
    let error = patch_rejected(
        &app,
        &id,
        json!({
            "email": "bad",
            "phone": "+0123",
            "policy": {"ttlDays": 0, "limits": {"perAuth": 90_000}},
            "metadata": {"x": "y".repeat(600)}
        }),
        "parameter_invalid",
    )
    .await;
    assert_lists_all(
        &error,
        &[
            "email",
            "phone",
            "policy.ttlDays",
            "policy.limits.perAuth",
            "metadata.x",
        ],
    );
}

/// A valid create body of exactly `len` bytes (padded with JSON whitespace).
fn padded_body(len: usize) -> String {
    let head = r#"{"email":"alice@example.com""#;
    let pad = len - head.len() - 1;
    format!("{head}{}}}", " ".repeat(pad))
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let app = spawn_app().await;
    // Exactly 64 KiB is allowed.
    let body = padded_body(64 * 1024);
    assert_eq!(body.len(), 65_536);
    let response = app.post_raw(body).await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.count_customers().await, 1);

    // One byte more is not.
    let body = padded_body(64 * 1024 + 1);
    let response = app.post_raw(body).await;
    error_body(response, 413, "payload_too_large").await;
    // Nor is a large body of real content.
    let response = app
        .create(json!({"metadata": {"big": "x".repeat(100_000)}}))
        .await;
    error_body(response, 413, "payload_too_large").await;
    assert_eq!(app.count_customers().await, 1, "nothing is written");

    // The same on PATCH.
    let id = app.create_id(json!({"email": "bob@example.com"})).await;
    let before = app.snapshot(&id).await;
    let response = app.patch_raw(&id, padded_body(70_000)).await;
    error_body(response, 413, "payload_too_large").await;
    assert_eq!(app.snapshot(&id).await, before);
}

#[tokio::test]
async fn a_chunked_body_over_64_kib_is_413() {
    let app = spawn_app().await;
    let answer = post_chunked(app.port, padded_body(80_000)).await;
    let (status, body) = (answer.status, answer.body);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    assert_eq!(app.count_customers().await, 0, "nothing is written");

    // A chunked body within the limit is read whole and accepted.
    let answer = post_chunked(app.port, padded_body(60_000)).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(app.count_customers().await, 1);
}

#[tokio::test]
async fn a_nul_character_in_a_string_is_400_not_500() {
    let app = spawn_app().await;
    for (body, param) in [
        (json!({"email": "alice\u{0}@example.com"}), "email"),
        (json!({"phone": "+1415555\u{0}1234"}), "phone"),
        (json!({"name": {"first": "Al\u{0}ice"}}), "name.first"),
        (json!({"name": {"last": "\u{0}"}}), "name.last"),
        (json!({"type": "consumer\u{0}"}), "type"),
        (
            json!({"policy": {"allowedMerchants": ["Ama\u{0}zon"]}}),
            "policy.allowedMerchants",
        ),
        (
            json!({"policy": {"allowedMccs": ["541\u{0}"]}}),
            "policy.allowedMccs",
        ),
        (json!({"metadata": {"note": "a\u{0}b"}}), "metadata.note"),
        (
            json!({"metadata": {"note": {"deep": ["\u{0}"]}}}),
            "metadata.note",
        ),
        (
            json!({"metadata": {"no\u{0}te": "x"}}),
            "metadata.no\u{0}te",
        ),
    ] {
        // Sent as the JSON escape \u0000.
        let raw = body.to_string();
        assert!(raw.contains("\\u0000"), "{raw}");
        let error = invalid_at(&app, body, param).await;
        assert_eq!(error["type"], "invalid_request_error");
    }

    // PATCH too.
    let id = app.create_id(json!({"email": "alice@example.com"})).await;
    for body in [
        json!({"email": "bob\u{0}@example.com"}),
        json!({"name": {"first": "\u{0}"}}),
        json!({"metadata": {"plan": "pro\u{0}"}}),
    ] {
        patch_rejected(&app, &id, body, "parameter_invalid").await;
    }
    // The service is still fine.
    assert_eq!(app.get_json(&id).await["email"], "alice@example.com");
}
