//! Contract §4: PATCH as an RFC 7396 merge patch, validation of the merged result, no-ops,
//! concurrency, versions and preconditions, and deleted customers.

use std::time::Duration;

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

/// PATCHes `body`, expects 200, checks the answer is what a GET now returns and that the ETag
/// is the stored version; returns the customer.
async fn patch_ok(app: &TestApp, id: &str, body: Value) -> Value {
    let response = app.patch(id, body.clone()).await;
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "patch {body} failed: {text}");
    let customer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        customer,
        app.get_json(id).await,
        "the answer is what is stored"
    );
    assert_eq!(
        etag,
        Some(format!("\"{}\"", app.stored_version(id).await)),
        "the ETag is the stored version"
    );
    customer
}

/// The stored writable columns: (email, phone, first_name, last_name, policy, metadata).
type Stored = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Value>,
    Value,
);

async fn stored(app: &TestApp, id: &str) -> Stored {
    sqlx::query_as(
        "SELECT email, phone, first_name, last_name, policy, metadata FROM customers WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .expect("the customer is stored")
}

async fn stored_policy(app: &TestApp, id: &str) -> Option<Value> {
    stored(app, id).await.4
}

async fn stored_metadata(app: &TestApp, id: &str) -> Value {
    stored(app, id).await.5
}

async fn stored_status(app: &TestApp, id: &str) -> String {
    sqlx::query_scalar("SELECT status FROM customers WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

fn etag(response: &Response) -> String {
    response
        .headers()
        .get("etag")
        .expect("an ETag")
        .to_str()
        .unwrap()
        .to_owned()
}

/// A PATCH with an explicit content type (or none) and optional If-Match.
async fn send_patch(
    app: &TestApp,
    id: &str,
    body: &str,
    content_type: Option<&str>,
    if_match: Option<&str>,
) -> Response {
    let mut request = app
        .request(Method::PATCH, &format!("/v1/customers/{id}"))
        .body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(if_match) = if_match {
        request = request.header("if-match", if_match);
    }
    request.send().await.expect("request sent")
}

async fn delete(app: &TestApp, id: &str, if_match: Option<&str>) -> Response {
    let mut request = app.request(Method::DELETE, &format!("/v1/customers/{id}"));
    if let Some(if_match) = if_match {
        request = request.header("if-match", if_match);
    }
    request.send().await.expect("request sent")
}

async fn activate(app: &TestApp, id: &str, if_match: Option<&str>) -> Response {
    let mut request = app.request(Method::POST, &format!("/v1/customers/{id}/activate"));
    if let Some(if_match) = if_match {
        request = request.header("if-match", if_match);
    }
    request.send().await.expect("request sent")
}

fn full_customer() -> Value {
    json!({
        "email": "alice@example.com",
        "phone": "+14155551234",
        "name": {"first": "Alice", "last": "Smith"},
        "policy": {
            "requireIntent": true,
            "cooldownMinutes": 30,
            "ttlDays": 90,
            "limits": {"perAuth": 10_000, "perDay": 50_000, "perMonth": 500_000},
            "allowedMccs": ["5411", "5812"]
        },
        "metadata": {"plan": "pro", "region": "eu", "tags": ["a", "b"]}
    })
}

// ---------------------------------------------------------------------------------------------
// §4.1 the merge rules
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn absent_members_are_left_as_they_are() {
    let app = spawn_app().await;
    let created = app.create_ok(full_customer()).await;
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
    let app = spawn_app().await;
    let id = create_id(&app, full_customer()).await;
    let after = patch_ok(&app, &id, json!({"email": null})).await;
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
    let app = spawn_app().await;
    let id = create_id(&app, full_customer()).await;
    let after = patch_ok(&app, &id, json!({"name": {"first": null}})).await;
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
    let app = spawn_app().await;
    let id = create_id(&app, full_customer()).await;
    let after = patch_ok(&app, &id, json!({"name": null})).await;
    assert!(after.get("name").is_none(), "name is left out: {after}");
    assert_eq!(after["email"], "alice@example.com");
    let (_, _, first, last, ..) = stored(&app, &id).await;
    assert_eq!((first, last), (None, None));
}

#[tokio::test]
async fn null_cooldown_minutes_removes_only_that_field() {
    let app = spawn_app().await;
    let id = create_id(&app, full_customer()).await;
    let after = patch_ok(&app, &id, json!({"policy": {"cooldownMinutes": null}})).await;
    let expected = json!({
        "requireIntent": true,
        "ttlDays": 90,
        "limits": {"perAuth": 10_000, "perDay": 50_000, "perMonth": 500_000},
        "allowedMccs": ["5411", "5812"]
    });
    assert_eq!(after["policy"], expected);
    assert_eq!(stored_policy(&app, &id).await, Some(expected));
}

#[tokio::test]
async fn null_limits_removes_every_limit() {
    let app = spawn_app().await;
    let id = create_id(&app, full_customer()).await;
    let after = patch_ok(&app, &id, json!({"policy": {"limits": null}})).await;
    let expected = json!({
        "requireIntent": true,
        "cooldownMinutes": 30,
        "ttlDays": 90,
        "allowedMccs": ["5411", "5812"]
    });
    assert_eq!(after["policy"], expected);
    assert_eq!(stored_policy(&app, &id).await, Some(expected));

    // Limits only: removing them leaves no policy, stored as NULL (sparse, never `{}`).
    let id = create_id(&app, json!({"policy": {"limits": {"perDay": 100}}})).await;
    let after = patch_ok(&app, &id, json!({"policy": {"limits": null}})).await;
    assert!(after.get("policy").is_none(), "policy is left out: {after}");
    assert_eq!(stored_policy(&app, &id).await, None);
}

#[tokio::test]
async fn null_policy_removes_the_whole_policy() {
    let app = spawn_app().await;
    let id = create_id(&app, full_customer()).await;
    let after = patch_ok(&app, &id, json!({"policy": null})).await;
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
    let app = spawn_app().await;
    let id = create_id(&app, full_customer()).await;
    let after = patch_ok(&app, &id, json!({"metadata": {"plan": null}})).await;
    let expected = json!({"region": "eu", "tags": ["a", "b"]});
    assert_eq!(after["metadata"], expected);
    assert_eq!(stored_metadata(&app, &id).await, expected);
}

#[tokio::test]
async fn null_metadata_empties_it() {
    let app = spawn_app().await;
    let id = create_id(&app, full_customer()).await;
    let after = patch_ok(&app, &id, json!({"metadata": null})).await;
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
    let app = spawn_app().await;
    let id = create_id(&app, full_customer()).await;
    let after = patch_ok(
        &app,
        &id,
        json!({
            "name": {"first": "Alicia"},
            "policy": {"requireApproval": true, "limits": {"perAuth": 20_000}},
            "metadata": {"seats": 3}
        }),
    )
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
    let bare = create_id(&app, json!({})).await;
    let after = patch_ok(&app, &bare, json!({"policy": {"limits": {"perDay": 7}}})).await;
    assert_eq!(after["policy"], json!({"limits": {"perDay": 7}}));
    assert_eq!(
        stored_policy(&app, &bare).await,
        Some(json!({"limits": {"perDay": 7}}))
    );
}

#[tokio::test]
async fn arrays_and_scalars_replace_the_old_value() {
    let app = spawn_app().await;
    let id = create_id(&app, full_customer()).await;
    let after = patch_ok(
        &app,
        &id,
        json!({
            "email": "alicia@example.com",
            "policy": {"allowedMccs": ["5999"], "requireIntent": false},
            "metadata": {"tags": ["c"], "plan": {"tier": "gold"}}
        }),
    )
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
async fn the_contract_example_merges_limits() {
    let app = spawn_app().await;
    let id = create_id(
        &app,
        json!({"policy": {"requireIntent": true, "limits": {"perDay": 50000, "perMonth": 500000}}}),
    )
    .await;
    let after = patch_ok(&app, &id, json!({"policy": {"limits": {"perDay": 70000}}})).await;
    let expected = json!({"requireIntent": true, "limits": {"perDay": 70000, "perMonth": 500000}});
    assert_eq!(after["policy"], expected);
    assert_eq!(stored_policy(&app, &id).await, Some(expected));
    assert_eq!(app.stored_version(&id).await, 2);
}

// ---------------------------------------------------------------------------------------------
// §4.1 content types
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn both_json_content_types_are_accepted() {
    let app = spawn_app().await;
    let id = create_id(&app, json!({"email": "alice@example.com"})).await;
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
    let id = create_id(&app, json!({"email": "alice@example.com"})).await;
    let before = snapshot(&app, &id).await;
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
    assert_eq!(snapshot(&app, &id).await, before, "nothing changed");
}

// ---------------------------------------------------------------------------------------------
// §4.2 the merged result is validated
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_patch_valid_alone_but_invalid_merged_is_rejected() {
    let app = spawn_app().await;
    let id = create_id(
        &app,
        json!({"policy": {"requireIntent": true, "limits": {"perDay": 50000, "perMonth": 500000}}}),
    )
    .await;
    let before = snapshot(&app, &id).await;

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
    assert_eq!(snapshot(&app, &id).await, before, "nothing changed");

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
    assert_eq!(snapshot(&app, &id).await, before, "nothing changed");

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

// ---------------------------------------------------------------------------------------------
// §4.3 no-ops and concurrency
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_empty_patch_is_a_no_op() {
    let app = spawn_app().await;
    let created = app.create_ok(full_customer()).await;
    let id = created["id"].as_str().unwrap();
    let before = snapshot(&app, id).await;
    // Give a write something to change in updatedAt.
    tokio::time::sleep(Duration::from_millis(20)).await;

    let response = app.patch(id, json!({})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(etag(&response), "\"1\"");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, created, "200 with the customer, unchanged");
    assert_eq!(snapshot(&app, id).await, before, "no write");
    assert_eq!(app.stored_version(id).await, 1);

    // The same sent as application/json.
    let response = send_patch(&app, id, "{}", Some("application/json"), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(snapshot(&app, id).await, before, "no write");
}

#[tokio::test]
async fn a_patch_that_changes_nothing_is_a_no_op() {
    let app = spawn_app().await;
    let created = app.create_ok(full_customer()).await;
    let id = created["id"].as_str().unwrap();
    let before = snapshot(&app, id).await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    for body in [
        json!({"email": "alice@example.com"}),
        json!({"name": {"first": "Alice"}}),
        full_customer(),
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
        assert_eq!(snapshot(&app, id).await, before, "no write for {body}");
    }

    // Same for a customer with nothing set.
    let bare = app.create_ok(json!({})).await;
    let bare_id = bare["id"].as_str().unwrap();
    let bare_before = snapshot(&app, bare_id).await;
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
            snapshot(&app, bare_id).await,
            bare_before,
            "no write for {body}"
        );
    }
}

#[tokio::test]
async fn concurrent_patches_never_lose_a_change() {
    let app = spawn_app().await;
    let id = create_id(&app, json!({})).await;
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

// ---------------------------------------------------------------------------------------------
// §4.4 versions and preconditions
// ---------------------------------------------------------------------------------------------

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
    assert_eq!(etag(&activate(&app, &id, None).await), "\"4\"");
    assert_eq!(etag(&delete(&app, &id, None).await), "\"5\"");
    assert_eq!(app.stored_version(&id).await, 5);
}

#[tokio::test]
async fn a_stale_if_match_on_patch_is_412_and_changes_nothing() {
    let app = spawn_app().await;
    let id = create_id(&app, json!({"email": "alice@example.com"})).await;
    patch_ok(&app, &id, json!({"email": "bob@example.com"})).await;
    let before = snapshot(&app, &id).await;
    let body = json!({"email": "carol@example.com"}).to_string();
    for if_match in ["\"1\"", "\"3\"", "W/\"2\"", "\"1\", \"3\"", "\"abc\""] {
        let response = send_patch(
            &app,
            &id,
            &body,
            Some("application/merge-patch+json"),
            Some(if_match),
        )
        .await;
        error_body(response, 412, "precondition_failed").await;
        assert_eq!(
            snapshot(&app, &id).await,
            before,
            "nothing changed ({if_match})"
        );
    }
    // Also for a patch that would change nothing.
    let response = send_patch(
        &app,
        &id,
        "{}",
        Some("application/merge-patch+json"),
        Some("\"1\""),
    )
    .await;
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
    let id = create_id(&app, json!({"email": "alice@example.com"})).await;
    let response = send_patch(
        &app,
        &id,
        &json!({"email": "bob@example.com"}).to_string(),
        Some("application/merge-patch+json"),
        Some("\"1\""),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(etag(&response), "\"2\"");
    assert_eq!(
        stored(&app, &id).await.0.as_deref(),
        Some("bob@example.com")
    );

    // One of several listed tags.
    let response = send_patch(
        &app,
        &id,
        &json!({"email": "carol@example.com"}).to_string(),
        Some("application/merge-patch+json"),
        Some("\"7\", \"2\""),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(etag(&response), "\"3\"");

    let response = send_patch(
        &app,
        &id,
        &json!({"email": "dave@example.com"}).to_string(),
        Some("application/merge-patch+json"),
        Some("*"),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(etag(&response), "\"4\"");
    assert_eq!(
        stored(&app, &id).await.0.as_deref(),
        Some("dave@example.com")
    );
    assert_eq!(app.stored_version(&id).await, 4);
}

#[tokio::test]
async fn if_match_on_delete() {
    let app = spawn_app().await;
    let id = create_id(&app, json!({})).await;
    patch_ok(&app, &id, json!({"email": "alice@example.com"})).await;
    for stale in ["\"1\"", "\"3\"", "W/\"2\"", "\"1\", \"3\""] {
        let response = delete(&app, &id, Some(stale)).await;
        error_body(response, 412, "precondition_failed").await;
        assert_eq!(stored_status(&app, &id).await, "pending", "{stale}");
        assert_eq!(app.stored_version(&id).await, 2);
    }
    let response = delete(&app, &id, Some("\"2\"")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(etag(&response), "\"3\"");
    assert_eq!(stored_status(&app, &id).await, "deleted");

    // `*` on another customer; a list that contains the current tag on a third.
    let other = create_id(&app, json!({})).await;
    let response = delete(&app, &other, Some("*")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(stored_status(&app, &other).await, "deleted");
    let third = create_id(&app, json!({})).await;
    let response = delete(&app, &third, Some("\"5\", \"1\"")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(stored_status(&app, &third).await, "deleted");
    assert_eq!(app.stored_version(&third).await, 2);
}

#[tokio::test]
async fn if_match_on_activate() {
    let app = spawn_app().await;
    let id = create_id(&app, json!({})).await;
    patch_ok(&app, &id, json!({"email": "alice@example.com"})).await;
    for stale in ["\"1\"", "\"3\"", "W/\"2\""] {
        let response = activate(&app, &id, Some(stale)).await;
        error_body(response, 412, "precondition_failed").await;
        assert_eq!(stored_status(&app, &id).await, "pending", "{stale}");
        assert_eq!(app.stored_version(&id).await, 2);
    }
    let response = activate(&app, &id, Some("\"2\"")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(etag(&response), "\"3\"");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "active");
    assert_eq!(stored_status(&app, &id).await, "active");

    let other = create_id(&app, json!({})).await;
    let response = activate(&app, &other, Some("*")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(stored_status(&app, &other).await, "active");
    assert_eq!(app.stored_version(&other).await, 2);
}

// ---------------------------------------------------------------------------------------------
// §4.5 deleted customers
// ---------------------------------------------------------------------------------------------

async fn deleted_customer(app: &TestApp) -> (String, Value) {
    let id = create_id(app, full_customer()).await;
    let response = delete(app, &id, None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "deleted");
    (id, body)
}

#[tokio::test]
async fn patching_a_deleted_customer_is_409() {
    let app = spawn_app().await;
    let (id, _) = deleted_customer(&app).await;
    let before = snapshot(&app, &id).await;
    for body in [
        json!({"email": "bob@example.com"}),
        json!({}),
        json!({"metadata": null}),
    ] {
        let response = app.patch(&id, body.clone()).await;
        error_body(response, 409, "customer_deleted").await;
        assert_eq!(
            snapshot(&app, &id).await,
            before,
            "nothing changed for {body}"
        );
    }
    let response = send_patch(
        &app,
        &id,
        &json!({"email": "bob@example.com"}).to_string(),
        Some("application/json"),
        Some("\"2\""),
    )
    .await;
    error_body(response, 409, "customer_deleted").await;
    assert_eq!(snapshot(&app, &id).await, before);
}

#[tokio::test]
async fn activating_a_deleted_customer_is_409() {
    let app = spawn_app().await;
    let (id, _) = deleted_customer(&app).await;
    let before = snapshot(&app, &id).await;
    let response = activate(&app, &id, None).await;
    error_body(response, 409, "customer_deleted").await;
    let response = activate(&app, &id, Some("*")).await;
    error_body(response, 409, "customer_deleted").await;
    assert_eq!(snapshot(&app, &id).await, before);
    assert_eq!(stored_status(&app, &id).await, "deleted");

    // Also when it had been active before being deleted.
    let active = create_id(&app, json!({})).await;
    assert_eq!(activate(&app, &active, None).await.status(), 200);
    assert_eq!(delete(&app, &active, None).await.status(), 200);
    let response = activate(&app, &active, None).await;
    error_body(response, 409, "customer_deleted").await;
    assert_eq!(stored_status(&app, &active).await, "deleted");
    assert_eq!(app.stored_version(&active).await, 3);
}

#[tokio::test]
async fn deleting_a_deleted_customer_is_200_unchanged() {
    let app = spawn_app().await;
    let (id, first) = deleted_customer(&app).await;
    let before = snapshot(&app, &id).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    for if_match in [None, Some("*"), Some("\"2\"")] {
        let response = delete(&app, &id, if_match).await;
        assert_eq!(response.status(), 200, "{if_match:?}");
        assert_eq!(etag(&response), "\"2\"");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, first, "the same customer, unchanged");
        assert_eq!(snapshot(&app, &id).await, before, "no write");
    }
}

#[tokio::test]
async fn activating_an_active_customer_is_200_unchanged() {
    let app = spawn_app().await;
    let id = create_id(&app, json!({})).await;
    let response = activate(&app, &id, None).await;
    assert_eq!(response.status(), 200);
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["status"], "active");
    let before = snapshot(&app, &id).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    for if_match in [None, Some("*"), Some("\"2\"")] {
        let response = activate(&app, &id, if_match).await;
        assert_eq!(response.status(), 200, "{if_match:?}");
        assert_eq!(etag(&response), "\"2\"");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, first, "the same customer, unchanged");
        assert_eq!(snapshot(&app, &id).await, before, "no write");
    }
    assert_eq!(app.stored_version(&id).await, 2);
}
