//! Failover (issue 14): what the pool does with a connection whose server went away or turned
//! read-only, and host selection for multi-host URLs. The first tests run on the suite's test
//! database (over TCP where a URL needs a port); the ones marked `#[ignore]` need the
//! Patroni cluster of scripts/ha-drill.d/cluster (scripts/ha-drill runs them while it is up:
//! `cargo test --test api failover -- --ignored`).

use std::process::Command;
use std::time::{Duration, Instant};

use actix_web::ResponseError;
use customers_api::configuration::Secret;
use customers_api::db::{self, Hosts};
use customers_api::error::ApiError;
use customers_api::startup::Application;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

use crate::support::*;

/// Lets the pool's release tasks (spawned on drop) run.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_lost_connection_answers_503_and_no_older_connection_is_reused() {
    let options = fresh_database().await;
    let settings = test_settings();
    let pool = db::pool(options.clone(), &settings.database);
    let mut first = db::acquire(&pool).await.expect("a connection");
    let mut second = db::acquire(&pool).await.expect("a connection");
    let old = [
        backend_pid(&mut first).await,
        backend_pid(&mut second).await,
    ];

    // The server ends the first one (as a shutting-down primary does: 57P01).
    let mut admin = PgConnection::connect_with(&options).await.expect("admin");
    admin
        .execute(format!("SELECT pg_terminate_backend({})", old[0]).as_str())
        .await
        .expect("terminate");
    let error = sqlx::query("SELECT 1")
        .execute(&mut *first)
        .await
        .expect_err("a terminated connection fails");
    assert!(db::is_connection_lost(&error), "{error:?}");
    let answer = ApiError::from(error);
    assert_eq!(answer.status_code(), 503);
    assert!(answer
        .error_response()
        .headers()
        .contains_key("retry-after"));

    // Neither the failed connection nor the healthy one opened before it is handed out again.
    drop(first);
    drop(second);
    settle().await;
    let mut again = Vec::new();
    for _ in 0..2 {
        let mut conn = db::acquire(&pool).await.expect("a fresh connection");
        let pid = backend_pid(&mut conn).await;
        assert!(!old.contains(&pid), "connection {pid} was reused");
        again.push(conn);
    }
    admin.close().await.ok();
}

#[tokio::test]
async fn a_read_only_server_answers_503_and_the_connection_is_dropped() {
    let options = fresh_database().await;
    let settings = test_settings();
    let pool = db::pool(options, &settings.database);
    let mut conn = db::acquire(&pool).await.expect("a connection");
    let pid = backend_pid(&mut conn).await;
    // What a demoted primary answers: 25006.
    conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        .await
        .expect("read only");
    let error = sqlx::query("UPDATE customers SET version = version WHERE false")
        .execute(&mut *conn)
        .await
        .expect_err("a write in a read-only session fails");
    assert_eq!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("25006")
    );
    assert_eq!(ApiError::from(error).status_code(), 503);
    drop(conn);
    settle().await;
    let mut conn = db::acquire(&pool).await.expect("a fresh connection");
    assert_ne!(
        backend_pid(&mut conn).await,
        pid,
        "the read-only connection was reused"
    );
    let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(read_only, "off");
}

#[tokio::test]
async fn hosts_are_tried_in_order_and_a_dead_one_is_skipped() {
    // Port 1 refuses; the suite's PostgreSQL answers over TCP.
    let db = tcp_database().await;
    for attrs in ["", "?target_session_attrs=read-write"] {
        let mut hosts = Hosts::parse(&format!(
            "postgres://{}127.0.0.1:1,{}/{}{attrs}",
            db.user_info, db.host_port, db.database
        ))
        .expect("a multi-host URL");
        let (index, conn) = hosts.select().await.expect("the second host answers");
        assert_eq!(index, 1);
        let port: u16 = db.host_port.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(hosts.selected().get_port(), port);
        conn.close().await.ok();
    }
    let mut none = Hosts::parse("postgres://postgres@127.0.0.1:1,127.0.0.1:2/postgres").unwrap();
    assert!(none.select().await.is_none());
}

/// A stalled server (its backends stopped, as on a frozen host) never ends a statement, so
/// `statement_timeout` cannot: the request is cut off on the service's side within
/// acquire_timeout + statement_timeout, answers 503, and its connection is not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_answers_503_within_the_bound_and_its_connection_is_dropped() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let app = spawn_app_with(|s| {
        s.database.acquire_timeout = Duration::from_millis(500);
        s.database.statement_timeout = Duration::from_secs(1);
        s.database.max_connections = 1;
        // Only the GET below may take the one connection once it is stalled: a background round
        // that took it first would hold it, and the GET would time out in the pool's queue after
        // acquire_timeout alone, which is another test (faults::pool). The relay and the webhook
        // dispatcher look for work every poll_interval; the create's own wake-up is waited out
        // below.
        s.events.poll_interval = Duration::from_secs(3600);
        s.webhooks.poll_interval = Duration::from_secs(3600);
    })
    .await;
    let id = app.create_ok(json!({})).await["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    // The create's wake-up of the relay has ended and the connection is idle in the pool.
    let backend = the_idle_backend(&app.db).await;
    settle().await;
    let stalled = Pid::from_raw(backend);
    if kill(stalled, Signal::SIGSTOP).is_err() {
        println!("failover: cannot signal the test server's backends (not on this machine?)");
        return;
    }
    let started = Instant::now();
    let response = app.get(&id).await;
    let took = started.elapsed();
    kill(stalled, Signal::SIGCONT).expect("SIGCONT");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let header_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // Cut off at 1.35 s (the sum less a tenth); 0.5 s more for a busy test machine.
    assert!(
        took >= Duration::from_millis(1300) && took < Duration::from_millis(2000),
        "answered after {took:?}; acquire_timeout + statement_timeout is 1.5 s"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "service_unavailable");
    assert_eq!(
        body["error"]["requestId"], header_id,
        "the answer carries its request id"
    );
    // Served again at once, on a new connection.
    let response = app.get(&id).await;
    assert_eq!(response.status(), 200);
    let now: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'customers-api' \
          AND datname = current_database()",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(!now.contains(&backend), "the stalled connection was reused");
    println!("failover/stalled: 503 after {} ms", took.as_millis());
}

