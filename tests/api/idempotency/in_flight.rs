//! A duplicate arriving while the first request with its key still runs: within the wait bound
//! it waits and replays, past it it gets 409 with Retry-After; the owner of the key is never cut
//! off by the bound.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::*;

/// The case the wait bound is for: the test holds the customer's row lock, so the first PATCH
/// blocks inside its transaction (holding the key); a duplicate past the bound gets 409 +
/// Retry-After; once the lock is released the first completes and a retry replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_past_the_wait_bound_gets_409_while_the_first_waits_for_a_row_lock() {
    let app = spawn_app_with(|s| s.idempotency.wait = Duration::from_millis(300)).await;
    let id = app.create_id(json!({})).await;
    let body = r#"{"metadata":{"slow":"1"}}"#;

    let lock = hold_row_lock(&app.db, &id).await;

    let first = tokio::spawn(keyed_json_patch(&app, &id, "inflight", body).send());
    wait_until_blocked(&app.db, "Lock", 1).await;

    let started = Instant::now();
    let second = patch_keyed(&app, &id, "inflight", body).await;
    let waited = started.elapsed();
    // Keep the lock a little longer than the bound, as a slow request would.
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.rollback().await.unwrap();
    let first = Reply::of(first.await.unwrap().expect("first PATCH answered")).await;

    assert_eq!(
        first.status,
        200,
        "the first PATCH, blocked on a row lock for ~{} ms, must complete once the lock is \
         released: {}\n(the duplicate got {} after {waited:?}: {})",
        waited.as_millis() + 200,
        first.text(),
        second.status,
        second.text()
    );
    assert!(!first.replayed());
    second.error(409, "idempotency_request_in_progress");
    assert_eq!(second.header("retry-after"), Some("1"));
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "the duplicate waited the bound (300 ms), then answered: {waited:?}"
    );
    assert_eq!(app.stored_version(&id).await, 2, "executed once");
    let retry = patch_keyed(&app, &id, "inflight", body).await;
    assert_replay_of(&first, &retry);
    assert_eq!(app.stored_version(&id).await, 2);
}

/// `idempotency.wait` bounds how long a *duplicate* waits; the request that owns the key
/// must not be cut off by it. A keyed PATCH that waits for a row lock longer than the bound
/// must behave like the same PATCH without a key: it completes once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_write_waiting_for_a_row_lock_is_not_cut_off_by_the_wait_bound() {
    let app = spawn_app_with(|s| s.idempotency.wait = Duration::from_millis(300)).await;
    let id = app.create_id(json!({})).await;
    let path = format!("/v1/customers/{id}");
    for (what, key) in [("without a key", None), ("with a key", Some("slow-lock"))] {
        let lock = hold_row_lock(&app.db, &id).await;
        let mut request = app
            .request(Method::PATCH, &path)
            .header("content-type", "application/json")
            .body(format!(r#"{{"metadata":{{"{what}":"1"}}}}"#));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let version = app.stored_version(&id).await;
        let pending = tokio::spawn(request.send());
        wait_until_blocked(&app.db, "Lock", 1).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        lock.rollback().await.unwrap();
        let reply = Reply::of(pending.await.unwrap().expect("answered")).await;
        assert_eq!(
            reply.status,
            200,
            "PATCH {what}, blocked 800 ms on a row lock with idempotency.wait = 300 ms: {}",
            reply.text()
        );
        assert_eq!(app.stored_version(&id).await, version + 1, "{what}");
    }
}

/// The same 409 path with the first request held in flight without waiting for any lock (a
/// gate in a trigger), so only the duplicate's bound is tested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_past_the_wait_bound_gets_409_then_the_retry_replays() {
    let app = spawn_app_with(|s| s.idempotency.wait = Duration::from_millis(300)).await;
    let id = app.create_id(json!({})).await;
    install_gate(&app.db).await;
    let body = r#"{"metadata":{"slow":"1"}}"#;

    let first = tokio::spawn(keyed_json_patch(&app, &id, "gated", body).send());
    wait_until_blocked(&app.db, "Timeout", 1).await;
    let started = Instant::now();
    let second = patch_keyed(&app, &id, "gated", body).await;
    let waited = started.elapsed();
    second.error(409, "idempotency_request_in_progress");
    assert_eq!(second.header("retry-after"), Some("1"));
    assert_eq!(second.json()["error"]["type"], "idempotency_error");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "the duplicate waited the bound (300 ms), then answered: {waited:?}"
    );
    assert_eq!(
        app.stored_version(&id).await,
        1,
        "the first has not committed yet"
    );

    open_gate(&app.db).await;
    let first = Reply::of(first.await.unwrap().expect("first PATCH answered")).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(!first.replayed());
    assert_eq!(app.stored_version(&id).await, 2);
    let retry = patch_keyed(&app, &id, "gated", body).await;
    assert_replay_of(&first, &retry);
    assert_eq!(app.stored_version(&id).await, 2, "executed once");
}

/// Within the bound, the duplicate waits for the first and replays its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_within_the_wait_bound_waits_and_replays() {
    let app = spawn_app().await; // the default bound, 2 s
    let id = app.create_id(json!({})).await;
    install_gate(&app.db).await;
    let body = r#"{"metadata":{"slow":"2"}}"#;

    let first = tokio::spawn(keyed_json_patch(&app, &id, "gated-wait", body).send());
    wait_until_blocked(&app.db, "Timeout", 1).await;
    let second = tokio::spawn(keyed_json_patch(&app, &id, "gated-wait", body).send());
    // The duplicate is waiting for the key.
    wait_until_blocked(&app.db, "Lock", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    open_gate(&app.db).await;

    let first = Reply::of(first.await.unwrap().expect("first answered")).await;
    let second = Reply::of(second.await.unwrap().expect("second answered")).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_replay_of(&first, &second);
    assert_eq!(app.stored_version(&id).await, 2, "executed once");
}
