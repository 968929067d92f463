//! Contract §9: the binary itself — its own PostgreSQL when DATABASE_URL is unset, restart
//! durability, configuration errors, graceful shutdown.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_customers-api");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The binary with a clean environment: nothing of the caller's configuration leaks in.
fn command(dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

async fn wait_ready(client: &reqwest::Client, port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the service exited early with {status}");
        }
        let ready = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false);
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM sent");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_database_url_it_runs_its_own_postgres_and_keeps_data_across_restarts() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // The unprivileged PostgreSQL account must be able to enter it when we run as root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let client = reqwest::Client::new();
    let token = token(ORG, "test", ADMIN);

    let port = free_port();
    let mut child = command(dir.path(), port)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_ready(&client, port, &mut child).await;
    let created: serde_json::Value = client
        .post(format!("http://127.0.0.1:{port}/v1/customers"))
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
        terminate(&mut child).success(),
        "a clean exit after SIGTERM"
    );
    assert!(
        dir.path().join(".data/postgres/PG_VERSION").exists(),
        "the data lives under .data/postgres"
    );

    let port = free_port();
    let mut child = command(dir.path(), port)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_ready(&client, port, &mut child).await;
    let response = client
        .get(format!("http://127.0.0.1:{port}/v1/customers/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let fetched: serde_json::Value = response.json().await.unwrap();
    assert_eq!(fetched, created);
    assert!(terminate(&mut child).success());
    // Its PostgreSQL is stopped with it.
    let pid_file = dir.path().join(".data/postgres/postmaster.pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!pid_file.exists(), "the private PostgreSQL was stopped");
}

#[test]
fn a_bad_setting_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path(), 8080)
        .env("PORT", "not-a-port")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.port"), "{stderr}");

    let out = command(dir.path(), 8080)
        .env("CUSTOMERS_API__IDEMPOTENCY__WAIT", "0s")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("idempotency.wait"), "{stderr}");
}

#[test]
fn the_production_profile_refuses_the_development_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path(), 8080)
        .env("APP_ENV", "production")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
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
    let ring = customers_api::auth::KeyRing::from_settings(&test_settings().auth).unwrap();
    let claims = ring.verify(token.trim()).expect("the token verifies");
    assert_eq!(claims.org, "org_cli");
    assert_eq!(claims.mode, customers_api::auth::Mode::Live);
    assert_eq!(claims.scope, "customers:read");
}

/// SIGTERM while a request is in flight: it completes, new connections are refused, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish() {
    let app = spawn_app().await; // only for its database and a customer in it
    let id = app.create_ok(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = database_url(&app.db_options);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let client = reqwest::Client::new();
    let mut child = command(dir.path(), port)
        .env("DATABASE_URL", &url)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_ready(&client, port, &mut child).await;

    // Make the PATCH slow: hold the customer's row lock from a transaction of our own.
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE")
        .bind(&id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = format!("http://127.0.0.1:{port}/v1/customers/{id}");
        async move {
            client
                .patch(url)
                .bearer_auth(token(ORG, "test", ADMIN))
                .json(&json!({"metadata": {"during": "shutdown"}}))
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // No new connections once stopping.
    let refused = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
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
    let status = tokio::task::spawn_blocking(move || terminate_wait(&mut child))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        app.get_json(&id).await["metadata"],
        json!({"during": "shutdown"})
    );
}

fn terminate_wait(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the service did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A URL for the child process: TCP when the harness has one, the Unix socket otherwise.
fn database_url(options: &sqlx::postgres::PgConnectOptions) -> String {
    let db = options.get_database().expect("a database name");
    match options.get_socket() {
        Some(socket) => format!(
            "postgres://postgres@localhost/{db}?host={}",
            socket.display()
        ),
        None => format!(
            "postgres://{}@{}:{}/{db}",
            options.get_username(),
            options.get_host(),
            options.get_port()
        ),
    }
}

/// JSON logs, one line per request with id, tenant, route, status and latency; and a create
/// with an email, phone and name leaves none of them in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_without_personal_data() {
    let app = spawn_app().await; // for its database
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("service.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = free_port();
    let client = reqwest::Client::new();
    let mut child = command(dir.path(), port)
        .env("DATABASE_URL", database_url(&app.db_options))
        .env("CUSTOMERS_API__LOG__FORMAT", "json")
        .env("RUST_LOG", "debug")
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_ready(&client, port, &mut child).await;
    let token = token(ORG, "test", ADMIN);
    let secret_bits = [
        "zelda.private@example.com",
        "+14155550199",
        "Zeldaina",
        "Quixotella",
    ];
    let response = client
        .post(format!("http://127.0.0.1:{port}/v1/customers"))
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
        .post(format!("http://127.0.0.1:{port}/v1/customers"))
        .bearer_auth(&token)
        .json(&json!({"email": "not an email zelda.private", "phone": "+0zelda"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let status = tokio::task::spawn_blocking(move || terminate(&mut child))
        .await
        .unwrap();
    assert!(status.success());

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
