//! Metadata: at most 50 keys of 1 to 40 characters without brackets, values of at most 500
//! bytes serialised; on PATCH the merged metadata counts.

use serde_json::{json, Value};

use super::*;

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
