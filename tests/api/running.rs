//! The binary itself: its own PostgreSQL when DATABASE_URL is unset, restart durability,
//! configuration errors, the token command, graceful shutdown, and its logs.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::*;

/// The binary on a free port in `dir`, output discarded, with `configure` applied to its
/// command; not yet ready.
fn spawn_in(dir: &std::path::Path, configure: impl FnOnce(&mut std::process::Command)) -> Service {
    let port = free_port();
    let mut cmd = command(dir, port);
    cmd.stdout(Stdio::null());
    configure(&mut cmd);
    Service::spawn(cmd, port, None)
}

/// Runs the binary to its end with `configure` applied; it must fail, and its stderr is
/// returned.
fn failing_start(configure: impl FnOnce(&mut std::process::Command)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path(), 8080);
    configure(&mut cmd);
    let out = cmd.output().expect("run");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_database_url_it_runs_its_own_postgres_and_keeps_data_across_restarts() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // The unprivileged PostgreSQL account must be able to enter it when we run as root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let client = reqwest::Client::new();
    let token = token(ORG, "test", ADMIN);

    let mut service = spawn_in(dir.path(), |_| {});
    service.wait_ready(&client).await;
    let created: serde_json::Value = client
        .post(service.url("/v1/customers"))
        .bearer_auth(&token)
        .json(&json!({"email": "durable@example.com", "policy": {"limits": {"perDay": 100}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("created").to_owned();
    assert!(
        service.terminate().await.success(),
        "a clean exit after SIGTERM"
    );
    assert!(
        dir.path().join(".data/postgres/PG_VERSION").exists(),
        "the data lives under .data/postgres"
    );

    let mut service = spawn_in(dir.path(), |_| {});
    service.wait_ready(&client).await;
    let response = client
        .get(service.url(&format!("/v1/customers/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let fetched: serde_json::Value = response.json().await.unwrap();
    assert_eq!(fetched, created);
    assert!(service.terminate().await.success());
    // Its PostgreSQL is stopped with it.
    let pid_file = dir.path().join(".data/postgres/postmaster.pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_file.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!pid_file.exists(), "the private PostgreSQL was stopped");
}

#[test]
fn a_bad_setting_stops_start_up_naming_it() {
    let stderr = failing_start(|cmd| {
        cmd.env("PORT", "not-a-port");
    });
    assert!(stderr.contains("server.port"), "{stderr}");
    let stderr = failing_start(|cmd| {
        cmd.env("CUSTOMERS_API__IDEMPOTENCY__WAIT", "0s");
    });
    assert!(stderr.contains("idempotency.wait"), "{stderr}");
    let stderr = failing_start(|cmd| {
        cmd.env("CUSTOMERS_API__EVENTS__STREAM_REPLICAS", "6");
    });
    assert!(stderr.contains("events.stream_replicas"), "{stderr}");
}

#[test]
fn the_production_profile_refuses_the_development_key() {
    let stderr = failing_start(|cmd| {
        cmd.env("APP_ENV", "production");
    });
    assert!(
        stderr.contains("auth.keys") && stderr.contains("development"),
        "{stderr}"
    );
}

#[test]
fn the_token_command_mints_a_verifiable_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path(), 8080)
        .args([
            "token",
            "--org",
            "org_cli",
            "--mode",
            "live",
            "--scope",
            "customers:read",
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let (org, mode, scope) = verify(token.trim());
    assert_eq!(org, "org_cli");
    assert_eq!(mode, "live");
    assert_eq!(scope, "customers:read");
}

/// SIGTERM while a request is in flight: it completes, new connections are refused, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish() {
    a_signal_lets_the_request_in_flight_finish(Signal::SIGTERM).await;
}

/// The same for SIGINT (Ctrl-C), which actix alone would answer with an immediate stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_lets_the_request_in_flight_finish() {
    a_signal_lets_the_request_in_flight_finish(Signal::SIGINT).await;
}

/// A customer in a test database, and the binary serving that database (ready), with `env`
/// set; the directory it runs in lives as long as the returned guard.
async fn binary_with_a_customer(
    env: &[(&str, &str)],
) -> (TestApp, String, Service, tempfile::TempDir) {
    let app = spawn_app().await; // only for its database and a customer in it
    let id = app.create_id(json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(&app.db_options);
    let mut service = spawn_in(dir.path(), |cmd| {
        cmd.env("DATABASE_URL", &url).envs(env.iter().copied());
    });
    service.wait_ready(&reqwest::Client::new()).await;
    (app, id, service, dir)
}

async fn a_signal_lets_the_request_in_flight_finish(signal: Signal) {
    let (app, id, mut service, _dir) = binary_with_a_customer(&[]).await;
    let client = reqwest::Client::new();

    // Make the PATCH slow: hold the customer's row lock from a transaction of our own.
    let tx = hold_row_lock(&app.db, &id).await;
    let in_flight = tokio::spawn(
        client
            .patch(service.url(&format!("/v1/customers/{id}")))
            .bearer_auth(token(ORG, "test", ADMIN))
            .json(&json!({"metadata": {"during": "shutdown"}}))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    service.signal(signal);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // No new connections once stopping.
    let refused = reqwest::Client::new()
        .get(service.url("/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a new connection was served during shutdown"
    );
    tx.rollback().await.unwrap();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request was answered");
    assert_eq!(response.status(), 200);
    let status = service.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        app.get_json(&id).await["metadata"],
        json!({"during": "shutdown"})
    );
}

/// JSON logs, one line per request with id, tenant, route, status and latency; and a create
/// with an email, phone and name leaves none of them in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_without_personal_data() {
    let app = spawn_app().await; // for its database
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("service.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let client = reqwest::Client::new();
    let url = database_url(&app.db_options);
    let mut service = spawn_in(dir.path(), |cmd| {
        cmd.env("DATABASE_URL", &url)
            .env("CUSTOMERS_API__LOG__FORMAT", "json")
            .env("RUST_LOG", "debug")
            .stdout(log)
            .stderr(Stdio::null());
    });
    service.wait_ready(&client).await;
    let token = token(ORG, "test", ADMIN);
    let secret_bits = [
        "zelda.private@example.com",
        "+14155550199",
        "Zeldaina",
        "Quixotella",
    ];
    let response = client
        .post(service.url("/v1/customers"))
        .bearer_auth(&token)
        .header("X-Request-Id", "log-test-1")
        .json(&json!({
            "email": secret_bits[0], "phone": secret_bits[1],
            "name": {"first": secret_bits[2], "last": secret_bits[3]}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // A failing one too: validation messages must not echo values either.
    let response = client
        .post(service.url("/v1/customers"))
        .bearer_auth(&token)
        .json(&json!({"email": "not an email zelda.private", "phone": "+0zelda"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(service.terminate().await.success());

    let text = std::fs::read_to_string(&log_path).unwrap();
    for bit in secret_bits
        .iter()
        .chain(["zelda.private", "+0zelda"].iter())
    {
        assert!(!text.contains(bit), "the log contains {bit}");
    }
    assert!(!text.contains(&token), "the log contains the token");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let request_line = lines
        .iter()
        .find(|l| l["request_id"] == "log-test-1")
        .expect("one line for the request");
    assert_eq!(request_line["route"], "/v1/customers");
    assert_eq!(request_line["method"], "POST");
    assert_eq!(request_line["status"], 201);
    assert_eq!(request_line["tenant"], "org_a/test");
    assert!(request_line["latency_ms"].is_string() || request_line["latency_ms"].is_number());
}

/// Files in the configuration directory lie over the compiled-in ones in order — defaults,
/// directory defaults, profile, directory profile — so a `config/default.toml` beside the binary
/// does not undo the production profile (here: its JSON logs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_default_does_not_undo_the_profile() {
    let app = spawn_app().await; // for its database
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("default.toml"), "[log]\nformat = \"text\"\n").unwrap();
    std::fs::write(
        config.join("production.toml"),
        "[auth]\nsigning_kid = \"prod\"\n\n[[auth.keys]]\nkid = \"prod\"\nalg = \"HS256\"\n\
         secret = \"a-production-secret-of-thirty-two-bytes\"\n\n\
         [pagination]\ncursor_secret = \"a-production-cursor-secret-of-32-bytes\"\n\n\
         [webhooks]\nsecrets_key = \"a-production-webhooks-key-of-32-bytes+\"\n",
    )
    .unwrap();
    let log_path = dir.path().join("service.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let url = database_url(&app.db_options);
    let mut service = spawn_in(dir.path(), |cmd| {
        cmd.env("DATABASE_URL", &url)
            .env("APP_ENV", "production")
            .env("HOST", "127.0.0.1")
            .stdout(log);
    });
    service.wait_ready(&reqwest::Client::new()).await;
    assert!(service.terminate().await.success());
    let text = std::fs::read_to_string(&log_path).unwrap();
    let first = text.lines().next().expect("a log line");
    let line: serde_json::Value = serde_json::from_str(first)
        .unwrap_or_else(|e| panic!("the production profile logs JSON ({e}): {first}"));
    assert!(line["timestamp"].is_string());
}

/// With `server.drain_delay`, a stop signal first makes `/readyz` answer 503 (draining) while
/// every route is still served, on new connections too, so that a load balancer takes the
/// instance out of rotation before its listener closes; then the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_signal_first_drains_readyz_while_every_route_is_served() {
    let (app, id, mut service, _dir) =
        binary_with_a_customer(&[("CUSTOMERS_API__SERVER__DRAIN_DELAY", "4s")]).await;
    let client = reqwest::Client::new();
    let ready = client.get(service.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "ready before the signal");

    service.signal(Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = reqwest::Client::new(); // new connections, not the pooled ones
    let ready = fresh.get(service.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "draining");
    assert_eq!(ready.headers()["retry-after"], "1");
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["error"]["code"], "service_unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("draining"),
        "{body}"
    );
    let patched = fresh
        .patch(service.url(&format!("/v1/customers/{id}")))
        .bearer_auth(token(ORG, "test", ADMIN))
        .json(&json!({"metadata": {"during": "drain"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200, "served during the drain delay");

    let status = service.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        app.get_json(&id).await["metadata"],
        json!({"during": "drain"})
    );
}

/// The service's connections to its database (the pool's and the monitor's), by backend pid,
/// with when each was opened.
async fn service_backends(db: &sqlx::PgPool) -> Vec<(i32, chrono::DateTime<chrono::Utc>)> {
    sqlx::query_as(
        "SELECT pid, backend_start FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'customers-api'",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

/// A request in flight at SIGTERM finishes with its normal answer even when the pooled
/// connection it holds was opened by a request on another HTTP worker, one with no connection
/// left, which stops at once (issue 21: 503 for the request in flight, in 2 of 5 rolling
/// restarts). Each actix worker runs a runtime of its own and a socket belongs to the runtime
/// it was opened on: the connections are opened on the service's own runtime instead
/// (`db::deadline::home`).
///
/// Made deterministic: one pooled connection, two workers (a listener hands connections to them
/// in turn). The service's backends are ended, so that the next request opens the pool's
/// connection: a GET on a connection of its own (worker A), then closed; the PATCH comes on the
/// next connection (worker B), is held by a row lock, and is in flight at SIGTERM while worker
/// A, idle, stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_at_sigterm_keeps_a_connection_another_worker_opened() {
    let (app, id, mut service, _dir) = binary_with_a_customer(&[
        ("CUSTOMERS_API__SERVER__WORKERS", "2"),
        ("CUSTOMERS_API__DATABASE__MAX_CONNECTIONS", "1"),
        // The background tasks (on the service's runtime) seldom take the one connection, so
        // that a request opens it.
        ("CUSTOMERS_API__WEBHOOKS__POLL_INTERVAL", "1h"),
        ("CUSTOMERS_API__IDEMPOTENCY__SWEEP_INTERVAL", "1h"),
    ])
    .await;
    let other = app.create_id(json!({})).await;
    let other_url = service.url(&format!("/v1/customers/{other}"));
    let get_other = |client: &reqwest::Client| {
        client
            .get(&other_url)
            .bearer_auth(token(ORG, "test", ADMIN))
            .send()
    };
    let mut attempt = 0;
    let (tx, in_flight) = loop {
        attempt += 1;
        assert!(
            attempt <= 5,
            "the pool's connection was never opened by a request"
        );
        for (pid, _) in service_backends(&app.db).await {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&app.db)
                .await
                .unwrap();
        }
        // The monitor notices within its heartbeat and condemns the pool's connection.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let before: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&app.db)
            .await
            .unwrap();
        let opener = reqwest::Client::new();
        let opened = get_other(&opener).await.unwrap().status();
        drop(opener); // its connection closes: worker A has none left
        if opened != 200 {
            continue;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let tx = hold_row_lock(&app.db, &id).await;
        let patch = tokio::spawn(
            reqwest::Client::new()
                .patch(service.url(&format!("/v1/customers/{id}")))
                .bearer_auth(token(ORG, "test", ADMIN))
                .json(&json!({"metadata": {"during": "shutdown"}}))
                .send(),
        );
        // The PATCH waits for the lock on the pool's one connection: was it the GET's?
        let mut waiting = None;
        for _ in 0..50 {
            waiting = sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
                "SELECT backend_start FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'customers-api' AND wait_event_type = 'Lock'",
            )
            .fetch_optional(&app.db)
            .await
            .unwrap();
            if waiting.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let opened_at = waiting.expect("the PATCH waits for the row lock");
        if opened_at > before {
            break (tx, patch);
        }
        // A background task opened it first: once more.
        tx.rollback().await.unwrap();
        assert_eq!(patch.await.unwrap().unwrap().status(), 200);
    };

    service.sigterm();
    // Worker A stops at once; the PATCH is still waiting for the lock.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    tx.rollback().await.unwrap();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request was answered");
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "the request in flight at SIGTERM: {body}");
    let status = service.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        app.get_json(&id).await["metadata"],
        json!({"during": "shutdown"})
    );
}
