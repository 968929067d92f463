//! Retention and the sweeper: after the retention a key runs anew, and the sweeper deletes the
//! expired rows, in batches.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_retention_a_key_runs_anew_and_the_sweeper_deletes_expired_rows() {
    let app = spawn_app_with(|s| {
        s.idempotency.retention = Duration::from_secs(2);
        s.idempotency.sweep_interval = Duration::from_millis(500);
        s.idempotency.sweep_batch = 1;
    })
    .await;
    let body = r#"{"email":"retained@example.com"}"#;
    let first = create_keyed(&app, "retained", body).await;
    assert_eq!(first.status, 201, "{}", first.text());
    for key in ["other-1", "other-2"] {
        assert_eq!(create_keyed(&app, key, "{}").await.status, 201);
    }
    assert_replay_of(&first, &create_keyed(&app, "retained", body).await);
    assert_eq!(key_rows(&app.db).await, 3);
    // Not expired yet: the sweeper (every 500 ms) leaves the rows alone.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(key_rows(&app.db).await, 3, "unexpired keys are kept");

    // Past the retention (whether or not the sweeper got there first), the key is free.
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM idempotency_keys WHERE key = 'retained' AND expires_at > now()",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
            match live {
                0 => Ok(()),
                _ => Err("the key never expired".to_owned()),
            }
        },
    )
    .await;
    let again = create_keyed(&app, "retained", body).await;
    assert_eq!(again.status, 201, "{}", again.text());
    assert!(!again.replayed(), "an expired key executes anew");
    assert_ne!(again.id(), first.id(), "a second customer");
    assert_eq!(app.count_customers().await, 4);
    assert_replay_of(&again, &create_keyed(&app, "retained", body).await);

    // The sweeper deletes every expired row, in batches of one.
    eventually(
        Duration::from_secs(15),
        Duration::from_millis(100),
        async || match key_rows(&app.db).await {
            0 => Ok(()),
            rows => Err(format!("the sweeper left {rows} expired key(s) behind")),
        },
    )
    .await;
    assert_eq!(
        app.count_customers().await,
        4,
        "the sweeper deletes keys only"
    );
}
