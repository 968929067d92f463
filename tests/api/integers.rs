//! Integer fields in any notation: `80000`, `80000.0` and `8e4` are all 80000, stored and
//! returned as `80000`, and for idempotency two bodies that differ only so are the same request.
//! A number with a real fraction is still refused, however close to an integer it is.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

/// Every integer field with a valid value, written three ways besides the plain one.
const FIELDS: &[(&str, i64, [&str; 3])] = &[
    ("autoApproveBelow", 500, ["500.0", "5e2", "5000e-1"]),
    ("attestationWindowMinutes", 30, ["30.0", "3e1", "3.0E+1"]),
    ("cooldownMinutes", 0, ["-0", "0.0", "0e3"]),
    ("ttlMinutes", 120, ["120.00", "1.2e2", "12E1"]),
    ("ttlDays", 30, ["30.0", "3e1", "300e-1"]),
    ("limits.perAuth", 1000, ["1000.0", "1e3", "1E+3"]),
    ("limits.perDay", 80000, ["80000.0", "8e4", "8.0e4"]),
    (
        "limits.perMonth",
        1_000_000_000_000,
        ["1000000000000.0", "1e12", "0.1e13"],
    ),
];

/// `{"policy": {...field: raw}}`, spelled by hand so the number keeps its notation.
fn policy_body(field: &str, raw: &str) -> String {
    match field.split_once('.') {
        Some((outer, inner)) => format!(r#"{{"policy":{{"{outer}":{{"{inner}":{raw}}}}}}}"#),
        None => format!(r#"{{"policy":{{"{field}":{raw}}}}}"#),
    }
}

fn policy_value<'a>(customer: &'a Value, field: &str) -> &'a Value {
    field
        .split('.')
        .fold(&customer["policy"], |node, segment| &node[segment])
}

#[tokio::test]
async fn integers_in_any_notation_are_stored_and_returned_as_integers() {
    let app = spawn_app().await;
    for (field, expected, spellings) in FIELDS {
        for raw in spellings {
            let response = app.post_raw(policy_body(field, raw)).await;
            assert_eq!(response.status(), 201, "{field} = {raw}");
            let text = response.text().await.unwrap();
            let customer: Value = serde_json::from_str(&text).unwrap();
            let value = policy_value(&customer, field);
            assert_eq!(value.as_i64(), Some(*expected), "{field} = {raw}: {text}");
            assert!(
                value.is_i64() || value.is_u64(),
                "an integer in JSON: {text}"
            );
            let id = customer["id"].as_str().unwrap();
            let stored: Value = sqlx::query_scalar("SELECT policy FROM customers WHERE id = $1")
                .bind(id)
                .fetch_one(&app.db)
                .await
                .unwrap();
            let stored = policy_value(&json!({ "policy": stored }), field).clone();
            assert_eq!(
                stored,
                json!(expected),
                "{field} = {raw} is stored as the integer"
            );
        }
    }
}

#[tokio::test]
async fn a_patch_with_float_typed_limits_sets_integers() {
    let app = spawn_app().await;
    let id = app
        .create_ok(json!({"policy": {"limits": {"perDay": 50000, "perMonth": 500000}}}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // What a client generated from Proxy's file sends: every number as a float.
    let response = app
        .request(Method::PATCH, &format!("/v1/customers/{id}"))
        .header("content-type", "application/json")
        .body(r#"{"policy":{"limits":{"perDay":80000.0,"perAuth":1.0e3}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#""limits":{"perDay":80000,"perAuth":1000,"perMonth":500000}"#),
        "{text}"
    );
    // Written again as plain integers, it is a no-op: same version.
    let again = app
        .patch(
            &id,
            json!({"policy": {"limits": {"perDay": 80000, "perAuth": 1000}}}),
        )
        .await;
    assert_eq!(again.headers()["etag"], "\"2\"");
    assert_eq!(app.stored_version(&id).await, 2);
}

#[tokio::test]
async fn a_retry_that_differs_only_in_notation_is_the_same_request() {
    let app = spawn_app().await;
    let send = |raw: &'static str| {
        app.request(Method::POST, "/v1/customers")
            .header("content-type", "application/json")
            .header("idempotency-key", "notation-1")
            .body(raw)
            .send()
    };
    let first = send(r#"{"policy":{"limits":{"perDay":80000}}}"#)
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let first_body = first.bytes().await.unwrap();
    for retry in [
        r#"{"policy":{"limits":{"perDay":80000.0}}}"#,
        r#"{"policy":{"limits":{"perDay":8e4}}}"#,
    ] {
        let replay = send(retry).await.unwrap();
        assert_eq!(replay.status(), 201, "{retry}");
        assert_eq!(replay.headers()["idempotent-replayed"], "true");
        assert_eq!(replay.bytes().await.unwrap(), first_body, "byte for byte");
    }
    assert_eq!(app.count_customers().await, 1);
    // A real difference in value is another request.
    let other = send(r#"{"policy":{"limits":{"perDay":80001}}}"#)
        .await
        .unwrap();
    error_body(other, 422, "idempotency_key_reused").await;
}

#[tokio::test]
async fn numbers_with_a_fraction_are_refused_however_close_to_an_integer() {
    let app = spawn_app().await;
    for (raw, code) in [
        ("12.5", "invalid_type"),
        ("1e-400", "invalid_type"),
        ("80000.000000000000000001", "invalid_type"),
        ("0.000000000000000000001", "invalid_type"),
        ("1e13", "out_of_range"),
        ("1e300", "out_of_range"),
        ("-1.0", "out_of_range"),
    ] {
        let response = app.post_raw(policy_body("limits.perDay", raw)).await;
        let error = error_body(response, 400, "parameter_invalid").await;
        assert_eq!(error["param"], "policy.limits.perDay", "{raw}");
        assert_eq!(
            error["details"]["errors"][0]["code"], code,
            "{raw}: {error}"
        );
    }
    assert_eq!(app.count_customers().await, 0);
}
