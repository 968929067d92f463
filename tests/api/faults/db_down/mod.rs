//! PostgreSQL stopped under a load of writes and started again: every answer meanwhile is a 2xx
//! or a proper 503, liveness stays up and readiness says "not ready", the service recovers by
//! itself, and every acknowledged write is stored.

mod load;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::*;
use load::{check_acknowledged_writes, Load, LOAD_TASKS};

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
