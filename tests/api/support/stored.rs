//! What is in the database, read straight from it: the tests judge the service by what it
//! stored, not only by what it answered.

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};

use super::app::TestApp;

impl TestApp {
    /// The stored row's version, straight from the database.
    pub async fn stored_version(&self, id: &str) -> i64 {
        stored_version(&self.db, id).await
    }

    pub async fn count_customers(&self) -> i64 {
        count_customers(&self.db).await
    }

    /// The whole stored row of a customer, as one JSON value (to compare before and after).
    pub async fn snapshot(&self, id: &str) -> Value {
        sqlx::query_scalar("SELECT to_jsonb(c) FROM customers c WHERE id = $1")
            .bind(id)
            .fetch_one(&self.db)
            .await
            .expect("the customer is stored")
    }

    /// The whole state a refused request must not touch: every customer row (version and
    /// updated_at included) and every idempotency key row, as text.
    pub async fn db_state(&self) -> (String, String) {
        let table = |name: &str, order: &str| {
            format!(
                "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY t.org_id, t.mode, t.{order}), \
                 '[]')::text FROM {name} t"
            )
        };
        let mut snapshots = Vec::new();
        for (name, order) in [("customers", "id"), ("idempotency_keys", "key")] {
            let snapshot: String = sqlx::query_scalar(&table(name, order))
                .fetch_one(&self.db)
                .await
                .unwrap_or_else(|e| panic!("{name} snapshot: {e}"));
            snapshots.push(snapshot);
        }
        let keys = snapshots.pop().expect("two snapshots");
        let customers = snapshots.pop().expect("two snapshots");
        (customers, keys)
    }
}

pub async fn stored_version(db: &PgPool, id: &str) -> i64 {
    sqlx::query_scalar("SELECT version FROM customers WHERE id = $1")
        .bind(id)
        .fetch_one(db)
        .await
        .expect("the customer is stored")
}

/// (version, metadata) of a stored customer.
pub async fn stored_version_and_metadata(db: &PgPool, id: &str) -> (i64, Value) {
    sqlx::query_as("SELECT version, metadata FROM customers WHERE id = $1")
        .bind(id)
        .fetch_one(db)
        .await
        .expect("the customer is stored")
}

pub async fn count_customers(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(db)
        .await
        .expect("count customers")
}

/// How many idempotency keys are stored, in every tenant.
pub async fn key_rows(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(db)
        .await
        .expect("count keys")
}

/// The stored status of `key` in `org`/test mode, if a row exists.
pub async fn stored_key_status(db: &PgPool, org: &str, key: &str) -> Option<Option<i16>> {
    sqlx::query_scalar(
        "SELECT status_code FROM idempotency_keys WHERE org_id = $1 AND mode = 'test' AND key = $2",
    )
    .bind(org)
    .bind(key)
    .fetch_optional(db)
    .await
    .expect("read key")
}

/// Takes the row locks of these customers in a transaction of the test's own, so that writes
/// to them block until it ends (commit, rollback or drop).
pub async fn hold_row_locks(db: &PgPool, ids: &[String]) -> Transaction<'static, Postgres> {
    let mut locks = db.begin().await.expect("a transaction");
    let locked: Vec<String> =
        sqlx::query_scalar("SELECT id FROM customers WHERE id = ANY($1) FOR UPDATE")
            .bind(ids)
            .fetch_all(&mut *locks)
            .await
            .expect("lock the customers");
    assert_eq!(locked.len(), ids.len(), "every customer to lock is stored");
    locks
}

/// [`hold_row_locks`] of one customer.
pub async fn hold_row_lock(db: &PgPool, id: &str) -> Transaction<'static, Postgres> {
    hold_row_locks(db, &[id.to_owned()]).await
}

/// Polls `condition` every `interval` until it holds (`Ok`); panics with its last `Err` once
/// `limit` has passed.
pub async fn eventually(
    limit: Duration,
    interval: Duration,
    mut condition: impl AsyncFnMut() -> Result<(), String>,
) {
    let deadline = Instant::now() + limit;
    loop {
        match condition().await {
            Ok(()) => return,
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// Waits (bounded) until `n` sessions of the service on this database wait on
/// `wait_event_type` (`Lock`: a row or transaction lock; `Timeout`: `pg_sleep`).
pub async fn wait_until_blocked(db: &PgPool, wait_event_type: &str, n: i64) {
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(10),
        async || {
            let blocked: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'customers-api'
                AND wait_event_type = $1",
            )
            .bind(wait_event_type)
            .fetch_one(db)
            .await
            .expect("read pg_stat_activity");
            match blocked >= n {
                true => Ok(()),
                false => Err(format!(
                "only {blocked} of {n} requests of the service got blocked ({wait_event_type}) \
                 within 10 s"
            )),
            }
        },
    )
    .await;
}

/// The pid of the service's only idle backend on this database, once there is exactly one: a
/// pool of one connection with that connection back in it (waits up to 10 s).
pub async fn the_idle_backend(db: &PgPool) -> i32 {
    let mut pids: Vec<i32> = Vec::new();
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(20),
        async || {
            pids = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'customers-api' \
              AND datname = current_database() AND state = 'idle'",
            )
            .fetch_all(db)
            .await
            .expect("the service's backends");
            match pids.len() {
                1 => Ok(()),
                n => Err(format!(
                    "{n} idle connections of the service, not one, after 10 s"
                )),
            }
        },
    )
    .await;
    pids[0]
}

/// The pid of the backend behind `conn`.
pub async fn backend_pid(conn: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .expect("pg_backend_pid")
}
