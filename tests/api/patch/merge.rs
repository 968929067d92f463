//! The merge rules: absent members are kept, `null` removes, objects merge recursively, arrays
//! and scalars replace.

use serde_json::{json, Value};

use super::*;

/// A fresh app with [`alice`] patched by `patch` (which must succeed); returns the app, her id
/// and the answer.
async fn patched_alice(patch: Value) -> (TestApp, String, Value) {
    let app = spawn_app().await;
    let id = app.create_id(alice()).await;
    let after = patch_ok(&app, &id, patch).await;
    (app, id, after)
}

/// The answer and the stored row both hold `expected` as the policy.
async fn assert_policy(app: &TestApp, id: &str, after: &Value, expected: Value) {
    assert_eq!(after["policy"], expected);
    assert_eq!(stored_policy(app, id).await, Some(expected));
}

#[tokio::test]
async fn absent_members_are_left_as_they_are() {
    let app = spawn_app().await;
    let created = app.create_ok(alice()).await;
    let id = created["id"].as_str().unwrap();
    let before = stored(&app, id).await;

    let after = patch_ok(&app, id, json!({"phone": "+447700900123"})).await;
    assert_eq!(after["phone"], "+447700900123");
    for field in [
        "email",
        "name",
        "policy",
        "metadata",
        "type",
        "status",
        "createdAt",
    ] {
        assert_eq!(after[field], created[field], "{field} is left as it was");
    }
    let now = stored(&app, id).await;
    assert_eq!(now.1.as_deref(), Some("+447700900123"));
    assert_eq!(
        (now.0, now.2, now.3, now.4, now.5),
        (before.0, before.2, before.3, before.4, before.5)
    );
    assert_eq!(app.stored_version(id).await, 2);
}

#[tokio::test]
async fn null_clears_email_and_phone() {
    let (app, id, after) = patched_alice(json!({"email": null})).await;
    assert_eq!(after["email"], Value::Null);
    assert_eq!(after["phone"], "+14155551234");
    let after = patch_ok(&app, &id, json!({"phone": null})).await;
    assert_eq!(after["phone"], Value::Null);
    let (email, phone, first, ..) = stored(&app, &id).await;
    assert_eq!((email, phone), (None, None));
    assert_eq!(first.as_deref(), Some("Alice"));
    assert_eq!(app.stored_version(&id).await, 3);
}

#[tokio::test]
async fn null_first_name_clears_only_the_first_name() {
    let (app, id, after) = patched_alice(json!({"name": {"first": null}})).await;
    assert_eq!(after["name"], json!({"first": null, "last": "Smith"}));
    let (_, _, first, last, ..) = stored(&app, &id).await;
    assert_eq!(first, None);
    assert_eq!(last.as_deref(), Some("Smith"));

    // Clearing the last one too leaves no name at all.
    let after = patch_ok(&app, &id, json!({"name": {"last": null}})).await;
    assert!(after.get("name").is_none(), "name is left out: {after}");
}

#[tokio::test]
async fn null_name_clears_both_parts() {
    let (app, id, after) = patched_alice(json!({"name": null})).await;
    assert!(after.get("name").is_none(), "name is left out: {after}");
    assert_eq!(after["email"], "alice@example.com");
    let (_, _, first, last, ..) = stored(&app, &id).await;
    assert_eq!((first, last), (None, None));
}

#[tokio::test]
async fn null_cooldown_minutes_removes_only_that_field() {
    let (app, id, after) = patched_alice(json!({"policy": {"cooldownMinutes": null}})).await;
    let expected = json!({
        "requireIntent": true,
        "ttlDays": 90,
        "limits": {"perAuth": 10_000, "perDay": 50_000, "perMonth": 500_000},
        "allowedMccs": ["5411", "5812"]
    });
    assert_policy(&app, &id, &after, expected).await;
}

#[tokio::test]
async fn null_limits_removes_every_limit() {
    let (app, id, after) = patched_alice(json!({"policy": {"limits": null}})).await;
    let expected = json!({
        "requireIntent": true,
        "cooldownMinutes": 30,
        "ttlDays": 90,
        "allowedMccs": ["5411", "5812"]
    });
    assert_policy(&app, &id, &after, expected).await;

    // Limits only: removing them leaves no policy, stored as NULL (sparse, never `{}`).
    let id = app
        .create_id(json!({"policy": {"limits": {"perDay": 100}}}))
        .await;
    let after = patch_ok(&app, &id, json!({"policy": {"limits": null}})).await;
    assert!(after.get("policy").is_none(), "policy is left out: {after}");
    assert_eq!(stored_policy(&app, &id).await, None);
}

