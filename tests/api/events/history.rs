//! `GET /v1/customers/{id}/events`: one customer's events, newest first, paged by signed
//! cursors; tenancy and scopes as on the customer routes.

use reqwest::Method;
use serde_json::json;

use super::get_ok;
use crate::support::*;

#[tokio::test]
async fn history_pages_newest_first_and_deleted_customers_keep_theirs() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    for i in 0..4 {
        assert_eq!(
            app.patch(&id, json!({"metadata": {"i": i}})).await.status(),
            200
        );
    }
    assert_eq!(app.delete(&id, None).await.status(), 200);
    let mut versions = Vec::new();
    let mut path = format!("/v1/customers/{id}/events?limit=2");
    let mut pages = 0;
    loop {
        let page = get_ok(&app, &path).await;
        pages += 1;
        let data = page["data"].as_array().unwrap();
        versions.extend(data.iter().map(|e| e["version"].as_i64().unwrap()));
        assert_eq!(
            page["hasMore"].as_bool(),
            Some(page["nextCursor"].is_string())
        );
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/v1/customers/{id}/events?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(versions, vec![6, 5, 4, 3, 2, 1]);
    assert_eq!(pages, 3);
    let newest = &get_ok(&app, &format!("/v1/customers/{id}/events?limit=1")).await["data"][0];
    assert_eq!(newest["type"], "customer.deleted");
}

#[tokio::test]
async fn history_refuses_what_the_lists_refuse() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    let other = app.create_id(json!({})).await;
    assert_eq!(
        app.patch(&id, json!({"metadata": {"a": 1}})).await.status(),
        200
    );
    let page = get_ok(&app, &format!("/v1/customers/{id}/events?limit=1")).await;
    let cursor = page["nextCursor"].as_str().unwrap();
    for (path, status, code) in [
        (
            format!("/v1/customers/{other}/events?cursor={cursor}"),
            400,
            "invalid_cursor",
        ),
        (
            format!("/v1/customers/{id}/events?cursor=garbage"),
            400,
            "invalid_cursor",
        ),
        (
            format!("/v1/customers/{id}/events?limit=0"),
            400,
            "parameter_invalid",
        ),
        (
            format!("/v1/customers/{id}/events?limit=101"),
            400,
            "parameter_invalid",
        ),
        (
            format!("/v1/customers/{id}/events?order=asc"),
            400,
            "parameter_unknown",
        ),
        (
            format!("/v1/customers/{MISSING_ID}/events"),
            404,
            "not_found",
        ),
        (
            "/v1/customers/not-an-id/events".to_owned(),
            404,
            "not_found",
        ),
    ] {
        error_body(app.call(Method::GET, &path).await, status, code).await;
    }
}

#[tokio::test]
async fn history_is_confined_to_the_tenant_and_needs_the_read_scope() {
    let app = spawn_app().await;
    let id = app.create_id(json!({"email": "mine@example.com"})).await;
    let path = format!("/v1/customers/{id}/events");
    for (org, mode) in [("org_b", "test"), (ORG, "live")] {
        let foreign = app.request_as(Method::GET, &path, &token(org, mode, ADMIN));
        let missing = app.request_as(
            Method::GET,
            &format!("/v1/customers/{MISSING_ID}/events"),
            &token(org, mode, ADMIN),
        );
        let (foreign, missing) = (send(foreign).await, send(missing).await);
        assert_eq!((foreign.status, missing.status), (404, 404), "{org}/{mode}");
        assert_eq!(
            foreign.error_shape(),
            missing.error_shape(),
            "another tenant's customer looks like one that does not exist"
        );
    }
    let read = send(app.request_as(Method::GET, &path, &token(ORG, "test", READ))).await;
    assert_eq!(read.status, 200);
    let none = send(app.request_as(Method::GET, &path, &token(ORG, "test", ""))).await;
    none.error(403, "insufficient_scope");
    assert_401(app.get_anonymous(&path).await, "history without a token").await;
}
