//! Pool exhaustion and slow statements: requests beyond the pool are refused with 503 after the
//! acquire timeout, statements blocked past the statement timeout are ended with 503, liveness
//! does not depend on the pool, and nothing refused is written.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::*;

const ACQUIRE: Duration = Duration::from_millis(500);
const STATEMENT: Duration = Duration::from_secs(2);

/// Requests that time themselves.
#[derive(Clone)]
struct Timed {
    client: reqwest::Client,
    token: String,
    base: String,
}

/// Sends the request; returns the reply and how long it took.
async fn timed(request: RequestBuilder) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = try_send(request)
        .await
        .expect("an answer within the client timeout");
    (reply, started.elapsed())
}

impl Timed {
    fn patch(
        &self,
        id: &str,
        body: Value,
        key: Option<&str>,
    ) -> impl Future<Output = (Reply, Duration)> + Send + 'static {
        let mut request = self
            .client
            .patch(format!("{}/v1/customers/{id}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string());
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        timed(request)
    }

    fn get(&self, id: &str) -> impl Future<Output = (Reply, Duration)> + Send + 'static {
        timed(
            self.client
                .get(format!("{}/v1/customers/{id}", self.base))
                .bearer_auth(&self.token),
        )
    }
}

/// More requests than the pool, while both pooled connections are taken: none may queue past
/// the acquire timeout, and liveness answers meanwhile. Returns their times and the slowest
/// /healthz.
async fn starve(app: &TestApp, timed: &Timed, id: &str) -> (Vec<Duration>, Duration) {
    let mut starved = Vec::new();
    for i in 0..6 {
        starved.push(tokio::spawn(timed.patch(
            id,
            json!({"metadata": {"starved": i.to_string()}}),
            None,
        )));
    }
    for _ in 0..2 {
        starved.push(tokio::spawn(timed.get(id)));
    }
    // Liveness does not depend on the pool.
    let mut slowest_healthz = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let healthz = try_send(timed.client.get(app.url("/healthz")))
            .await
            .expect("/healthz answers");
        assert_eq!(healthz.status, 200);
        slowest_healthz = slowest_healthz.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let starved_times = refused_within(
        starved,
        "a request that found the pool exhausted",
        ACQUIRE.mul_f64(0.8)..ACQUIRE + Duration::from_millis(1500),
        format!("the acquire timeout is {ACQUIRE:?}"),
    )
    .await;
    // Well below the waits for the database, so it was not queued behind them.
    assert!(
        slowest_healthz < Duration::from_secs(1),
        "/healthz took {slowest_healthz:?} with the pool exhausted"
    );
    (starved_times, slowest_healthz)
}

/// Each request was refused with a proper 503 within `bounds` (`bound` says which setting
/// makes them); returns their times.
async fn refused_within(
    tasks: Vec<JoinHandle<(Reply, Duration)>>,
    what: &str,
    bounds: std::ops::Range<Duration>,
    bound: String,
) -> Vec<Duration> {
    let mut times = Vec::new();
    for task in tasks {
        let (reply, elapsed) = task.await.expect("a request task");
        reply
            .check_unavailable()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            bounds.contains(&elapsed),
            "{what} answered after {elapsed:?}; {bound}"
        );
        times.push(elapsed);
    }
    times
}

/// Released: the failed keyed PATCH runs on retry (its key stayed free), and the service serves
/// normally, pool-sized bursts included.
async fn check_released(app: &TestApp, timed: &Timed, ids: &[String]) {
    let (retry, _) = timed
        .patch(
            &ids[1],
            json!({"metadata": {"slow": "2"}}),
            Some("slow-key"),
        )
        .await;
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert!(!retry.replayed(), "the key was free, so the retry ran");
    assert_eq!(retry.version(), Some(2));
    let burst = futures_util::future::join_all([
        timed.patch(&ids[0], json!({"metadata": {"after": "a"}}), None),
        timed.patch(&ids[2], json!({"metadata": {"after": "b"}}), None),
    ])
    .await;
    for (reply, _) in &burst {
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.version(), Some(2));
    }
    let readyz = try_send(timed.client.get(app.url("/readyz")))
        .await
        .expect("/readyz");
    assert_eq!(readyz.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_and_slow_statements_answer_503_in_bounded_time() {
    let app = spawn_app_with(|s| {
        s.database.max_connections = 2;
        s.database.acquire_timeout = ACQUIRE;
        s.database.statement_timeout = STATEMENT;
        s.rate_limit.enabled = false;
    })
    .await;
    let timed = Timed {
        client: client(),
        token: token(ORG, "test", ADMIN),
        base: app.address.clone(),
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.create_id(json!({})).await);
    }

    // The test's own transaction holds the customers' rows, so PATCHes block on them.
    let locks = hold_row_locks(&app.db, &ids).await;
    // Two PATCHes (one keyed) take both pooled connections and wait on the locks.
    let slow = vec![
        tokio::spawn(timed.patch(&ids[0], json!({"metadata": {"slow": "1"}}), None)),
        tokio::spawn(timed.patch(
            &ids[1],
            json!({"metadata": {"slow": "2"}}),
            Some("slow-key"),
        )),
    ];
    wait_until_blocked(&app.db, "Lock", 2).await;
    let (starved_times, slowest_healthz) = starve(&app, &timed, &ids[2]).await;
    // The statement timeout ends the blocked PATCHes: 503, not an endless wait.
    let slow_times = refused_within(
        slow,
        "a PATCH blocked on a row lock past the statement timeout",
        STATEMENT.mul_f64(0.9)..STATEMENT + Duration::from_secs(2),
        format!("the statement timeout is {STATEMENT:?}"),
    )
    .await;
    locks.rollback().await.expect("release the locks");

    // Nothing refused was written, and the failed keyed PATCH left its key free (a 5xx stores
    // nothing).
    for id in &ids {
        assert_eq!(
            app.stored_version(id).await,
            1,
            "a refused PATCH wrote {id}"
        );
    }
    assert_eq!(
        key_rows(&app.db).await,
        0,
        "a 503 stored its idempotency key"
    );
    check_released(&app, &timed, &ids).await;

    let max = |times: &[Duration]| times.iter().max().copied().unwrap_or_default().as_millis();
    let min = |times: &[Duration]| times.iter().min().copied().unwrap_or_default().as_millis();
    println!(
        "faults/pool: pool 2, acquire {} ms, statement {} ms; {} requests beyond the pool got 503 \
         in {}-{} ms; {} PATCHes blocked on row locks got 503 in {}-{} ms; slowest /healthz \
         meanwhile {} ms; after release 3 PATCHes 200",
        ACQUIRE.as_millis(),
        STATEMENT.as_millis(),
        starved_times.len(),
        min(&starved_times),
        max(&starved_times),
        slow_times.len(),
        min(&slow_times),
        max(&slow_times),
        slowest_healthz.as_millis(),
    );
}
