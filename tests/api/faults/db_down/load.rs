//! The load of the PostgreSQL-down test: one task per customer writing PATCHes and creates,
//! each logging what it sent and what it was told, and the check of every acknowledged write
//! against the database afterwards.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::RequestBuilder;
use serde_json::json;
use sqlx::PgConnection;

use super::super::*;

/// Load tasks, one per customer.
pub(super) const LOAD_TASKS: usize = 8;

/// What one load task sent and what it was told.
#[derive(Default)]
pub(super) struct LoadLog {
    customer: String,
    /// Each PATCH's value of `metadata.n`, with the version answered if it was acknowledged.
    patches: Vec<(String, Option<i64>)>,
    /// Each create's email, with the id answered if it was acknowledged.
    creates: Vec<(String, Option<String>)>,
    pub(super) slowest: Duration,
    violations: Vec<String>,
}

impl LoadLog {
    /// A write that was not acknowledged.
    fn unacknowledged(&mut self, is_patch: bool, value: String) {
        if is_patch {
            self.patches.push((value, None));
        } else {
            self.creates.push((value, None));
        }
    }
}

#[derive(Default)]
pub(super) struct LoadCounters {
    pub(super) requests: AtomicUsize,
    pub(super) acknowledged: AtomicUsize,
    pub(super) unavailable: AtomicUsize,
    /// PostgreSQL has been restarted.
    pub(super) back: AtomicBool,
    /// Per task: an acknowledged write since PostgreSQL came back.
    pub(super) recovered: [AtomicBool; LOAD_TASKS],
}

/// The `seq`th write of a load task: PATCHes and creates alternately. Returns the request, the
/// value it writes (`metadata.n` or the email) and whether it is a PATCH.
fn load_request(
    client: &reqwest::Client,
    task: usize,
    seq: u64,
    base: &str,
    customer: &str,
) -> (RequestBuilder, String, bool) {
    if seq % 2 == 1 {
        let value = format!("t{task}-{seq}");
        let request = client
            .patch(format!("{base}/v1/customers/{customer}"))
            .header("content-type", "application/merge-patch+json")
            .body(json!({"metadata": {"n": value}}).to_string());
        (request, value, true)
    } else {
        let email = format!("t{task}-{seq}@faults.example");
        let request = client
            .post(format!("{base}/v1/customers"))
            .json(&json!({"email": email, "metadata": {"task": format!("t{task}")}}));
        (request, email, false)
    }
}

/// Records an answer of the load; returns whether the write was acknowledged. A 2xx must carry
/// what was written (and a PATCH a version above the last one); anything else must be a proper
/// 503.
fn record_answer(
    log: &mut LoadLog,
    last_version: &mut i64,
    is_patch: bool,
    value: String,
    reply: &Reply,
) -> bool {
    match (is_patch, reply.status) {
        (true, 200) => {
            let version = reply.version();
            let stored_n = reply.json()["metadata"]["n"].clone();
            if stored_n != json!(value) {
                log.violations
                    .push(format!("{value}: 200 with metadata.n {stored_n}"));
            }
            match version {
                Some(v) if v > *last_version => *last_version = v,
                other => log.violations.push(format!(
                    "{value}: 200 with ETag version {other:?}, not above {last_version}"
                )),
            }
            log.patches.push((value, version));
            true
        }
        (false, 201) => {
            let body = reply.json();
            if body["email"] != json!(value) {
                log.violations
                    .push(format!("{value}: 201 with email {}", body["email"]));
            }
            log.creates.push((value, Some(reply.id())));
            true
        }
        (_, 503) => {
            if let Err(e) = reply.check_unavailable() {
                log.violations.push(format!("{value}: {e}"));
            }
            log.unacknowledged(is_patch, value);
            false
        }
        (_, status) => {
            log.violations
                .push(format!("{value}: {status} {}", reply.text()));
            log.unacknowledged(is_patch, value);
            false
        }
    }
}

