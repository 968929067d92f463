//! Statements whose caller stops waiting. The pool does not ping a connection that goes back
//! with nothing pending (docs/performance.md#no-ping-on-release); one left with a statement sent
//! and its answer unread, or with a rollback queued, must be drained before anyone else uses it.
//! With one pooled connection, the next user gets that same connection, so a stale answer or an
//! unfinished transaction would show.
//!
//! - On the service's pool itself: a query future dropped mid-statement, outside a transaction
//!   (its answer is still to come) and inside one (its rollback is queued, and must reach the
//!   server when the connection goes back, or the transaction keeps its locks while idle).
//! - Over HTTP: a client that hangs up while its PATCH waits on a row lock. actix lets the handler
//!   run to its end (the write is applied whole); whatever it does, the write must be all there
//!   or not at all, and the next request served normally on the same connection.

use std::time::Duration;

use serde_json::json;
use sqlx::Connection;

use super::*;

#[tokio::test]
async fn a_connection_given_back_mid_statement_is_drained_and_rolled_back_at_release() {
    let app = spawn_app().await;
    let mut settings = app.settings.database.clone();
    settings.max_connections = 1;
    let pool = customers_api::db::pool(app.db_options.clone(), &settings);
    let mut conn = pool.acquire().await.expect("a connection");
    let pid = backend_pid(&mut conn).await;

    // Outside a transaction: the statement was sent and its answer is still to come.
    let cut = tokio::time::timeout(
        Duration::from_millis(100),
        sqlx::query_scalar::<_, i32>("SELECT 7 FROM pg_sleep(0.5)").fetch_one(&mut *conn),
    )
    .await;
    assert!(cut.is_err(), "the sleep outlasted its caller");
    drop(conn);
    let mut conn = pool.acquire().await.expect("the same connection, drained");
    assert_eq!(backend_pid(&mut conn).await, pid, "the connection was kept");
    let answer: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *conn)
        .await
        .expect("a statement after the drained one");
    assert_eq!(answer, 1, "its own answer, not the abandoned statement's");

    // Inside a transaction: its rollback is queued when it is dropped, and must be sent when
    // the connection goes back, not at its next use: until then the transaction would hold its
    // locks while the connection sits idle in the pool.
    let mut tx = conn.begin().await.expect("a transaction");
    sqlx::query("SELECT pg_advisory_xact_lock(4242)")
        .execute(&mut *tx)
        .await
        .expect("a lock held by the transaction");
    let cut = tokio::time::timeout(
        Duration::from_millis(100),
        sqlx::query("SELECT pg_sleep(0.5)").execute(&mut *tx),
    )
    .await;
    assert!(cut.is_err(), "the sleep outlasted its caller");
    drop(tx);
    drop(conn);
    // The pool is not used again: another session sees the lock released by the rollback.
    eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        async || {
            let free: bool = sqlx::query_scalar(
                "SELECT pg_try_advisory_lock(4242) AND pg_advisory_unlock(4242)",
            )
            .fetch_one(&app.db)
            .await
            .expect("try the lock");
            match free {
                true => Ok(()),
                false => Err("the dropped transaction still holds its lock after 5 s".to_owned()),
            }
        },
    )
    .await;
    let mut conn = pool
        .acquire()
        .await
        .expect("the same connection, rolled back");
    assert_eq!(backend_pid(&mut conn).await, pid, "the connection was kept");
    // SAVEPOINT is refused outside a transaction block, and taken in one left open.
    let savepoint = sqlx::query("SAVEPOINT probe").execute(&mut *conn).await;
    assert!(savepoint.is_err(), "no transaction was left open");
    drop(conn);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_abandoned_mid_statement_leaves_a_connection_that_answers_the_next_one() {
    let app = spawn_app_with(|s| {
        s.database.max_connections = 1;
        // Only the requests below use the connection (the relay's and the dispatcher's own
        // rounds would otherwise take it now and then).
        s.events.poll_interval = Duration::from_secs(3600);
        s.webhooks.poll_interval = Duration::from_secs(3600);
    })
    .await;
    for keyed in [false, true] {
        let id = app.create_id(json!({"metadata": {"k": "before"}})).await;
        let pid = the_idle_backend(&app.db).await;

        // The PATCH's statement waits on the test's row lock until its client gives up.
        let lock = hold_row_lock(&app.db, &id).await;
        let mut abandoned = reqwest::Client::new()
            .patch(app.url(&format!("/v1/customers/{id}")))
            .bearer_auth(token(ORG, "test", ADMIN))
            .header("content-type", "application/merge-patch+json")
            .body(json!({"metadata": {"k": "abandoned"}}).to_string());
        if keyed {
            abandoned = abandoned.header("idempotency-key", format!("abandoned-{id}"));
        }
        let client = tokio::spawn(abandoned.send());
        wait_until_blocked(&app.db, "Lock", 1).await;
        client.abort();
        let _ = client.await;
        // Time for the server to see the closed socket and drop the handler.
        tokio::time::sleep(Duration::from_millis(300)).await;
        lock.rollback().await.expect("release the lock");

        // The next request is served, on the same connection, with its own answer.
        let reply = send(app.request(Method::GET, &format!("/v1/customers/{id}"))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        assert_eq!(body["id"], id, "the GET got its own row");
        let version = reply.version().expect("a version (ETag)");
        let events: i64 =
            sqlx::query_scalar("SELECT count(*) FROM customer_events WHERE customer_id = $1")
                .bind(&id)
                .fetch_one(&app.db)
                .await
                .expect("count the events");
        // The abandoned write is all there or not at all: its version, its metadata and its
        // event together.
        match body["metadata"]["k"].as_str() {
            Some("before") => assert_eq!((version, events), (1, 1), "keyed: {keyed}"),
            Some("abandoned") => assert_eq!((version, events), (2, 2), "keyed: {keyed}"),
            other => panic!("metadata.k is {other:?} (keyed: {keyed})"),
        }
        assert_eq!(
            the_idle_backend(&app.db).await,
            pid,
            "the connection went back to the pool and served the GET (keyed: {keyed})"
        );
        // And a write after it commits normally.
        let reply = send(
            app.request(Method::PATCH, &format!("/v1/customers/{id}"))
                .header("content-type", "application/merge-patch+json")
                .body(json!({"metadata": {"k": "after"}}).to_string()),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.version(), Some(version + 1));
        println!(
            "faults/abandoned (keyed: {keyed}): the abandoned PATCH was {}",
            if version == 2 {
                "applied"
            } else {
                "not applied"
            }
        );
    }
}
