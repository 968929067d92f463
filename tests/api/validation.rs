//! Contract §3: the validation of a create body and of the result of every patch.
//!
//! Every rejected case checks the status, the envelope code, the `param` (dotted path), the
//! `details.errors` list, and that nothing was written.

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The whole stored row of a customer, as one JSON value (to compare before and after).
async fn snapshot(app: &TestApp, id: &str) -> Value {
    sqlx::query_scalar("SELECT to_jsonb(c) FROM customers c WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .expect("the customer is stored")
}

async fn create_id(app: &TestApp, body: Value) -> String {
    app.create_ok(body).await["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

/// Every entry of `details.errors` is `{param, code, message}` with non-empty strings.
fn check_details(error: &Value) {
    let errors = error["details"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("details.errors is a list: {error}"));
    assert!(!errors.is_empty(), "details.errors is not empty: {error}");
    for e in errors {
        for field in ["param", "code", "message"] {
            assert!(
                e[field].as_str().is_some_and(|s| !s.is_empty()),
                "each entry of details.errors has a {field}: {error}"
            );
        }
    }
}

/// `param` is `path` or something under it (`policy.allowedMccs.3` is under `policy.allowedMccs`).
fn is_under(param: &str, path: &str) -> bool {
    param == path || param.starts_with(&format!("{path}."))
}

/// Every path of `expected` is named by some entry of `details.errors`.
fn assert_lists_all(error: &Value, expected: &[&str]) {
    let params = error_params(error);
    for path in expected {
        assert!(
            params.iter().any(|p| is_under(p, path)),
            "details.errors should name {path}; got {params:?} in {error}"
        );
    }
    let param = error["param"].as_str().unwrap_or_default();
    assert!(
        params.iter().any(|p| p == param),
        "the envelope's param ({param}) is one of details.errors: {params:?}"
    );
}

/// POSTs `body` as a create; expects 400 with `code` and that no customer was written.
async fn create_rejected(app: &TestApp, body: Value, code: &str) -> Value {
    let before = app.count_customers().await;
    let response = app.create(body.clone()).await;
    let status = response.status().as_u16();
    assert_eq!(status, 400, "create should be rejected: {body}");
    let error = error_body(response, 400, code).await;
    check_details(&error);
    assert_eq!(
        app.count_customers().await,
        before,
        "nothing is written for {body}"
    );
    error
}

/// A create rejected with `parameter_invalid` whose only violations are at `path` (or under
/// it, for an item of a list).
async fn invalid_at(app: &TestApp, body: Value, path: &str) -> Value {
    let error = create_rejected(app, body.clone(), "parameter_invalid").await;
    let param = error["param"].as_str().unwrap_or_default();
    assert!(
        is_under(param, path),
        "param should be {path} for {body}: {error}"
    );
    let params = error_params(&error);
    assert!(
        params.iter().all(|p| is_under(p, path)),
        "only {path} is reported for {body}: {error}"
    );
    error
}

/// A create that must be accepted; returns the customer.
async fn accepted(app: &TestApp, body: Value) -> Value {
    let before = app.count_customers().await;
    let response = app.create(body.clone()).await;
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    assert_eq!(status, 201, "create should be accepted: {body}: {text}");
    assert_eq!(app.count_customers().await, before + 1);
    serde_json::from_str(&text).expect("a JSON customer")
}

/// PATCHes `body`; expects 400 with `code` and the stored row unchanged.
async fn patch_rejected(app: &TestApp, id: &str, body: Value, code: &str) -> Value {
    let before = snapshot(app, id).await;
    let response = app.patch(id, body.clone()).await;
    assert_eq!(
        response.status().as_u16(),
        400,
        "patch should be rejected: {body}"
    );
    let error = error_body(response, 400, code).await;
    check_details(&error);
    assert_eq!(
        snapshot(app, id).await,
        before,
        "nothing changed for {body}"
    );
    error
}

async fn post_raw(app: &TestApp, body: impl Into<reqwest::Body>) -> Response {
    app.request(Method::POST, "/v1/customers")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request sent")
}

async fn patch_raw(app: &TestApp, id: &str, body: impl Into<reqwest::Body>) -> Response {
    app.request(Method::PATCH, &format!("/v1/customers/{id}"))
        .header("content-type", "application/merge-patch+json")
        .body(body)
        .send()
        .await
        .expect("request sent")
}

/// `{"policy": {...}}` with `value` at the path under `policy`.
fn policy_at(path: &[&str], value: Value) -> Value {
    let mut inner = value;
    for key in path.iter().rev() {
        inner = json!({ *key: inner });
    }
    json!({ "policy": inner })
}

// ---------------------------------------------------------------------------------------------
// body: a JSON object
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_body_that_is_not_an_object_is_invalid_request() {
    let app = spawn_app().await;
    for raw in ["[]", "[{}]", "\"customer\"", "42", "true", "null"] {
        let response = post_raw(&app, raw).await;
        error_body(response, 400, "invalid_request").await;
    }
    assert_eq!(app.count_customers().await, 0, "nothing is written");

    // The same on PATCH.
    let id = create_id(&app, json!({"email": "alice@example.com"})).await;
    let before = snapshot(&app, &id).await;
    for raw in ["[]", "[{\"email\": null}]", "\"x\"", "1", "null"] {
        let response = patch_raw(&app, &id, raw).await;
        error_body(response, 400, "invalid_request").await;
    }
    assert_eq!(snapshot(&app, &id).await, before);

    // An object is accepted.
    let response = post_raw(&app, "{}").await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.count_customers().await, 2);
}

// ---------------------------------------------------------------------------------------------
// unknown fields
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_top_level_field_is_rejected() {
    let app = spawn_app().await;
    for (body, param) in [
        (json!({"emial": "alice@example.com"}), "emial"),
        (json!({"Email": "alice@example.com"}), "Email"),
        (json!({"description": "x"}), "description"),
        (json!({"limits": {"perDay": 100}}), "limits"),
    ] {
        let error = create_rejected(&app, body, "parameter_unknown").await;
        assert_eq!(error["param"], param);
        assert_eq!(error_params(&error), vec![param.to_owned()]);
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
        let error = create_rejected(&app, body, "parameter_unknown").await;
        assert_eq!(error["param"], param);
        assert_eq!(error_params(&error), vec![param.to_owned()]);
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
        let error = create_rejected(&app, body, "parameter_unknown").await;
        assert_eq!(error["param"], param);
        assert_eq!(error_params(&error), vec![param.to_owned()]);
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
        let error = create_rejected(&app, body, "parameter_unknown").await;
        assert_eq!(error["param"], param);
        assert_eq!(error_params(&error), vec![param.to_owned()]);
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

// ---------------------------------------------------------------------------------------------
// read-only fields
// ---------------------------------------------------------------------------------------------

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
    let id = create_id(&app, json!({"email": "alice@example.com"})).await;
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

// ---------------------------------------------------------------------------------------------
// type
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// email
// ---------------------------------------------------------------------------------------------

/// A syntactically valid address of exactly `len` characters (len >= 197).
fn email_of_len(len: usize) -> String {
    // 64 + "@" + 63 + "." + 63 + "." + x + ".com"
    let x = len - 197;
    assert!((1..=63).contains(&x));
    format!(
        "{}@{}.{}.{}.com",
        "a".repeat(64),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(x)
    )
}

#[tokio::test]
async fn email_is_at_most_254_characters_valid_and_without_surrounding_spaces() {
    let app = spawn_app().await;
    let longest = email_of_len(254);
    assert_eq!(longest.len(), 254);
    for email in [
        "alice@example.com",
        "a.b+tag@sub.example.co.uk",
        "ALICE@EXAMPLE.COM",
        "user@[127.0.0.1]",
        longest.as_str(),
    ] {
        let ok = accepted(&app, json!({ "email": email })).await;
        assert_eq!(ok["email"], email);
        let stored: Option<String> =
            sqlx::query_scalar("SELECT email FROM customers WHERE id = $1")
                .bind(ok["id"].as_str().unwrap())
                .fetch_one(&app.db)
                .await
                .unwrap();
        assert_eq!(stored.as_deref(), Some(email));
    }

    let too_long = email_of_len(255);
    assert_eq!(too_long.len(), 255);
    for email in [
        json!(too_long),
        json!(""),
        json!("not-an-email"),
        json!("alice@"),
        json!("@example.com"),
        json!("alice@exa mple.com"),
        json!("alice@@example.com"),
        json!("alice@example..com"),
        json!(" alice@example.com"),
        json!("alice@example.com "),
        json!(" alice@example.com "),
        json!(5),
        json!(["alice@example.com"]),
    ] {
        invalid_at(&app, json!({ "email": email }), "email").await;
    }
}

#[tokio::test]
async fn email_rules_apply_to_patch() {
    let app = spawn_app().await;
    let id = create_id(&app, json!({"email": "alice@example.com"})).await;
    for email in [" bob@example.com", "bob", email_of_len(255).as_str()] {
        let error = patch_rejected(&app, &id, json!({ "email": email }), "parameter_invalid").await;
        assert_eq!(error["param"], "email");
    }
    let response = app.patch(&id, json!({"email": "bob@example.com"})).await;
    assert_eq!(response.status(), 200);
    let stored: Option<String> = sqlx::query_scalar("SELECT email FROM customers WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some("bob@example.com"));
}

// ---------------------------------------------------------------------------------------------
// phone
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn phone_is_e164() {
    let app = spawn_app().await;
    for phone in [
        "+14155551234",
        "+1234567",
        "+123456789012345",
        "+447700900123",
    ] {
        let ok = accepted(&app, json!({ "phone": phone })).await;
        assert_eq!(ok["phone"], phone);
    }
    for phone in [
        json!("14155551234"),
        json!("+"),
        json!(""),
        json!("+0415555123"),
        json!("+123456"),
        json!("+1234567890123456"),
        json!("+1415555123a"),
        json!("+1 4155551234"),
        json!("+1-415-555-1234"),
        json!(" +14155551234"),
        json!("+14155551234 "),
        json!("++14155551234"),
        json!("+١٤١٥٥٥٥١٢٣٤"),
        json!(14155551234u64),
    ] {
        invalid_at(&app, json!({ "phone": phone }), "phone").await;
    }
}

// ---------------------------------------------------------------------------------------------
// name
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn name_parts_are_1_to_100_characters_not_only_spaces() {
    let app = spawn_app().await;
    let hundred_ascii = "a".repeat(100);
    // 100 characters, 200 bytes: the limit is in characters.
    let hundred_accented = "é".repeat(100);
    for value in [
        "A",
        "Anne Marie",
        hundred_ascii.as_str(),
        hundred_accented.as_str(),
    ] {
        let ok = accepted(&app, json!({"name": {"first": value, "last": value}})).await;
        assert_eq!(ok["name"], json!({"first": value, "last": value}));
    }
    let ok = accepted(&app, json!({"name": {"first": "Alice"}})).await;
    assert_eq!(ok["name"], json!({"first": "Alice", "last": null}));

    for part in ["first", "last"] {
        for value in [
            json!(""),
            json!(" "),
            json!("    "),
            json!("a".repeat(101)),
            json!("é".repeat(101)),
            json!(5),
            json!(["Alice"]),
        ] {
            invalid_at(
                &app,
                json!({"name": { part: value }}),
                &format!("name.{part}"),
            )
            .await;
        }
    }
    // A name that is not an object.
    invalid_at(&app, json!({"name": "Alice Smith"}), "name").await;

    // And on PATCH, the merged name is checked.
    let id = create_id(&app, json!({"name": {"first": "Alice", "last": "Smith"}})).await;
    let error = patch_rejected(
        &app,
        &id,
        json!({"name": {"last": "   "}}),
        "parameter_invalid",
    )
    .await;
    assert_eq!(error["param"], "name.last");
}

// ---------------------------------------------------------------------------------------------
// policy booleans
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn policy_flags_are_booleans() {
    let app = spawn_app().await;
    let flags = [
        "requireIntent",
        "requireAttestation",
        "requireApproval",
        "lockToFirstMerchant",
    ];
    for flag in flags {
        for value in [true, false] {
            let ok = accepted(&app, policy_at(&[flag], json!(value))).await;
            assert_eq!(ok["policy"], json!({ flag: value }));
        }
        for value in [
            json!("true"),
            json!(1),
            json!(0),
            json!("yes"),
            json!([]),
            json!({}),
        ] {
            invalid_at(&app, policy_at(&[flag], value), &format!("policy.{flag}")).await;
        }
    }
    // All four at once.
    let ok = accepted(
        &app,
        json!({"policy": {"requireIntent": true, "requireAttestation": false,
                          "requireApproval": true, "lockToFirstMerchant": false}}),
    )
    .await;
    assert_eq!(ok["policy"]["lockToFirstMerchant"], false);
}

// ---------------------------------------------------------------------------------------------
// cents
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cents_are_integers_from_0_to_a_trillion() {
    let app = spawn_app().await;
    let fields: [&[&str]; 4] = [
        &["autoApproveBelow"],
        &["limits", "perAuth"],
        &["limits", "perDay"],
        &["limits", "perMonth"],
    ];
    for path in fields {
        let param = format!("policy.{}", path.join("."));
        for value in [0i64, 1, 12_345, 1_000_000_000_000] {
            let ok = accepted(&app, policy_at(path, json!(value))).await;
            let shown = path.iter().fold(&ok["policy"], |v, k| &v[*k]);
            assert_eq!(*shown, json!(value), "{param}");
        }
        for value in [
            json!(12.5),
            json!(0.5),
            json!(-1),
            json!(-1_000_000),
            json!(1_000_000_000_001i64),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1e20),
            json!("100"),
            json!(true),
            json!([100]),
        ] {
            invalid_at(&app, policy_at(path, value), &param).await;
        }
    }
}

#[tokio::test]
async fn limits_are_ordered_per_auth_per_day_per_month() {
    let app = spawn_app().await;
    for limits in [
        json!({"perAuth": 100, "perDay": 100, "perMonth": 100}),
        json!({"perAuth": 100, "perDay": 200, "perMonth": 300}),
        json!({"perAuth": 100, "perMonth": 300}),
        json!({"perAuth": 0, "perDay": 5}),
        json!({"perDay": 5, "perMonth": 5}),
        json!({"perAuth": 1_000_000_000_000i64, "perDay": 1_000_000_000_000i64,
               "perMonth": 1_000_000_000_000i64}),
    ] {
        let ok = accepted(&app, json!({"policy": {"limits": limits}})).await;
        assert_eq!(ok["policy"]["limits"], limits);
    }

    // The example of §6: perAuth above perDay names perAuth.
    let error = invalid_at(
        &app,
        json!({"policy": {"limits": {"perAuth": 90000, "perDay": 50000}}}),
        "policy.limits.perAuth",
    )
    .await;
    assert_eq!(error["param"], "policy.limits.perAuth");
    invalid_at(
        &app,
        json!({"policy": {"limits": {"perAuth": 300, "perMonth": 200}}}),
        "policy.limits.perAuth",
    )
    .await;
    invalid_at(
        &app,
        json!({"policy": {"limits": {"perAuth": 1, "perDay": 0}}}),
        "policy.limits.perAuth",
    )
    .await;
    // perDay above perMonth: the error names one of the two.
    for limits in [
        json!({"perDay": 300, "perMonth": 200}),
        json!({"perAuth": 100, "perDay": 300, "perMonth": 200}),
    ] {
        let error = create_rejected(
            &app,
            json!({"policy": {"limits": limits}}),
            "parameter_invalid",
        )
        .await;
        let params = error_params(&error);
        assert!(
            params
                .iter()
                .any(|p| p == "policy.limits.perDay" || p == "policy.limits.perMonth"),
            "{error}"
        );
        assert!(
            params.iter().all(|p| p.starts_with("policy.limits.")),
            "{error}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// integer ranges of the policy
// ---------------------------------------------------------------------------------------------

async fn check_range(field: &str, min: i64, max: i64) {
    let app = spawn_app().await;
    let param = format!("policy.{field}");
    for value in [min, min + 1, max - 1, max] {
        let ok = accepted(&app, policy_at(&[field], json!(value))).await;
        assert_eq!(ok["policy"], json!({ field: value }));
    }
    for value in [
        json!(min - 1),
        json!(max + 1),
        json!(-1_000),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1.5),
        json!(min as f64 + 0.5),
        json!("10"),
        json!(false),
    ] {
        invalid_at(&app, policy_at(&[field], value), &param).await;
    }
    // Validated on PATCH as well.
    let id = create_id(&app, policy_at(&[field], json!(max))).await;
    let error = patch_rejected(
        &app,
        &id,
        policy_at(&[field], json!(max + 1)),
        "parameter_invalid",
    )
    .await;
    assert_eq!(error["param"], param.as_str());
}

#[tokio::test]
async fn attestation_window_minutes_is_1_to_60() {
    check_range("attestationWindowMinutes", 1, 60).await;
}

#[tokio::test]
async fn cooldown_minutes_is_0_to_525600() {
    check_range("cooldownMinutes", 0, 525_600).await;
}

#[tokio::test]
async fn ttl_minutes_is_1_to_525600() {
    check_range("ttlMinutes", 1, 525_600).await;
}

#[tokio::test]
async fn ttl_days_is_1_to_3650() {
    check_range("ttlDays", 1, 3_650).await;
}

// ---------------------------------------------------------------------------------------------
// merchant category codes
// ---------------------------------------------------------------------------------------------

fn codes(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{i:04}")).collect()
}

#[tokio::test]
async fn mcc_lists_hold_at_most_1000_distinct_four_digit_codes() {
    let app = spawn_app().await;
    for field in ["allowedMccs", "blockedMccs"] {
        let param = format!("policy.{field}");
        for list in [
            json!([]),
            json!(["5411"]),
            json!(["0000", "9999", "5812"]),
            json!(codes(0..1000)),
        ] {
            let ok = accepted(&app, policy_at(&[field], list.clone())).await;
            assert_eq!(ok["policy"][field], list);
        }
        for list in [
            json!(codes(0..1001)),
            json!(["541"]),
            json!(["54111"]),
            json!(["54a1"]),
            json!([" 541"]),
            json!(["5411 "]),
            json!(["-541"]),
            json!(["５４１１"]),
            json!(["٥٤١١"]),
            json!(["5411", "5812", "5411"]),
            json!([5411]),
            json!([null]),
            json!("5411"),
            json!({"5411": true}),
        ] {
            invalid_at(&app, policy_at(&[field], list), &param).await;
        }
    }
}

#[tokio::test]
async fn no_mcc_is_both_allowed_and_blocked() {
    let app = spawn_app().await;
    let ok = accepted(
        &app,
        json!({"policy": {"allowedMccs": ["5411", "5812"], "blockedMccs": ["7995"]}}),
    )
    .await;
    assert_eq!(ok["policy"]["blockedMccs"], json!(["7995"]));
    let id = ok["id"].as_str().unwrap().to_owned();

    let error = create_rejected(
        &app,
        json!({"policy": {"allowedMccs": ["5411", "5812"], "blockedMccs": ["5812", "7995"]}}),
        "parameter_invalid",
    )
    .await;
    let params = error_params(&error);
    assert!(
        params
            .iter()
            .all(|p| is_under(p, "policy.allowedMccs") || is_under(p, "policy.blockedMccs")),
        "{error}"
    );
    assert!(!params.is_empty());

    // The merged result is checked: blocking a code that is stored as allowed.
    let error = patch_rejected(
        &app,
        &id,
        json!({"policy": {"blockedMccs": ["5411"]}}),
        "parameter_invalid",
    )
    .await;
    let param = error["param"].as_str().unwrap();
    assert!(
        is_under(param, "policy.allowedMccs") || is_under(param, "policy.blockedMccs"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// allowed merchants
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn allowed_merchants_are_at_most_100_names_of_1_to_200_characters_no_repeats() {
    let app = spawn_app().await;
    let hundred: Vec<String> = (0..100).map(|i| format!("Merchant {i}")).collect();
    let hundred_one: Vec<String> = (0..101).map(|i| format!("Merchant {i}")).collect();
    for list in [
        json!([]),
        json!(["Amazon", "eBay"]),
        json!(["a"]),
        json!(["x".repeat(200)]),
        json!(["é".repeat(200)]),
        json!(["Amazon", "Amazon UK"]),
        json!(hundred),
    ] {
        let ok = accepted(&app, json!({"policy": {"allowedMerchants": list}})).await;
        assert_eq!(ok["policy"]["allowedMerchants"], list);
    }
    for list in [
        json!(hundred_one),
        json!([""]),
        json!(["Amazon", ""]),
        json!(["x".repeat(201)]),
        json!(["é".repeat(201)]),
        json!(["Amazon", "eBay", "Amazon"]),
        json!(["Amazon", "amazon"]),
        json!(["EBAY", "eBay"]),
        json!(["Ärzte", "ärzte"]),
        json!([5]),
        json!("Amazon"),
    ] {
        invalid_at(
            &app,
            json!({"policy": {"allowedMerchants": list}}),
            "policy.allowedMerchants",
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// metadata
// ---------------------------------------------------------------------------------------------

fn metadata_with(keys: usize) -> Value {
    Value::Object(
        (0..keys)
            .map(|i| (format!("key{i}"), json!(format!("value {i}"))))
            .collect(),
    )
}

#[tokio::test]
async fn metadata_has_at_most_50_keys() {
    let app = spawn_app().await;
    let ok = accepted(&app, json!({"metadata": metadata_with(50)})).await;
    assert_eq!(ok["metadata"].as_object().unwrap().len(), 50);
    let id = ok["id"].as_str().unwrap().to_owned();

    invalid_at(&app, json!({"metadata": metadata_with(51)}), "metadata").await;

    // On PATCH the merged metadata counts: a 51st key is refused...
    let error = patch_rejected(
        &app,
        &id,
        json!({"metadata": {"extra": "x"}}),
        "parameter_invalid",
    )
    .await;
    assert_eq!(error["param"], "metadata");
    // ...but replacing one key by another is fine.
    let response = app
        .patch(&id, json!({"metadata": {"key0": null, "extra": "x"}}))
        .await;
    assert_eq!(response.status(), 200);
    let metadata: Value = sqlx::query_scalar("SELECT metadata FROM customers WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(metadata.as_object().unwrap().len(), 50);
    assert_eq!(metadata["extra"], "x");
    assert!(metadata.get("key0").is_none());
}

#[tokio::test]
async fn metadata_keys_are_1_to_40_characters_without_brackets() {
    let app = spawn_app().await;
    let forty = "k".repeat(40);
    let forty_accented = "é".repeat(40);
    for key in [
        "a",
        "plan",
        "user.id",
        "with space",
        forty.as_str(),
        forty_accented.as_str(),
    ] {
        let ok = accepted(&app, json!({"metadata": { key: "v" }})).await;
        assert_eq!(ok["metadata"], json!({ key: "v" }));
    }
    for key in [
        "k".repeat(41),
        "é".repeat(41),
        "a[b".to_owned(),
        "plan]".to_owned(),
        "[0]".to_owned(),
        "items[]".to_owned(),
    ] {
        invalid_at(
            &app,
            json!({"metadata": { key.clone(): "v" }}),
            &format!("metadata.{key}"),
        )
        .await;
    }
    // The empty key.
    let error = create_rejected(&app, json!({"metadata": {"": "v"}}), "parameter_invalid").await;
    assert!(
        error["param"].as_str().unwrap().starts_with("metadata"),
        "{error}"
    );
}

#[tokio::test]
async fn metadata_values_are_at_most_500_bytes_serialised() {
    let app = spawn_app().await;
    // "x" * 498 serialises to 500 bytes with its quotes; "é" is 2 bytes.
    for value in [
        json!("x".repeat(498)),
        json!("é".repeat(249)),
        json!(""),
        json!(42),
        json!(true),
        json!(nested_value()),
        json!([1, 2, 3]),
    ] {
        let ok = accepted(&app, json!({"metadata": {"plan": value}})).await;
        assert_eq!(ok["metadata"]["plan"], value);
    }
    for value in [
        json!("x".repeat(499)),
        json!("é".repeat(250)),
        json!(["x".repeat(300), "y".repeat(300)]),
        json!({"a": "x".repeat(600)}),
    ] {
        invalid_at(&app, json!({"metadata": {"plan": value}}), "metadata.plan").await;
    }
    // Not an object.
    for value in [json!("plan"), json!([1]), json!(3)] {
        invalid_at(&app, json!({ "metadata": value }), "metadata").await;
    }
}

fn nested_value() -> Value {
    json!({"tier": "gold", "seats": 3, "flags": ["a", "b"]})
}

// ---------------------------------------------------------------------------------------------
// every violation at once
// ---------------------------------------------------------------------------------------------

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
    let id = create_id(&app, json!({"policy": {"limits": {"perDay": 50_000}}})).await;
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

// ---------------------------------------------------------------------------------------------
// body size
// ---------------------------------------------------------------------------------------------

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
    let response = post_raw(&app, body).await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.count_customers().await, 1);

    // One byte more is not.
    let body = padded_body(64 * 1024 + 1);
    let response = post_raw(&app, body).await;
    error_body(response, 413, "payload_too_large").await;
    // Nor is a large body of real content.
    let response = app
        .create(json!({"metadata": {"big": "x".repeat(100_000)}}))
        .await;
    error_body(response, 413, "payload_too_large").await;
    assert_eq!(app.count_customers().await, 1, "nothing is written");

    // The same on PATCH.
    let id = create_id(&app, json!({"email": "bob@example.com"})).await;
    let before = snapshot(&app, &id).await;
    let response = patch_raw(&app, &id, padded_body(70_000)).await;
    error_body(response, 413, "payload_too_large").await;
    assert_eq!(snapshot(&app, &id).await, before);
}

/// Sends a create whose body is `total` bytes of valid JSON in chunks, with no Content-Length
/// (so the limit must be enforced while reading); returns the status code and the body.
fn post_chunked(port: u16, total: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let body = padded_body(total);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /v1/customers HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        token(ORG, "test", ADMIN)
    );
    stream.write_all(head.as_bytes()).expect("write the head");
    // The server may answer and stop reading before the whole body is sent.
    for chunk in body.as_bytes().chunks(4096) {
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        if stream.write_all(&framed).is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn a_chunked_body_over_64_kib_is_413() {
    let app = spawn_app().await;
    let port = app.port;
    let (status, body) = tokio::task::spawn_blocking(move || post_chunked(port, 80_000))
        .await
        .unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    assert_eq!(app.count_customers().await, 0, "nothing is written");

    // A chunked body within the limit is read whole and accepted.
    let (status, body) = tokio::task::spawn_blocking(move || post_chunked(port, 60_000))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(app.count_customers().await, 1);
}

// ---------------------------------------------------------------------------------------------
// NUL characters
// ---------------------------------------------------------------------------------------------

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
    let id = create_id(&app, json!({"email": "alice@example.com"})).await;
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
