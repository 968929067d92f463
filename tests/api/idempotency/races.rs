//! Copies of one keyed request sent at once, to one server and to two on one database: exactly
//! one runs, the others replay it.

use reqwest::Method;
use serde_json::json;

use super::*;

/// Sends `n` copies of one request at once, round-robin over `apps`; returns every reply.
async fn race(
    apps: &[&TestApp],
    n: usize,
    method: Method,
    path: &str,
    key: &str,
    body: &str,
) -> Vec<Reply> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let request = keyed(apps[i % apps.len()], method.clone(), path, key)
            .header("content-type", "application/json")
            .body(body.to_owned());
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            send(request).await
        }));
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("request task"));
    }
    replies
}

/// All replies: `status`, the same body byte for byte, the same ETag/Location; exactly one not
/// a replay.
fn assert_identical(replies: &[Reply], status: u16) {
    let first = &replies[0];
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, status, "reply {i}: {}", reply.text());
        assert_eq!(
            reply.body,
            first.body,
            "reply {i} differs: {} vs {}",
            reply.text(),
            first.text()
        );
        assert_eq!(reply.header("etag"), first.header("etag"), "reply {i}");
        assert_eq!(
            reply.header("location"),
            first.header("location"),
            "reply {i}"
        );
    }
    let originals = replies.iter().filter(|r| !r.replayed()).count();
    assert_eq!(
        originals, 1,
        "exactly one request executed, the others replayed"
    );
}

/// Twenty copies at once, over `apps`: all answered `status`, identical, exactly one ran.
async fn race_identical(
    apps: &[&TestApp],
    method: Method,
    path: &str,
    key: &str,
    body: &str,
    status: u16,
) -> Vec<Reply> {
    let replies = race(apps, 20, method, path, key, body).await;
    assert_identical(&replies, status);
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_identical_posts_create_one_customer() {
    let app = spawn_app().await;
    race_identical(
        &[&app],
        Method::POST,
        "/v1/customers",
        "race-post",
        r#"{"email":"race@example.com"}"#,
        201,
    )
    .await;
    assert_eq!(app.count_customers().await, 1, "exactly one customer");
    assert_eq!(key_rows(&app.db).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_identical_patches_move_the_version_once() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    let replies = race_identical(
        &[&app],
        Method::PATCH,
        &format!("/v1/customers/{id}"),
        "race-patch",
        r#"{"metadata":{"n":"1"}}"#,
        200,
    )
    .await;
    assert_eq!(replies[0].header("etag"), Some("\"2\""));
    assert_eq!(app.stored_version(&id).await, 2, "the version moved once");
    assert_eq!(app.get_json(&id).await["metadata"], json!({"n": "1"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_races_hold_across_two_servers_on_one_database() {
    let db = fresh_database().await;
    let one = spawn_app_on(db.clone(), test_settings()).await;
    let two = spawn_app_on(db, test_settings()).await;
    assert_ne!(one.port, two.port);

    let replies = race_identical(
        &[&one, &two],
        Method::POST,
        "/v1/customers",
        "race-two-post",
        r#"{"email":"two@example.com"}"#,
        201,
    )
    .await;
    assert_eq!(one.count_customers().await, 1, "exactly one customer");

    let id = replies[0].id();
    let replies = race_identical(
        &[&one, &two],
        Method::PATCH,
        &format!("/v1/customers/{id}"),
        "race-two-patch",
        r#"{"metadata":{"n":"2"}}"#,
        200,
    )
    .await;
    assert_eq!(one.stored_version(&id).await, 2, "the version moved once");
    assert_eq!(key_rows(&one.db).await, 2);

    // A replay through either server.
    for app in [&one, &two] {
        let reply = patch_keyed(app, &id, "race-two-patch", r#"{"metadata":{"n":"2"}}"#).await;
        assert_eq!(reply.status, 200);
        assert!(reply.replayed());
        assert_eq!(reply.body, replies[0].body);
    }
}
