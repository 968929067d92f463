//! Which keys are valid, where they count, and whose they are: writes without a key, invalid
//! keys, keys on GET, the quoted form, and keys per tenant.

use reqwest::Method;
use serde_json::json;

use super::*;

#[tokio::test]
async fn without_a_key_writes_execute_normally_and_nothing_is_stored() {
    let app = spawn_app().await;
    let body = json!({"email": "nokey@example.com"});
    let first = Reply::of(app.create(body.clone()).await).await;
    let second = Reply::of(app.create(body).await).await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(second.status, 201, "{}", second.text());
    assert!(!first.replayed() && !second.replayed());
    assert_ne!(first.id(), second.id(), "two requests, two customers");
    assert_eq!(app.count_customers().await, 2);

    let id = first.id();
    let patched = Reply::of(app.patch(&id, json!({"metadata": {"a": "1"}})).await).await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert!(!patched.replayed());
    let activated = send(app.request(Method::POST, &format!("/v1/customers/{id}/activate"))).await;
    assert_eq!(activated.status, 200, "{}", activated.text());
    let deleted = send(app.request(Method::DELETE, &format!("/v1/customers/{id}"))).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert!(!deleted.replayed());
    assert_eq!(deleted.json()["status"], "deleted");

    assert_eq!(key_rows(&app.db).await, 0, "no key, nothing stored");
}

#[tokio::test]
async fn invalid_keys_are_rejected_with_400_and_nothing_runs() {
    let app = spawn_app().await;
    let body = r#"{"email":"k@example.com"}"#;
    let too_long = "k".repeat(256);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", b"".to_vec()),
        ("quoted empty", b"\"\"".to_vec()),
        ("256 characters", too_long.as_bytes().to_vec()),
        ("a space inside", b"a b".to_vec()),
        ("a tab inside", b"a\tb".to_vec()),
        ("non-ASCII", "cl\u{e9}".as_bytes().to_vec()),
    ];
    for (what, raw) in cases {
        let value = reqwest::header::HeaderValue::from_bytes(&raw).expect("a header value");
        let reply = send(
            app.request(Method::POST, "/v1/customers")
                .header("idempotency-key", value)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        let error = reply.error(400, "idempotency_key_invalid");
        assert_eq!(error["type"], "idempotency_error", "{what}");
        assert!(!reply.replayed(), "{what}");
    }

    // Sent twice (two header lines), even with the same value.
    let reply = send(
        app.request(Method::POST, "/v1/customers")
            .header("idempotency-key", "twice")
            .header("idempotency-key", "twice")
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    reply.error(400, "idempotency_key_invalid");

    // The same rules on PATCH, DELETE and activate.
    let id = app.create_id(json!({})).await;
    let before = app.stored_version(&id).await;
    patch_keyed(&app, &id, "", r#"{"metadata":{"a":"1"}}"#)
        .await
        .error(400, "idempotency_key_invalid");
    keyed_action(&app, "activate", &id, &too_long)
        .await
        .error(400, "idempotency_key_invalid");
    keyed_action(&app, "delete", &id, "a b")
        .await
        .error(400, "idempotency_key_invalid");

    assert_eq!(app.count_customers().await, 1, "no invalid-key create ran");
    assert_eq!(app.stored_version(&id).await, before, "nothing changed");
    assert_eq!(app.get_json(&id).await["status"], "pending");
    assert_eq!(key_rows(&app.db).await, 0);

    // The longest key allowed (255) is fine.
    let longest = "k".repeat(255);
    let reply = create_keyed(&app, &longest, body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(
        stored_key_status(&app.db, ORG, &longest).await,
        Some(Some(201))
    );
}

#[tokio::test]
async fn a_key_is_ignored_on_get() {
    let app = spawn_app().await;
    let created = create_keyed(&app, "get-key", "{}").await;
    assert_eq!(created.status, 201);
    let id = created.id();
    for key in ["", "get-key", "a b"] {
        let reply = send(keyed(
            &app,
            Method::GET,
            &format!("/v1/customers/{id}"),
            key,
        ))
        .await;
        assert_eq!(reply.status, 200, "key {key:?}: {}", reply.text());
        assert!(!reply.replayed());
        assert_eq!(reply.json()["id"], id.as_str());
    }
    assert_eq!(key_rows(&app.db).await, 1);
}

#[tokio::test]
async fn the_rfc_8941_quoted_form_is_the_same_key() {
    let app = spawn_app().await;
    let body = r#"{"email":"quoted@example.com"}"#;
    let first = create_keyed(&app, "\"abc\"", body).await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert!(!first.replayed());
    let stored: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, vec!["abc".to_owned()], "stored without the quotes");

    let unquoted = create_keyed(&app, "abc", body).await;
    assert_replay_of(&first, &unquoted);
    let quoted_again = create_keyed(&app, "\"abc\"", body).await;
    assert_replay_of(&first, &quoted_again);
    assert_eq!(app.count_customers().await, 1);
}

#[tokio::test]
async fn keys_are_scoped_to_the_tenant() {
    let app = spawn_app().await;
    let org_b = token("org_b", "test", ADMIN);
    let live_a = token(ORG, "live", ADMIN);
    let post = |token: &str, body: &'static str| {
        app.request_as(Method::POST, "/v1/customers", token)
            .header("idempotency-key", "shared-key")
            .header("content-type", "application/json")
            .body(body)
    };
    let a = send(post(
        &token(ORG, "test", ADMIN),
        r#"{"email":"a@example.com"}"#,
    ))
    .await;
    let b = send(post(&org_b, r#"{"email":"a@example.com"}"#)).await;
    // Another body under the same key in a third tenant is no reuse either.
    let c = send(post(&live_a, r#"{"email":"c@example.com"}"#)).await;
    for (name, reply) in [("org_a", &a), ("org_b", &b), ("org_a live", &c)] {
        assert_eq!(reply.status, 201, "{name}: {}", reply.text());
        assert!(!reply.replayed(), "{name} ran its own request");
    }
    assert_ne!(a.id(), b.id());
    assert_ne!(a.id(), c.id());
    assert_eq!(c.json()["email"], "c@example.com");
    assert_eq!(
        app.count_customers().await,
        3,
        "three tenants, three customers"
    );
    let tenants: Vec<(String, String)> =
        sqlx::query_as("SELECT org_id, mode FROM idempotency_keys ORDER BY org_id, mode")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        tenants,
        vec![
            ("org_a".to_owned(), "live".to_owned()),
            ("org_a".to_owned(), "test".to_owned()),
            ("org_b".to_owned(), "test".to_owned()),
        ]
    );

    // Each tenant replays its own result.
    let a2 = send(post(
        &token(ORG, "test", ADMIN),
        r#"{"email":"a@example.com"}"#,
    ))
    .await;
    let b2 = send(post(&org_b, r#"{"email":"a@example.com"}"#)).await;
    assert_replay_of(&a, &a2);
    assert_replay_of(&b, &b2);
    assert_eq!(app.count_customers().await, 3);
    // org_b cannot see org_a's customer through its replay, nor reach it.
    let hidden =
        send(app.request_as(Method::GET, &format!("/v1/customers/{}", a.id()), &org_b)).await;
    hidden.error(404, "not_found");
}
