//! Scopes: read reads, write also writes, admin also activates; the scope claim is a
//! space-separated list and unknown scopes allow nothing.

use reqwest::Method;
use serde_json::json;

use super::*;

#[tokio::test]
async fn a_read_token_reads_but_cannot_write() {
    let app = spawn_app().await;
    let id = app.create_id(json!({"email": "keep@example.com"})).await;
    let read = token(ORG, "test", READ);

    assert_eq!(list_ids(&app, &read, "").await, vec![id.clone()]);
    let response = send(
        &app,
        Method::GET,
        &format!("/v1/customers/{id}"),
        Some(&read),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);

    for (method, path, body) in [
        (
            Method::POST,
            "/v1/customers".to_owned(),
            Some(json!({"email": "new@example.com"})),
        ),
        (
            Method::PATCH,
            format!("/v1/customers/{id}"),
            Some(json!({"email": "changed@example.com"})),
        ),
        (Method::DELETE, format!("/v1/customers/{id}"), None),
        (Method::POST, format!("/v1/customers/{id}/activate"), None),
    ] {
        let response = send(&app, method.clone(), &path, Some(&read), body).await;
        let error = error_body(response, 403, "insufficient_scope").await;
        assert_eq!(error["type"], "permission_error", "{method} {path}");
    }
    assert_eq!(app.count_customers().await, 1);
    assert_eq!(
        stored(&app, &id).await,
        row(ORG, 1, "pending", "keep@example.com")
    );
}

#[tokio::test]
async fn a_write_token_reads_and_writes_but_cannot_activate() {
    let app = spawn_app().await;
    let write = token(ORG, "test", WRITE);

    let id = create_as(&app, &write, json!({"email": "w@example.com"})).await;
    assert_eq!(list_ids(&app, &write, "").await, vec![id.clone()]);
    let path = format!("/v1/customers/{id}");
    let response = send(&app, Method::GET, &path, Some(&write), None).await;
    assert_eq!(response.status(), 200);

    let response = send(
        &app,
        Method::PATCH,
        &path,
        Some(&write),
        Some(json!({"email": "w2@example.com"})),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        stored(&app, &id).await,
        row(ORG, 2, "pending", "w2@example.com")
    );

    let response = send(
        &app,
        Method::POST,
        &format!("{path}/activate"),
        Some(&write),
        None,
    )
    .await;
    let error = error_body(response, 403, "insufficient_scope").await;
    assert_eq!(error["type"], "permission_error");
    assert_eq!(stored(&app, &id).await.2, 2);
    assert_eq!(stored(&app, &id).await.3, "pending");

    let response = send(&app, Method::DELETE, &path, Some(&write), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(stored(&app, &id).await.3, "deleted");
}

#[tokio::test]
async fn an_admin_token_does_everything() {
    let app = spawn_app().await;
    let admin = token(ORG, "test", ADMIN);
    let id = create_as(&app, &admin, json!({})).await;
    let path = format!("/v1/customers/{id}");
    assert_eq!(list_ids(&app, &admin, "").await, vec![id.clone()]);
    let response = send(&app, Method::GET, &path, Some(&admin), None).await;
    assert_eq!(response.status(), 200);
    let response = send(
        &app,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"email": "a@example.com"})),
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = send(
        &app,
        Method::POST,
        &format!("{path}/activate"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        stored(&app, &id).await,
        row(ORG, 3, "active", "a@example.com")
    );
    let response = send(&app, Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(stored(&app, &id).await.3, "deleted");
}

#[tokio::test]
async fn scopes_are_read_from_a_space_separated_list() {
    let app = spawn_app().await;
    // Several scopes: the highest counts.
    let both = dev_token(&claims(ORG, "test", "customers:read customers:write"));
    create_as(&app, &both, json!({})).await;
    let padded = dev_token(&claims(ORG, "test", "openid  customers:write profile"));
    create_as(&app, &padded, json!({})).await;
    assert_eq!(app.count_customers().await, 2);

    // No known scope: authenticated, but allowed nothing.
    for scope in [
        "",
        "customers",
        "customers:*",
        "admin",
        "customers:readwrite",
    ] {
        let token = dev_token(&claims(ORG, "test", scope));
        let response = send(&app, Method::GET, "/v1/customers", Some(&token), None).await;
        let error = error_body(response, 403, "insufficient_scope").await;
        assert_eq!(error["type"], "permission_error", "scope {scope:?}");
        let response = send(
            &app,
            Method::POST,
            "/v1/customers",
            Some(&token),
            Some(json!({})),
        )
        .await;
        error_body(response, 403, "insufficient_scope").await;
    }
    assert_eq!(app.count_customers().await, 2);
}

/// The scope is checked before the body is read: a caller without it learns nothing about its
/// body (no 400, 413 or 415), only that it may not write.
#[tokio::test]
async fn a_missing_scope_is_answered_before_the_body_is_looked_at() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    let read_only = token(ORG, "test", READ);
    for (method, path) in [
        (Method::POST, "/v1/customers".to_owned()),
        (Method::PATCH, format!("/v1/customers/{id}")),
    ] {
        for (content_type, body) in [
            ("text/plain", "hello".to_owned()),
            ("application/json", "{not json".to_owned()),
            ("application/json", "x".repeat(70 * 1024)),
            (
                "application/json",
                r#"{"policy": {"limits": {"perDay": -1}}}"#.to_owned(),
            ),
        ] {
            let response = app
                .request_as(method.clone(), &path, &read_only)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            error_body(response, 403, "insufficient_scope").await;
        }
    }
    assert_eq!(app.count_customers().await, 1);
}