#[test]
fn a_bad_host_list_is_refused_by_name_without_the_password() {
    let mut settings = test_settings();
    settings.database.url = Secret::new("postgres://app:hunter2@10.0.0.1:5432,10.0.0.2:x/db");
    let e = settings.validate().expect_err("a bad port").to_string();
    assert!(e.contains("database.url (DATABASE_URL)"), "{e}");
    assert!(e.contains("host 2"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    settings.database.url = Secret::new(
        "postgres://app:hunter2@10.0.0.1:5432,10.0.0.2/db?target_session_attrs=read-write",
    );
    settings.validate().expect("a valid multi-host URL");
}

// ---------------------------------------------------------------------------------------------
// On the Patroni cluster
// ---------------------------------------------------------------------------------------------

const CLUSTER_PORTS: [u16; 3] = [5441, 5442, 5443];

fn cluster_url(database: &str, attrs: &str) -> String {
    let hosts: Vec<String> = CLUSTER_PORTS
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    format!(
        "postgres://postgres:postgres@{}/{database}{attrs}",
        hosts.join(",")
    )
}

async fn primary_port() -> u16 {
    for port in CLUSTER_PORTS {
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        if let Ok(mut conn) = PgConnection::connect(&url).await {
            let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                .fetch_one(&mut conn)
                .await
                .unwrap_or(true);
            conn.close().await.ok();
            if !standby {
                return port;
            }
        }
    }
    panic!("the cluster has no primary (is scripts/ha-drill.d/cluster up?)");
}

fn ha_script() -> String {
    std::env::var("HA_SCRIPT").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ha-drill.d/cluster").to_owned()
    })
}

#[tokio::test]
#[ignore = "needs the Patroni cluster of scripts/ha-drill.d/cluster"]
async fn on_the_cluster_the_read_write_host_is_selected() {
    let primary = primary_port().await;
    let mut hosts = Hosts::parse(&cluster_url("postgres", "?target_session_attrs=read-write"))
        .expect("the cluster URL");
    let (_, conn) = hosts.select().await.expect("a primary");
    assert_eq!(hosts.selected().get_port(), primary);
    conn.close().await.ok();
    // `any` takes the first host that answers, primary or not.
    let mut any = Hosts::parse(&cluster_url("postgres", "")).unwrap();
    let (index, conn) = any.select().await.expect("a host");
    assert_eq!(index, 0);
    conn.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Patroni cluster of scripts/ha-drill.d/cluster"]
async fn on_the_cluster_the_service_follows_a_switchover_by_itself() {
    let database = format!("customers_failover_{}", std::process::id());
    let mut admin = PgConnection::connect("postgres://postgres@127.0.0.1:5440/postgres")
        .await
        .expect("the cluster's proxy");
    admin
        .execute(format!("CREATE DATABASE {database}").as_str())
        .await
        .expect("create database");
    let mut settings = test_settings();
    settings.database.url = Secret::new(cluster_url(&database, "?target_session_attrs=read-write"));
    settings.database.migrate_on_start = true;
    let app = Application::build(settings)
        .await
        .expect("the service starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let token = token(ORG, "test", ADMIN);
    let created: serde_json::Value = client
        .post(format!("{base}/v1/customers"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("created").to_owned();
    let before = primary_port().await;

    let switched = tokio::task::spawn_blocking(|| {
        Command::new(ha_script())
            .arg("switchover")
            .output()
            .expect("scripts/ha-drill.d/cluster switchover")
    })
    .await
    .unwrap();
    assert!(
        switched.status.success(),
        "{}",
        String::from_utf8_lossy(&switched.stdout)
    );
    let after = primary_port().await;
    assert_ne!(before, after, "the primary moved");

    // Writes reach the new primary within a few seconds, and only 200 or 503 meanwhile.
    let started = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let response = client
            .patch(format!("{base}/v1/customers/{id}"))
            .bearer_auth(&token)
            .header("content-type", "application/merge-patch+json")
            .header("idempotency-key", format!("switch-{n}"))
            .body(json!({"metadata": {"n": n.to_string()}}).to_string())
            .send()
            .await
            .expect("an answer");
        match response.status().as_u16() {
            200 => break,
            503 => {}
            other => panic!(
                "{other} after a switchover: {}",
                response.text().await.unwrap()
            ),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no write succeeded within 10 s of the switchover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    println!(
        "failover/switchover: primary {before} -> {after}; first write after the switchover \
         returned {} ms after it ({n} attempts)",
        started.elapsed().as_millis()
    );
    admin
        .execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str())
        .await
        .ok();
}