/// PATCHes and creates, alternately, until told to stop; every answer must be a 2xx or a
/// proper 503, and every 2xx is recorded as a write that must be stored.
async fn load_task(
    task: usize,
    customer: String,
    base: String,
    token: String,
    counters: Arc<LoadCounters>,
    stop: Arc<AtomicBool>,
) -> LoadLog {
    let client = client();
    let mut log = LoadLog {
        customer: customer.clone(),
        ..LoadLog::default()
    };
    let mut last_version = 1;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let (request, value, is_patch) = load_request(&client, task, seq, &base, &customer);
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let answer = try_send(request.bearer_auth(&token)).await;
        log.slowest = log.slowest.max(started.elapsed());
        let reply = match answer {
            Ok(reply) => reply,
            Err(e) => {
                log.violations.push(format!(
                    "{value}: no answer after {:?}: {e}",
                    started.elapsed()
                ));
                log.unacknowledged(is_patch, value);
                // A hung or vanished server: more requests would only repeat this.
                break;
            }
        };
        if record_answer(&mut log, &mut last_version, is_patch, value, &reply) {
            counters.acknowledged.fetch_add(1, Ordering::Relaxed);
            if counters.back.load(Ordering::Relaxed) {
                counters.recovered[task].store(true, Ordering::Relaxed);
            }
        } else {
            counters.unavailable.fetch_add(1, Ordering::Relaxed);
            // Refusals are immediate while the database is gone; a short pause keeps the
            // outage from being a busy loop that starves the rest of a 2-core machine.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    log
}

/// Checks one task's customer against its acknowledged PATCHes; returns how many it checked.
async fn check_patches(db: &mut PgConnection, task: usize, log: &LoadLog) -> usize {
    let (version, n): (i64, Option<String>) =
        sqlx::query_as("SELECT version, metadata->>'n' FROM customers WHERE id = $1")
            .bind(&log.customer)
            .fetch_one(&mut *db)
            .await
            .expect("the load's customer is stored");
    let acknowledged = log.patches.iter().filter(|(_, v)| v.is_some()).count();
    let last_ack = log.patches.iter().rposition(|(_, v)| v.is_some());
    let (ack_version, ack_value, unacknowledged_after) = match last_ack {
        Some(i) => (
            log.patches[i].1.expect("acknowledged"),
            log.patches[i].0.clone(),
            &log.patches[i + 1..],
        ),
        None => (1, "start".to_owned(), &log.patches[..]),
    };
    let changes = version - 1;
    assert!(
        changes >= acknowledged as i64 && changes <= log.patches.len() as i64,
        "task {task}: {changes} stored changes for {acknowledged} acknowledged and {} sent \
         PATCHes",
        log.patches.len()
    );
    assert!(
        version >= ack_version,
        "task {task}: stored version {version} is below the acknowledged {ack_version}: an \
         acknowledged PATCH was lost"
    );
    if version == ack_version {
        assert_eq!(
            n.as_deref(),
            Some(ack_value.as_str()),
            "task {task}: the last acknowledged value is not the stored one"
        );
    } else {
        // A PATCH refused with 503 may still have committed (the answer, not the write, was
        // lost); only such a PATCH, sent after the last acknowledged one, may be on top.
        assert!(
            version - ack_version <= unacknowledged_after.len() as i64
                && unacknowledged_after
                    .iter()
                    .any(|(value, _)| Some(value) == n.as_ref()),
            "task {task}: stored {n:?} at version {version}, but the last acknowledged PATCH \
             was {ack_value} at {ack_version}"
        );
    }
    acknowledged
}

/// Checks that every acknowledged create of one task is stored; returns how many it checked.
async fn check_creates(db: &mut PgConnection, task: usize, log: &LoadLog) -> usize {
    let mut checked = 0;
    for (email, id) in &log.creates {
        let Some(id) = id else { continue };
        let stored: Option<String> =
            sqlx::query_scalar("SELECT email FROM customers WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *db)
                .await
                .expect("read a created customer");
        assert_eq!(
            stored.as_ref(),
            Some(email),
            "task {task}: the acknowledged create {id} ({email}) is not stored"
        );
        checked += 1;
    }
    let stored_creates: i64 =
        sqlx::query_scalar("SELECT count(*) FROM customers WHERE metadata->>'task' = $1")
            .bind(format!("t{task}"))
            .fetch_one(&mut *db)
            .await
            .expect("count the task's creates");
    let acknowledged = log.creates.iter().filter(|(_, id)| id.is_some()).count() as i64;
    assert!(
        stored_creates >= acknowledged && stored_creates <= log.creates.len() as i64,
        "task {task}: {stored_creates} customers stored for {acknowledged} acknowledged and {} \
         sent creates",
        log.creates.len()
    );
    checked
}

/// Checks the stored state against what the load was told; returns (acknowledged PATCHes,
/// acknowledged creates) checked.
pub(super) async fn check_acknowledged_writes(
    db: &mut PgConnection,
    logs: &[LoadLog],
) -> (usize, usize) {
    let mut patches_checked = 0;
    let mut creates_checked = 0;
    for (task, log) in logs.iter().enumerate() {
        patches_checked += check_patches(db, task, log).await;
        creates_checked += check_creates(db, task, log).await;
    }
    (patches_checked, creates_checked)
}

/// The load against `app`, one task per customer.
pub(super) struct Load {
    pub(super) counters: Arc<LoadCounters>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<LoadLog>>,
}

impl Load {
    pub(super) fn start(app: &TestApp, customers: &[String], token: &str) -> Self {
        let counters = Arc::new(LoadCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = customers
            .iter()
            .enumerate()
            .map(|(task, customer)| {
                tokio::spawn(load_task(
                    task,
                    customer.clone(),
                    app.address.clone(),
                    token.to_owned(),
                    counters.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Load {
            counters,
            stop,
            tasks,
        }
    }

    pub(super) fn count(&self, counter: impl Fn(&LoadCounters) -> &AtomicUsize) -> usize {
        counter(&self.counters).load(Ordering::Relaxed)
    }

    pub(super) async fn wait_for_acknowledged(&self, what: &str, n: usize) {
        wait_for(what, Duration::from_secs(30), || {
            self.count(|c| &c.acknowledged) >= n
        })
        .await;
    }

    /// Stops the load; every answer must have been a 2xx or a proper 503.
    pub(super) async fn stop(self) -> Vec<LoadLog> {
        self.stop.store(true, Ordering::Relaxed);
        let mut logs = Vec::new();
        for task in self.tasks {
            logs.push(task.await.expect("a load task"));
        }
        let violations: Vec<&String> = logs.iter().flat_map(|l| &l.violations).collect();
        assert!(
            violations.is_empty(),
            "{} answers broke the rules (2xx, or 503 service_unavailable with Retry-After), e.g.:\n{}",
            violations.len(),
            violations
                .iter()
                .take(10)
                .map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        logs
    }
}
