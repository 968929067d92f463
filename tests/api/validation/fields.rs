//! The shape of a body's fields: unknown fields at every depth, read-only fields, and `type`,
//! which may be set on create only.

use serde_json::{json, Value};

use super::*;

#[tokio::test]
async fn an_unknown_top_level_field_is_rejected() {
    let app = spawn_app().await;
    for (body, param) in [
        (json!({"emial": "alice@example.com"}), "emial"),
        (json!({"Email": "alice@example.com"}), "Email"),
        (json!({"description": "x"}), "description"),
        (json!({"limits": {"perDay": 100}}), "limits"),
    ] {
        unknown_at(&app, body, param).await;
    }
    let ok = accepted(&app, json!({"email": "alice@example.com"})).await;
    assert_eq!(ok["email"], "alice@example.com");
}

#[tokio::test]
async fn an_unknown_field_in_name_is_rejected() {
    let app = spawn_app().await;
    for (body, param) in [
        (json!({"name": {"middle": "Q"}}), "name.middle"),
        (
            json!({"name": {"first": "Alice", "frist": "A"}}),
            "name.frist",
        ),
    ] {
        unknown_at(&app, body, param).await;
    }
    let ok = accepted(&app, json!({"name": {"first": "Alice", "last": "Smith"}})).await;
    assert_eq!(ok["name"], json!({"first": "Alice", "last": "Smith"}));
}

#[tokio::test]
async fn an_unknown_field_in_policy_is_rejected() {
    let app = spawn_app().await;
    for (body, param) in [
        (
            json!({"policy": {"requireIntnet": true}}),
            "policy.requireIntnet",
        ),
        (json!({"policy": {"perDay": 500}}), "policy.perDay"),
        (
            json!({"policy": {"requireIntent": true, "maxAmount": 100}}),
            "policy.maxAmount",
        ),
    ] {
        unknown_at(&app, body, param).await;
    }
    let ok = accepted(&app, json!({"policy": {"requireIntent": true}})).await;
    assert_eq!(ok["policy"], json!({"requireIntent": true}));
}

#[tokio::test]
async fn an_unknown_field_in_policy_limits_is_rejected() {
    let app = spawn_app().await;
    for (body, param) in [
        (
            json!({"policy": {"limits": {"perDya": 100}}}),
            "policy.limits.perDya",
        ),
        (
            json!({"policy": {"limits": {"perDay": 100, "perWeek": 500}}}),
            "policy.limits.perWeek",
        ),
    ] {
        unknown_at(&app, body, param).await;
    }
    let ok = accepted(&app, json!({"policy": {"limits": {"perDay": 100}}})).await;
    assert_eq!(ok["policy"], json!({"limits": {"perDay": 100}}));

    // And on PATCH: a typo in a spending limit is never silently ignored.
    let id = ok["id"].as_str().unwrap();
    let error = patch_rejected(
        &app,
        id,
        json!({"policy": {"limits": {"perDya": 5}}}),
        "parameter_unknown",
    )
    .await;
    assert_eq!(error["param"], "policy.limits.perDya");
}

#[tokio::test]
async fn unknown_fields_at_every_depth_are_all_listed() {
    let app = spawn_app().await;
    let error = create_rejected(
        &app,
        json!({
            "emial": "alice@example.com",
            "name": {"middle": "Q"},
            "policy": {"requireIntnet": true, "limits": {"perDya": 100}}
        }),
        "parameter_unknown",
    )
    .await;
    assert_lists_all(
        &error,
        &[
            "emial",
            "name.middle",
            "policy.requireIntnet",
            "policy.limits.perDya",
        ],
    );
    assert_eq!(error_params(&error).len(), 4, "{error}");

    // Unknown and invalid fields together: every one is listed.
    let response = app
        .create(json!({
            "emial": "x",
            "phone": "123",
            "policy": {"limits": {"perDya": 1, "perDay": -5}}
        }))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    assert!(
        ["parameter_unknown", "parameter_invalid"].contains(&error["code"].as_str().unwrap()),
        "{error}"
    );
    assert_lists_all(
        error,
        &[
            "emial",
            "phone",
            "policy.limits.perDya",
            "policy.limits.perDay",
        ],
    );
    assert_eq!(app.count_customers().await, 0);
}

