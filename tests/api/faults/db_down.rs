//! PostgreSQL stopped under a load of writes and started again: every answer meanwhile is a 2xx
//! or a proper 503, liveness stays up and readiness says "not ready", the service recovers by
//! itself, and every acknowledged write is stored.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::RequestBuilder;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::*;

const LOAD_TASKS: usize = 8;

/// What one load task sent and what it was told.
#[derive(Default)]
struct LoadLog {
    customer: String,
    /// Each PATCH's value of `metadata.n`, with the version answered if it was acknowledged.
    patches: Vec<(String, Option<i64>)>,
    /// Each create's email, with the id answered if it was acknowledged.
    creates: Vec<(String, Option<String>)>,
    slowest: Duration,
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
struct LoadCounters {
    requests: AtomicUsize,
    acknowledged: AtomicUsize,
    unavailable: AtomicUsize,
    /// PostgreSQL has been restarted.
    back: AtomicBool,
    /// Per task: an acknowledged write since PostgreSQL came back.
    recovered: [AtomicBool; LOAD_TASKS],
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
async fn check_acknowledged_writes(db: &mut PgConnection, logs: &[LoadLog]) -> (usize, usize) {
    let mut patches_checked = 0;
    let mut creates_checked = 0;
    for (task, log) in logs.iter().enumerate() {
        patches_checked += check_patches(db, task, log).await;
        creates_checked += check_creates(db, task, log).await;
    }
    (patches_checked, creates_checked)
}

/// The load against `app`, one task per customer.
struct Load {
    counters: Arc<LoadCounters>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<LoadLog>>,
}

impl Load {
    fn start(app: &TestApp, customers: &[String], token: &str) -> Self {
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

    fn count(&self, counter: impl Fn(&LoadCounters) -> &AtomicUsize) -> usize {
        counter(&self.counters).load(Ordering::Relaxed)
    }

    async fn wait_for_acknowledged(&self, what: &str, n: usize) {
        wait_for(what, Duration::from_secs(30), || {
            self.count(|c| &c.acknowledged) >= n
        })
        .await;
    }

    /// Stops the load; every answer must have been a 2xx or a proper 503.
    async fn stop(self) -> Vec<LoadLog> {
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

/// While PostgreSQL is down (for 3 s), the operational endpoints must say "alive, not ready".
/// Returns how many times /readyz was checked and the slowest /healthz.
async fn check_probes_while_down(app: &TestApp, client: &reqwest::Client) -> (usize, Duration) {
    let down_at = Instant::now();
    let mut readyz_checks = 0;
    let mut slowest_healthz = Duration::ZERO;
    while down_at.elapsed() < Duration::from_secs(3) {
        let readyz = try_send(client.get(app.url("/readyz")))
            .await
            .expect("/readyz answers while PostgreSQL is down");
        readyz
            .check_unavailable()
            .unwrap_or_else(|e| panic!("/readyz while PostgreSQL is down: {e}"));
        let started = Instant::now();
        let healthz = try_send(client.get(app.url("/healthz")))
            .await
            .expect("/healthz answers while PostgreSQL is down");
        assert_eq!(healthz.status, 200, "/healthz: {}", healthz.text());
        slowest_healthz = slowest_healthz.max(started.elapsed());
        readyz_checks += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (readyz_checks, slowest_healthz)
}

/// After PostgreSQL is back, GETs until one is served (each answer before must be a proper
/// 503); it must take less than 5 s from `back_at`. Returns how many probes it took.
async fn wait_until_served(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    customer: &str,
    back_at: Instant,
) -> usize {
    let mut probes = 0;
    loop {
        probes += 1;
        let reply = try_send(
            client
                .get(app.url(&format!("/v1/customers/{customer}")))
                .bearer_auth(token),
        )
        .await
        .expect("a GET answers after PostgreSQL is back");
        if reply.status == 200 {
            return probes;
        }
        reply
            .check_unavailable()
            .unwrap_or_else(|e| panic!("after PostgreSQL is back: {e}"));
        assert!(
            back_at.elapsed() < Duration::from_secs(5),
            "the service did not recover within 5 s of PostgreSQL being back ({probes} probes)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// /readyz must say 200 again within 5 s of PostgreSQL being back.
async fn wait_until_ready(app: &TestApp, client: &reqwest::Client, back_at: Instant) {
    loop {
        let readyz = try_send(client.get(app.url("/readyz")))
            .await
            .expect("/readyz answers");
        if readyz.status == 200 {
            return;
        }
        assert!(
            back_at.elapsed() < Duration::from_secs(5),
            "/readyz still {} 5 s after PostgreSQL came back",
            readyz.status
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A scratch PostgreSQL with a migrated database and a server on it that gives up waiting for
/// a connection after 2 s; `None` where no PostgreSQL may be started (only `DATABASE_URL`).
async fn app_on_scratch_postgres() -> Option<(ScratchPostgres, PgConnectOptions, TestApp)> {
    if let Err(e) = find_postgres_programs() {
        // This test needs a PostgreSQL it may stop; with only DATABASE_URL there is none.
        if uses_database_url() {
            println!("faults: the PostgreSQL-down test needs the server programs: {e}");
            return None;
        }
        panic!("{e}");
    }
    let pg = tokio::task::spawn_blocking(ScratchPostgres::start)
        .await
        .expect("the start-up task");
    let db_options = pg.create_database("faults").await;
    let app = spawn_app_on(
        db_options.clone(),
        test_settings_with(|s| {
            s.database.acquire_timeout = Duration::from_secs(2);
            s.rate_limit.enabled = false;
        }),
    )
    .await;
    Some((pg, db_options, app))
}

/// What the outage showed.
struct Outage {
    requests: usize,
    readyz_checks: usize,
    slowest_healthz: Duration,
}

/// Stops PostgreSQL in the middle of the load for 3 s: the load must run into refusals, and
/// /healthz must stay fast.
async fn outage(
    pg: ScratchPostgres,
    app: &TestApp,
    client: &reqwest::Client,
    load: &Load,
) -> (ScratchPostgres, Outage) {
    let pg = tokio::task::spawn_blocking(move || {
        let mut pg = pg;
        pg.stop();
        pg
    })
    .await
    .expect("the stop task");
    let refused_before = load.count(|c| &c.unavailable);
    let requests_before = load.count(|c| &c.requests);
    let (readyz_checks, slowest_healthz) = check_probes_while_down(app, client).await;
    let requests = load.count(|c| &c.requests) - requests_before;
    let refused_down = load.count(|c| &c.unavailable) - refused_before;
    assert!(
        refused_down >= LOAD_TASKS,
        "the load kept running into the outage ({refused_down} refusals in {requests} \
         requests)"
    );
    assert!(
        slowest_healthz < Duration::from_secs(1),
        "/healthz took {slowest_healthz:?} while PostgreSQL was down"
    );
    let outage = Outage {
        requests,
        readyz_checks,
        slowest_healthz,
    };
    (pg, outage)
}

/// How the service came back.
struct Recovery {
    postgres_restart: Duration,
    service: Duration,
    probes: usize,
    every_task: Duration,
}

/// Starts PostgreSQL again: the service must notice by itself, with no restart and no help,
/// serve again within 5 s, every load task included, and get 80 more writes acknowledged.
async fn recovery(
    mut pg: ScratchPostgres,
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    customer: &str,
    load: &Load,
) -> (ScratchPostgres, Recovery) {
    let restarting = Instant::now();
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .expect("the restart task");
    let postgres_restart = restarting.elapsed();
    load.counters.back.store(true, Ordering::Relaxed);
    let back_at = Instant::now();
    let probes = wait_until_served(app, client, token, customer, back_at).await;
    let service = back_at.elapsed();
    wait_for(
        "every load task got a write acknowledged again",
        Duration::from_secs(5).saturating_sub(back_at.elapsed()),
        || {
            load.counters
                .recovered
                .iter()
                .all(|r| r.load(Ordering::Relaxed))
        },
    )
    .await;
    let every_task = back_at.elapsed();
    // More acknowledged writes after the restart, to be checked with the rest.
    let acknowledged_at_recovery = load.count(|c| &c.acknowledged);
    load.wait_for_acknowledged(
        "the load got 80 more writes acknowledged after the restart",
        acknowledged_at_recovery + 80,
    )
    .await;
    wait_until_ready(app, client, back_at).await;
    let recovery = Recovery {
        postgres_restart,
        service,
        probes,
        every_task,
    };
    (pg, recovery)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_under_load_answers_503_recovers_by_itself_and_loses_no_acknowledged_write() {
    let Some((pg, db_options, app)) = app_on_scratch_postgres().await else {
        return;
    };
    let token = token(ORG, "test", ADMIN);
    let client = client();
    let mut customers = Vec::new();
    for _ in 0..LOAD_TASKS {
        customers.push(app.create_id(json!({"metadata": {"n": "start"}})).await);
    }
    let load = Load::start(&app, &customers, &token);
    load.wait_for_acknowledged("the load got 80 writes acknowledged", 80)
        .await;
    let (pg, down) = outage(pg, &app, &client, &load).await;
    let (pg, back) = recovery(pg, &app, &client, &token, &customers[0], &load).await;

    let counters = load.counters.clone();
    let logs = load.stop().await;
    // Refusing takes at most the acquire timeout (2 s), plus time to answer on a busy machine.
    let slowest = logs.iter().map(|l| l.slowest).max().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(4),
        "an answer under the fault took {slowest:?}"
    );

    let mut db = PgConnection::connect_with(&db_options)
        .await
        .expect("connect to the restarted PostgreSQL");
    let (patches_checked, creates_checked) = check_acknowledged_writes(&mut db, &logs).await;
    db.close().await.ok();
    tokio::task::spawn_blocking(move || drop(pg))
        .await
        .expect("the stop task");

    println!(
        "faults/postgres-down: {} requests ({} during the 3 s outage), {} answered 503 \
         service_unavailable, {} acknowledged writes checked ({} PATCHes by version and last \
         value of {} customers, {} creates one by one); slowest answer {} ms; /readyz 503 on {} \
         checks, slowest /healthz {} ms; PostgreSQL restart {} ms, service recovered {} ms after \
         it ({} probes), every load task {} ms",
        counters.requests.load(Ordering::Relaxed),
        down.requests,
        counters.unavailable.load(Ordering::Relaxed),
        patches_checked + creates_checked,
        patches_checked,
        logs.len(),
        creates_checked,
        slowest.as_millis(),
        down.readyz_checks,
        down.slowest_healthz.as_millis(),
        back.postgres_restart.as_millis(),
        back.service.as_millis(),
        back.probes,
        back.every_task.as_millis(),
    );
}
