//! A request cut off by its deadline (`db::deadline`): when it was merely slow (several
//! statements, each within `statement_timeout`) only its own connection is closed and the
//! other pooled connections stay in use; when the server itself stopped answering (every
//! process of a private PostgreSQL stopped with SIGSTOP) every pooled connection is condemned.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::Method;
use serde_json::json;

use super::{service_backends, until_waiting};
use crate::support::*;

/// Several statements, each within statement_timeout, longer together than the bound: reads of
/// this tenant sleep 0.7 s per row (a restrictive policy on both tables), and a customer's
/// history is two statements (its existence, its events) of one row each.
const SLOW_ORG: &str = "org_slow";

/// The service runs as a process of its own here: a lost connection condemns the pooled
/// connections of the whole process, and other tests in this one lose connections on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merely_slow_request_cut_by_its_deadline_takes_only_its_own_connection() {
    let (db, url) = fresh_database_for_binaries().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let env = [
        ("CUSTOMERS_API__DATABASE__MAX_CONNECTIONS", "4"),
        ("CUSTOMERS_API__DATABASE__ACQUIRE_TIMEOUT", "200ms"),
        ("CUSTOMERS_API__DATABASE__STATEMENT_TIMEOUT", "1s"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let mut service = Service::start_with_env(dir.path(), &url, "deadline-slow", &env);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    service.wait_ready(&client).await;
    let admin = token(ORG, "test", ADMIN);
    let slow_token = token(SLOW_ORG, "test", ADMIN);
    let call = |method: Method, path: &str, token: &str| {
        client.request(method, service.url(path)).bearer_auth(token)
    };
    let slow = send(call(Method::POST, "/v1/customers", &slow_token).json(&json!({})))
        .await
        .id();
    let busy = send(call(Method::POST, "/v1/customers", &admin).json(&json!({})))
        .await
        .id();

    // Three pooled connections: three PATCHes held on a row lock, then let go.
    let mut lock = db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE")
        .bind(&busy)
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..3 {
        let request = call(Method::PATCH, &format!("/v1/customers/{busy}"), &admin)
            .json(&json!({"metadata": {"n": n}}));
        tasks.push(tokio::spawn(async move { send(request).await }));
    }
    until_waiting(&db, "Lock", 3).await;
    lock.rollback().await.unwrap();
    for task in tasks {
        assert_eq!(task.await.unwrap().status, 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = service_backends(&db).await;
    assert!(before.len() >= 3, "three pooled connections: {before:?}");

    sqlx::raw_sql(
        "CREATE FUNCTION slow_for_test(org text) RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
             IF org = 'org_slow' THEN PERFORM pg_sleep(0.7); END IF;
             RETURN true;
         END $$;
         CREATE POLICY slow_reads ON customers AS RESTRICTIVE FOR SELECT TO customers_app
             USING (slow_for_test(org_id));
         CREATE POLICY slow_reads ON customer_events AS RESTRICTIVE FOR SELECT TO customers_app
             USING (slow_for_test(org_id));",
    )
    .execute(&db)
    .await
    .unwrap();
    // Bound: (0.2 s + 1 s) less a tenth = 1.08 s; the two statements take 1.4 s.
    let request = call(
        Method::GET,
        &format!("/v1/customers/{slow}/events"),
        &slow_token,
    );
    let started = Instant::now();
    let cut = tokio::spawn(async move { send(request).await });
    let sleeping = until_waiting(&db, "PgSleep", 1).await;
    let reply = cut.await.unwrap();
    let took = started.elapsed();
    reply.error(503, "service_unavailable");
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(1500),
        "cut after {took:?}"
    );
    let cut_backend = sleeping[0];
    assert!(before.contains(&cut_backend), "a pooled connection was cut");

    // The service goes on with the connections it had (each checked out again: a condemned
    // one would be closed and replaced now), and the cut one is gone.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..8 {
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let request = call(Method::GET, &format!("/v1/customers/{busy}"), &admin);
            tasks.push(tokio::spawn(async move { send(request).await }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().status, 200);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = service_backends(&db).await;
    assert!(
        !after.contains(&cut_backend),
        "the cut connection was closed"
    );
    for kept in before.iter().filter(|pid| **pid != cut_backend) {
        assert!(
            after.contains(kept),
            "pooled connection {kept} was retired with the cut one: before {before:?}, after {after:?}\n{}",
            service.log()
        );
    }
    println!(
        "deadline/slow: cut after {} ms; kept {} of {} connections",
        took.as_millis(),
        before.len() - 1,
        before.len()
    );
}

/// Every process of a PostgreSQL server (the postmaster and its children).
fn server_processes(any_backend: i32) -> Vec<Pid> {
    let parent_of = |pid: &str| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split(' ').nth(1)?.parse().ok()
    };
    let postmaster = parent_of(&any_backend.to_string()).expect("the backend's parent");
    let mut processes = vec![Pid::from_raw(postmaster)];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<i32>().is_ok() && parent_of(&name) == Some(postmaster) {
            processes.push(Pid::from_raw(name.parse().unwrap()));
        }
    }
    processes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_still_condemns_every_pooled_connection() {
    let server = tokio::task::spawn_blocking(ScratchPostgres::start)
        .await
        .unwrap();
    let options = server.create_database("frozen").await;
    let settings = test_settings_with(|s| {
        s.rate_limit.enabled = false;
        s.database.max_connections = 4;
        s.database.acquire_timeout = Duration::from_millis(500);
        s.database.statement_timeout = Duration::from_secs(1);
    });
    let app = spawn_app_on(options, settings).await;
    let id = app.create_id(json!({})).await;
    // Three pooled connections, as above.
    let mut lock = app.db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE")
        .bind(&id)
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..3 {
        let request = app
            .request(Method::PATCH, &format!("/v1/customers/{id}"))
            .json(&json!({"metadata": {"n": n}}));
        tasks.push(tokio::spawn(async move { send(request).await }));
    }
    until_waiting(&app.db, "Lock", 3).await;
    lock.rollback().await.unwrap();
    for task in tasks {
        assert_eq!(task.await.unwrap().status, 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = service_backends(&app.db).await;
    assert!(before.len() >= 3, "three pooled connections: {before:?}");

    let processes = server_processes(before[0]);
    if kill(processes[0], Signal::SIGSTOP).is_err() {
        println!("deadline/frozen: cannot signal the scratch server (not on this machine?)");
        return;
    }
    for pid in &processes[1..] {
        let _ = kill(*pid, Signal::SIGSTOP);
    }
    let started = Instant::now();
    let reply = try_send(app.request(Method::GET, &format!("/v1/customers/{id}"))).await;
    let took = started.elapsed();
    // The probe (1 s) finds no answer either.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for pid in &processes {
        let _ = kill(*pid, Signal::SIGCONT);
    }
    let reply = reply.expect("an answer");
    reply.error(503, "service_unavailable");
    assert!(took < Duration::from_secs(3), "cut after {took:?}");

    // Served again, and every connection from before the freeze was retired.
    for _ in 0..6 {
        let reply = send(app.request(Method::GET, &format!("/v1/customers/{id}"))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = service_backends(&app.db).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for old in &before {
        assert!(
            !after.contains(old),
            "connection {old} from before the freeze is still pooled: after {after:?}"
        );
    }
    app.db.close().await;
    drop(server);
}
