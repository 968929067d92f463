//! A server killed with SIGKILL while a keyed PATCH holds its key in an open transaction: the
//! transaction dies with it, so the key is free and nothing was written; after a restart the
//! retry with the same key runs, once.

use std::time::Duration;

use serde_json::json;

use super::*;

/// How many sessions of the service hold a row of `idempotency_keys` (uncommitted) right now.
async fn sessions_writing_keys(db: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
          WHERE a.datname = current_database() AND a.application_name = 'customers-api'
            AND l.relation = 'idempotency_keys'::regclass AND l.mode = 'RowExclusiveLock'
            AND l.granted",
    )
    .fetch_one(db)
    .await
    .expect("read pg_locks")
}

/// Waits (bounded) until no session of the service is left on the database.
async fn wait_until_sessions_end(db: &PgPool) {
    eventually(
        Duration::from_secs(15),
        Duration::from_millis(50),
        async || {
            let sessions: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'customers-api'",
            )
            .fetch_one(db)
            .await
            .expect("read pg_stat_activity");
            match sessions {
                0 => Ok(()),
                _ => Err(format!(
                    "{sessions} session(s) of the killed server are still open"
                )),
            }
        },
    )
    .await;
}

/// Creates a customer through the binary; returns its id.
async fn create_through(service: &Service, client: &reqwest::Client, token: &str) -> String {
    let created = send(
        client
            .post(service.url("/v1/customers"))
            .bearer_auth(token)
            .json(&json!({"email": "killed@example.com"})),
    )
    .await;
    assert_eq!(created.status, 201);
    created.id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_while_holding_a_key_leaves_it_free_and_the_retry_runs_once() {
    let (db, url) = fresh_database_for_binaries().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client");
    let admin = token(ORG, "test", ADMIN);

    let mut service = Service::start(dir.path(), &url, "first");
    service.wait_ready(&client).await;
    let id = create_through(&service, &client, &admin).await;
    let version = stored_version(&db, &id).await;

    // Hold the customer's row, so the PATCH blocks inside its transaction, holding the key.
    let lock = hold_row_lock(&db, &id).await;
    let patch = |service: &Service| {
        client
            .patch(service.url(&format!("/v1/customers/{id}")))
            .bearer_auth(&admin)
            .header("idempotency-key", "killed-key")
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"metadata":{"attempt":"1"}}"#)
    };
    let first = tokio::spawn(patch(&service).send());
    wait_until_blocked(&db, "Lock", 1).await;
    // Its transaction has written the key's (uncommitted) row.
    assert_eq!(
        sessions_writing_keys(&db).await,
        1,
        "the blocked PATCH holds its key in an open transaction"
    );
    service.sigkill().await;
    let answered = first.await.expect("the PATCH task");
    assert!(
        answered.is_err(),
        "the killed server cannot have answered: {answered:?}"
    );
    lock.rollback().await.expect("release the lock");

    // The killed server's sessions end (the blocked one once the lock is gone), and with them
    // its transaction: no write, no key.
    wait_until_sessions_end(&db).await;
    assert_eq!(key_rows(&db).await, 0, "the killed request left no key");
    let (after_kill, metadata) = stored_version_and_metadata(&db, &id).await;
    assert_eq!(after_kill, version, "the killed request wrote nothing");
    assert_eq!(metadata, json!({}));

    // Restart and retry with the same key: it runs, once.
    let mut service = Service::start(dir.path(), &url, "second");
    service.wait_ready(&client).await;
    let retry = send(patch(&service)).await;
    assert_eq!(retry.status, 200, "{}\n{}", retry.text(), service.log());
    assert!(!retry.replayed(), "the key was free, so the retry executed");
    assert_eq!(retry.json()["metadata"], json!({"attempt": "1"}));
    assert_eq!(
        retry.header("etag"),
        Some(format!("\"{}\"", version + 1).as_str())
    );
    assert_eq!(
        stored_version(&db, &id).await,
        version + 1,
        "applied exactly once"
    );
    assert_eq!(
        stored_key_status(&db, ORG, "killed-key").await,
        Some(Some(200))
    );

    let again = send(patch(&service)).await;
    assert_replay_of(&retry, &again);
    assert_eq!(
        stored_version(&db, &id).await,
        version + 1,
        "the replay wrote nothing"
    );
}