#[tokio::test]
async fn null_policy_removes_the_whole_policy() {
    let (app, id, after) = patched_alice(json!({"policy": null})).await;
    assert!(after.get("policy").is_none(), "policy is left out: {after}");
    assert_eq!(after["metadata"]["plan"], "pro");
    assert_eq!(stored_policy(&app, &id).await, None);
    let is_null: bool = sqlx::query_scalar("SELECT policy IS NULL FROM customers WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(is_null, "SQL NULL, not the JSON null");
}

#[tokio::test]
async fn null_metadata_key_removes_only_that_key() {
    let (app, id, after) = patched_alice(json!({"metadata": {"plan": null}})).await;
    let expected = json!({"region": "eu", "tags": ["a", "b"]});
    assert_eq!(after["metadata"], expected);
    assert_eq!(stored_metadata(&app, &id).await, expected);
}

#[tokio::test]
async fn null_metadata_empties_it() {
    let (app, id, after) = patched_alice(json!({"metadata": null})).await;
    assert_eq!(
        after["metadata"],
        json!({}),
        "metadata is {{}} when empty, never null"
    );
    assert_eq!(stored_metadata(&app, &id).await, json!({}));
    assert_eq!(after["policy"]["requireIntent"], true);
}

#[tokio::test]
async fn objects_are_merged_recursively() {
    let (app, id, after) = patched_alice(json!({
        "name": {"first": "Alicia"},
        "policy": {"requireApproval": true, "limits": {"perAuth": 20_000}},
        "metadata": {"seats": 3}
    }))
    .await;
    assert_eq!(after["name"], json!({"first": "Alicia", "last": "Smith"}));
    let policy = json!({
        "requireIntent": true,
        "requireApproval": true,
        "cooldownMinutes": 30,
        "ttlDays": 90,
        "limits": {"perAuth": 20_000, "perDay": 50_000, "perMonth": 500_000},
        "allowedMccs": ["5411", "5812"]
    });
    assert_eq!(after["policy"], policy);
    let metadata = json!({"plan": "pro", "region": "eu", "tags": ["a", "b"], "seats": 3});
    assert_eq!(after["metadata"], metadata);
    let (email, phone, first, last, policy_now, metadata_now) = stored(&app, &id).await;
    assert_eq!(email.as_deref(), Some("alice@example.com"));
    assert_eq!(phone.as_deref(), Some("+14155551234"));
    assert_eq!(first.as_deref(), Some("Alicia"));
    assert_eq!(last.as_deref(), Some("Smith"));
    assert_eq!(policy_now, Some(policy));
    assert_eq!(metadata_now, metadata);

    // A policy object where there was none is created from the patch.
    let bare = app.create_id(json!({})).await;
    let after = patch_ok(&app, &bare, json!({"policy": {"limits": {"perDay": 7}}})).await;
    assert_eq!(after["policy"], json!({"limits": {"perDay": 7}}));
    assert_eq!(
        stored_policy(&app, &bare).await,
        Some(json!({"limits": {"perDay": 7}}))
    );
}

#[tokio::test]
async fn arrays_and_scalars_replace_the_old_value() {
    let (app, id, after) = patched_alice(json!({
        "email": "alicia@example.com",
        "policy": {"allowedMccs": ["5999"], "requireIntent": false},
        "metadata": {"tags": ["c"], "plan": {"tier": "gold"}}
    }))
    .await;
    assert_eq!(after["email"], "alicia@example.com");
    assert_eq!(after["policy"]["allowedMccs"], json!(["5999"]));
    assert_eq!(after["policy"]["requireIntent"], false);
    assert_eq!(after["metadata"]["tags"], json!(["c"]));
    assert_eq!(after["metadata"]["plan"], json!({"tier": "gold"}));
    let policy = stored_policy(&app, &id).await.unwrap();
    assert_eq!(policy["allowedMccs"], json!(["5999"]));
    let metadata = stored_metadata(&app, &id).await;
    assert_eq!(metadata["tags"], json!(["c"]));

    // An empty array replaces too (it does not mean "keep").
    let after = patch_ok(&app, &id, json!({"policy": {"allowedMccs": []}})).await;
    assert_eq!(after["policy"]["allowedMccs"], json!([]));
    assert_eq!(
        stored_policy(&app, &id).await.unwrap()["allowedMccs"],
        json!([])
    );
}

#[tokio::test]
async fn a_patch_of_one_limit_merges_into_the_stored_limits() {
    let app = spawn_app().await;
    let id = app.create_id(json!({"policy": {"requireIntent": true, "limits": {"perDay": 50000, "perMonth": 500000}}}),
    )
    .await;
    let after = patch_ok(&app, &id, json!({"policy": {"limits": {"perDay": 70000}}})).await;
    let expected = json!({"requireIntent": true, "limits": {"perDay": 70000, "perMonth": 500000}});
    assert_policy(&app, &id, &after, expected).await;
    assert_eq!(app.stored_version(&id).await, 2);
}