#[tokio::test]
async fn read_only_fields_are_rejected_on_create() {
    let app = spawn_app().await;
    for (field, value) in [
        ("id", json!("cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E")),
        ("status", json!("active")),
        ("createdAt", json!("2026-11-27T10:30:00.000Z")),
        ("updatedAt", json!("2026-11-27T10:30:00.000Z")),
    ] {
        let error = create_rejected(
            &app,
            json!({ field: value, "email": "alice@example.com" }),
            "parameter_not_updatable",
        )
        .await;
        assert_eq!(error["param"], field);
        assert_eq!(error_params(&error), vec![field.to_owned()]);
    }
    // All at once: all listed.
    let error = create_rejected(
        &app,
        json!({
            "id": "cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E",
            "status": "active",
            "createdAt": "2026-11-27T10:30:00.000Z",
            "updatedAt": "2026-11-27T10:30:00.000Z"
        }),
        "parameter_not_updatable",
    )
    .await;
    assert_lists_all(&error, &["id", "status", "createdAt", "updatedAt"]);

    // `type` may be set on create.
    let ok = accepted(&app, json!({"type": "corporate"})).await;
    assert_eq!(ok["type"], "corporate");
    assert_eq!(ok["status"], "pending");
}

#[tokio::test]
async fn read_only_fields_and_type_are_rejected_on_patch() {
    let app = spawn_app().await;
    let id = app.create_id(json!({"email": "alice@example.com"})).await;
    for (field, value) in [
        ("id", json!(id.clone())),
        ("status", json!("active")),
        ("createdAt", json!("2026-11-27T10:30:00.000Z")),
        ("updatedAt", json!("2026-11-27T10:30:00.000Z")),
        ("type", json!("corporate")),
        // Even the value it already has.
        ("type", json!("consumer")),
        ("status", json!("pending")),
    ] {
        let error = patch_rejected(
            &app,
            &id,
            json!({ field: value, "email": "bob@example.com" }),
            "parameter_not_updatable",
        )
        .await;
        assert_eq!(error["param"], field);
        assert_eq!(error_params(&error), vec![field.to_owned()]);
    }
    let error = patch_rejected(
        &app,
        &id,
        json!({
            "id": id,
            "type": "corporate",
            "status": "active",
            "createdAt": "2026-11-27T10:30:00.000Z",
            "updatedAt": "2026-11-27T10:30:00.000Z"
        }),
        "parameter_not_updatable",
    )
    .await;
    assert_lists_all(&error, &["id", "type", "status", "createdAt", "updatedAt"]);

    let stored = app.get_json(&id).await;
    assert_eq!(stored["type"], "consumer");
    assert_eq!(stored["status"], "pending");
    assert_eq!(stored["email"], "alice@example.com");
    assert_eq!(app.stored_version(&id).await, 1);

    // The writable fields are accepted.
    let response = app.patch(&id, json!({"email": "bob@example.com"})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.stored_version(&id).await, 2);
}

#[tokio::test]
async fn type_must_be_consumer_or_corporate() {
    let app = spawn_app().await;
    for value in [
        json!("business"),
        json!("Consumer"),
        json!("CORPORATE"),
        json!(""),
        json!(5),
        json!(true),
        json!(["consumer"]),
    ] {
        invalid_at(&app, json!({ "type": value }), "type").await;
    }
    assert_eq!(
        accepted(&app, json!({"type": "consumer"})).await["type"],
        "consumer"
    );
    assert_eq!(
        accepted(&app, json!({"type": "corporate"})).await["type"],
        "corporate"
    );
    assert_eq!(accepted(&app, json!({})).await["type"], "consumer");
    let kinds: Vec<String> = sqlx::query_scalar("SELECT type FROM customers ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(kinds, vec!["consumer", "corporate", "consumer"]);
}

#[tokio::test]
async fn an_invalid_type_is_listed_with_the_other_violations() {
    let app = spawn_app().await;
    let error = create_rejected(
        &app,
        json!({"type": "business", "email": "not-an-email", "policy": {"ttlDays": 0}}),
        "parameter_invalid",
    )
    .await;
    assert_lists_all(&error, &["type", "email", "policy.ttlDays"]);
}
