//! What one request may take from the others: a tenant's requests hold at most their share of
//! the pool (`tenants`), and a request cut off by its deadline takes only its own connection
//! with it unless the server itself stopped answering (`deadline`).

mod deadline;
mod tenants;

use std::time::{Duration, Instant};

use sqlx::PgPool;

/// The backends of the service's pooled connections on the test's database.
async fn service_backends(db: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'customers-api' \
          AND datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(db)
    .await
    .expect("the service's backends")
}

/// The service's backends whose statement waits as `wait_event` says (`Lock`, `PgSleep`).
async fn backends_waiting(db: &PgPool, wait_event: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'customers-api' \
          AND datname = current_database() AND (wait_event_type = $1 OR wait_event = $1)",
    )
    .bind(wait_event)
    .fetch_all(db)
    .await
    .expect("the waiting backends")
}

/// Polls until `count` backends wait as `wait_event` says; returns them.
async fn until_waiting(db: &PgPool, wait_event: &str, count: usize) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = backends_waiting(db, wait_event).await;
        if waiting.len() >= count {
            return waiting;
        }
        assert!(
            Instant::now() < deadline,
            "{} backends wait on {wait_event}, expected {count}",
            waiting.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
