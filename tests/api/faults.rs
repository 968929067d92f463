//! Faults (issue 6): PostgreSQL going away under load, pool exhaustion and slow queries, a
//! server killed with SIGKILL under idempotent writes, and three server processes on one
//! database. Every test talks to real servers over HTTP and to a real PostgreSQL, checks what
//! is stored afterwards, and prints its figures (run with `--nocapture` to see them).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use customers_api::private_postgres::{Durability, PrivatePostgres};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_customers-api");

/// Every request of these tests must be answered within this bound: a fault may make the
/// service refuse, never hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Helpers of this file
// ---------------------------------------------------------------------------------------------

/// A response read to the end, so that replays can be compared byte for byte.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    /// Fallible: a server killed mid-answer leaves a response without its body.
    async fn read(response: Response) -> Result<Self, reqwest::Error> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn id(&self) -> String {
        self.json()["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {}", self.text()))
            .to_owned()
    }

    /// The version in the strong ETag `"<version>"`.
    fn version(&self) -> Option<i64> {
        self.header("etag")?
            .strip_prefix('"')?
            .strip_suffix('"')?
            .parse()
            .ok()
    }

    fn error_code(&self) -> Option<String> {
        let body: Value = serde_json::from_slice(&self.body).ok()?;
        body["error"]["code"].as_str().map(str::to_owned)
    }

    /// Contract §6: 503 `service_unavailable` in the JSON envelope, with `Retry-After`.
    fn check_unavailable(&self) -> Result<(), String> {
        if self.status != 503 {
            return Err(format!(
                "expected 503, got {}: {}",
                self.status,
                self.text()
            ));
        }
        if self.error_code().as_deref() != Some("service_unavailable") {
            return Err(format!("503 without service_unavailable: {}", self.text()));
        }
        let retry_after = self.header("retry-after").map(str::trim);
        if !retry_after.is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)) {
            return Err(format!(
                "503 without a usable Retry-After (got {retry_after:?})"
            ));
        }
        if !self.headers.contains_key("x-request-id") {
            return Err("503 without X-Request-Id".into());
        }
        Ok(())
    }
}

async fn send(request: RequestBuilder) -> Result<Reply, reqwest::Error> {
    Reply::read(request.send().await?).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("a client")
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after `limit`.
async fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (bounded) until `n` sessions of the service on this database wait for a lock.
async fn wait_until_blocked_on_lock(db: &PgPool, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let blocked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'customers-api'
                AND wait_event_type = 'Lock'",
        )
        .fetch_one(db)
        .await
        .expect("read pg_stat_activity");
        if blocked >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {blocked} of {n} requests got blocked on the row locks within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A PostgreSQL of this test's own, in a temp dir, that the test stops and starts again. It is
/// stopped when dropped (before its directory goes), so a failing test leaves no server behind.
struct ScratchPostgres {
    server: Option<PrivatePostgres>,
    data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl ScratchPostgres {
    /// Blocking (initdb, pg_ctl -w): call it from `spawn_blocking`.
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        // As root, PostgreSQL runs as an unprivileged account, which must be able to enter it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("open the temp dir to the PostgreSQL account");
        let data_dir = dir.path().join("postgres");
        let server = PrivatePostgres::start(&data_dir, Durability::Ephemeral)
            .expect("a private PostgreSQL starts");
        ScratchPostgres {
            server: Some(server),
            data_dir,
            _dir: dir,
        }
    }

    fn options(&self) -> PgConnectOptions {
        self.server
            .as_ref()
            .expect("the scratch PostgreSQL is running")
            .connect_options()
    }

    /// Blocking: a fast shutdown, which ends every session of the service.
    fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }

    /// Blocking: starts it again on the same data.
    fn restart(&mut self) {
        assert!(self.server.is_none(), "restart of a running server");
        self.server = Some(
            PrivatePostgres::start(&self.data_dir, Durability::Ephemeral)
                .expect("the private PostgreSQL starts again"),
        );
    }

    /// Creates a migrated database on this server.
    async fn create_database(&self, name: &str) -> PgConnectOptions {
        let admin_options = self.options();
        let mut admin = PgConnection::connect_with(&admin_options)
            .await
            .expect("connect to the scratch PostgreSQL");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create the database");
        admin.close().await.ok();
        let options = admin_options.database(name);
        // The migrator itself, as the harness does: it runs as the owner of the schema.
        let mut conn = PgConnection::connect_with(&options)
            .await
            .expect("connect to the new database");
        customers_api::db::MIGRATOR
            .run(&mut conn)
            .await
            .expect("the migrations apply");
        conn.close().await.ok();
        options
    }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A URL for the binary's `DATABASE_URL` naming the database of `options`.
fn database_url(options: &PgConnectOptions) -> String {
    let database = options.get_database().expect("a database name");
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let mut url = reqwest::Url::parse(&url).expect("DATABASE_URL is a URL");
            url.set_path(&format!("/{database}"));
            url.to_string()
        }
        _ => {
            // The private test server listens on a Unix socket only.
            let socket = options
                .get_socket()
                .expect("the private server's socket directory");
            let mut url = reqwest::Url::parse(&format!(
                "postgres://{}@localhost:{}/{database}",
                options.get_username(),
                options.get_port()
            ))
            .expect("a URL");
            url.query_pairs_mut()
                .append_pair("host", &socket.to_string_lossy());
            url.to_string()
        }
    }
}

/// The real binary; killed when dropped so that a failing test leaves nothing running.
struct Service {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Service {
    fn start(dir: &Path, database_url: &str, name: &str) -> Self {
        let port = free_port();
        // With the rest of the run's logs, which are scanned for personal data and tokens.
        let logs = test_log_dir();
        std::fs::create_dir_all(&logs).expect("create the test log directory");
        let log = logs.join(format!("faults-{name}-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("a log file");
        let child = Command::new(BIN)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", database_url)
            .env("CUSTOMERS_API__DATABASE__MIGRATE_ON_START", "false")
            .env("CUSTOMERS_API__SERVER__WORKERS", "2")
            // Not under test here, and a burst of retries must not turn into 429s.
            .env("CUSTOMERS_API__RATE_LIMIT__ENABLED", "false")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            // The service logs to stdout; both streams go to the scanned file.
            .stdout(
                log_file
                    .try_clone()
                    .expect("a second handle on the log file"),
            )
            .stderr(log_file)
            .spawn()
            .expect("spawn the service");
        Service { child, port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the service exited early with {status}: {}", self.log());
            }
            let ready = client
                .get(self.url("/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not become ready: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn sigkill(&mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL).expect("SIGKILL sent");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the service") {
                assert!(!status.success(), "killed, not exited: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "the service survived SIGKILL");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A keyed write as a client would keep it to retry: everything needed to send it again.
#[derive(Debug, Clone)]
struct KeyedWrite {
    key: String,
    method: Method,
    path: String,
    body: String,
}

impl KeyedWrite {
    fn request(&self, client: &reqwest::Client, base: &str, token: &str) -> RequestBuilder {
        let content_type = if self.method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        client
            .request(self.method.clone(), format!("{base}{}", self.path))
            .bearer_auth(token)
            .header("idempotency-key", &self.key)
            .header("content-type", content_type)
            .body(self.body.clone())
    }

    /// Sends it until it is settled: a 409 `idempotency_request_in_progress` means another
    /// attempt with the key still runs, so retry, but only for `limit` — a key that stays
    /// "in progress" longer is stuck. Returns the settled reply and how many 409s it took.
    async fn settle(
        &self,
        client: &reqwest::Client,
        base: &str,
        token: &str,
        limit: Duration,
    ) -> (Reply, usize) {
        let deadline = Instant::now() + limit;
        let mut in_progress = 0;
        loop {
            let reply = send(self.request(client, base, token))
                .await
                .unwrap_or_else(|e| panic!("{} {}: no answer: {e}", self.method, self.key));
            if reply.status != 409
                || reply.error_code().as_deref() != Some("idempotency_request_in_progress")
            {
                return (reply, in_progress);
            }
            assert!(
                reply.header("retry-after").is_some(),
                "409 in progress without Retry-After"
            );
            in_progress += 1;
            assert!(
                Instant::now() < deadline,
                "key {} is stuck: still in progress after {limit:?}",
                self.key
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL down under load
// ---------------------------------------------------------------------------------------------

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
        let is_patch = seq % 2 == 1;
        let (request, value) = if is_patch {
            let value = format!("t{task}-{seq}");
            let request = client
                .patch(format!("{base}/v1/customers/{customer}"))
                .header("content-type", "application/merge-patch+json")
                .body(json!({"metadata": {"n": value}}).to_string());
            (request, value)
        } else {
            let email = format!("t{task}-{seq}@faults.example");
            let request = client
                .post(format!("{base}/v1/customers"))
                .json(&json!({"email": email, "metadata": {"task": format!("t{task}")}}));
            (request, email)
        };
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let answer = send(request.bearer_auth(&token)).await;
        log.slowest = log.slowest.max(started.elapsed());
        let reply = match answer {
            Ok(reply) => reply,
            Err(e) => {
                log.violations.push(format!(
                    "{value}: no answer after {:?}: {e}",
                    started.elapsed()
                ));
                if is_patch {
                    log.patches.push((value, None));
                } else {
                    log.creates.push((value, None));
                }
                // A hung or vanished server: more requests would only repeat this.
                break;
            }
        };
        let acknowledged = match (is_patch, reply.status) {
            (true, 200) => {
                let version = reply.version();
                let stored_n = reply.json()["metadata"]["n"].clone();
                if stored_n != json!(value) {
                    log.violations
                        .push(format!("{value}: 200 with metadata.n {stored_n}"));
                }
                match version {
                    Some(v) if v > last_version => last_version = v,
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
                if is_patch {
                    log.patches.push((value, None));
                } else {
                    log.creates.push((value, None));
                }
                false
            }
            (_, status) => {
                log.violations
                    .push(format!("{value}: {status} {}", reply.text()));
                if is_patch {
                    log.patches.push((value, None));
                } else {
                    log.creates.push((value, None));
                }
                false
            }
        };
        if acknowledged {
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

/// Checks the stored state against what the load was told; returns (acknowledged PATCHes,
/// acknowledged creates) checked.
async fn check_acknowledged_writes(db: &mut PgConnection, logs: &[LoadLog]) -> (usize, usize) {
    let mut patches_checked = 0;
    let mut creates_checked = 0;
    for (task, log) in logs.iter().enumerate() {
        let (version, n): (i64, Option<String>) =
            sqlx::query_as("SELECT version, metadata->>'n' FROM customers WHERE id = $1")
                .bind(&log.customer)
                .fetch_one(&mut *db)
                .await
                .expect("the load's customer is stored");
        let acknowledged = log.patches.iter().filter(|(_, v)| v.is_some()).count();
        patches_checked += acknowledged;
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
            creates_checked += 1;
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
    }
    (patches_checked, creates_checked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_under_load_answers_503_recovers_by_itself_and_loses_no_acknowledged_write() {
    if let Err(e) = customers_api::private_postgres::find_bin_dir() {
        // This test needs a PostgreSQL it may stop; with only DATABASE_URL there is none.
        if std::env::var("DATABASE_URL").is_ok_and(|url| !url.is_empty()) {
            println!("faults: the PostgreSQL-down test needs the server programs: {e:#}");
            return;
        }
        panic!("{e:#}");
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
    let token = token(ORG, "test", ADMIN);
    let client = client();
    let mut customers = Vec::new();
    for _ in 0..LOAD_TASKS {
        let created = app.create_ok(json!({"metadata": {"n": "start"}})).await;
        customers.push(created["id"].as_str().expect("an id").to_owned());
    }

    let counters = Arc::new(LoadCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = customers
        .iter()
        .enumerate()
        .map(|(task, customer)| {
            tokio::spawn(load_task(
                task,
                customer.clone(),
                app.address.clone(),
                token.clone(),
                counters.clone(),
                stop.clone(),
            ))
        })
        .collect();
    wait_for(
        "the load got 80 writes acknowledged",
        Duration::from_secs(30),
        || counters.acknowledged.load(Ordering::Relaxed) >= 80,
    )
    .await;

    // Down, in the middle of the load.
    let mut pg = tokio::task::spawn_blocking(move || {
        let mut pg = pg;
        pg.stop();
        pg
    })
    .await
    .expect("the stop task");
    let down_at = Instant::now();
    let refused_before = counters.unavailable.load(Ordering::Relaxed);
    let requests_before = counters.requests.load(Ordering::Relaxed);
    let mut readyz_checks = 0;
    let mut slowest_healthz = Duration::ZERO;
    // The outage lasts a fixed time under load; meanwhile the operational endpoints must say
    // "alive, not ready".
    while down_at.elapsed() < Duration::from_secs(3) {
        let readyz = send(client.get(app.url("/readyz")))
            .await
            .expect("/readyz answers while PostgreSQL is down");
        readyz
            .check_unavailable()
            .unwrap_or_else(|e| panic!("/readyz while PostgreSQL is down: {e}"));
        let started = Instant::now();
        let healthz = send(client.get(app.url("/healthz")))
            .await
            .expect("/healthz answers while PostgreSQL is down");
        assert_eq!(healthz.status, 200, "/healthz: {}", healthz.text());
        slowest_healthz = slowest_healthz.max(started.elapsed());
        readyz_checks += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let requests_down = counters.requests.load(Ordering::Relaxed) - requests_before;
    let refused_down = counters.unavailable.load(Ordering::Relaxed) - refused_before;
    assert!(
        refused_down >= LOAD_TASKS,
        "the load kept running into the outage ({refused_down} refusals in {requests_down} \
         requests)"
    );
    assert!(
        slowest_healthz < Duration::from_secs(1),
        "/healthz took {slowest_healthz:?} while PostgreSQL was down"
    );

    // Back: the service must notice by itself, with no restart and no help.
    let restarting = Instant::now();
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .expect("the restart task");
    let postgres_restart = restarting.elapsed();
    counters.back.store(true, Ordering::Relaxed);
    let back_at = Instant::now();
    let mut probes = 0;
    loop {
        probes += 1;
        let reply = send(
            client
                .get(app.url(&format!("/v1/customers/{}", customers[0])))
                .bearer_auth(&token),
        )
        .await
        .expect("a GET answers after PostgreSQL is back");
        if reply.status == 200 {
            break;
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
    let recovery = back_at.elapsed();
    wait_for(
        "every load task got a write acknowledged again",
        Duration::from_secs(5).saturating_sub(back_at.elapsed()),
        || counters.recovered.iter().all(|r| r.load(Ordering::Relaxed)),
    )
    .await;
    let load_recovery = back_at.elapsed();
    // More acknowledged writes after the restart, to be checked with the rest.
    let acknowledged_at_recovery = counters.acknowledged.load(Ordering::Relaxed);
    wait_for(
        "the load got 80 more writes acknowledged after the restart",
        Duration::from_secs(30),
        || counters.acknowledged.load(Ordering::Relaxed) >= acknowledged_at_recovery + 80,
    )
    .await;
    loop {
        let readyz = send(client.get(app.url("/readyz")))
            .await
            .expect("/readyz answers");
        if readyz.status == 200 {
            break;
        }
        assert!(
            back_at.elapsed() < Duration::from_secs(5),
            "/readyz still {} 5 s after PostgreSQL came back",
            readyz.status
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for task in load {
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
        requests_down,
        counters.unavailable.load(Ordering::Relaxed),
        patches_checked + creates_checked,
        patches_checked,
        logs.len(),
        creates_checked,
        slowest.as_millis(),
        readyz_checks,
        slowest_healthz.as_millis(),
        postgres_restart.as_millis(),
        recovery.as_millis(),
        probes,
        load_recovery.as_millis(),
    );
}

/// `test_settings()` with changes.
fn test_settings_with(
    configure: impl FnOnce(&mut customers_api::configuration::Settings),
) -> customers_api::configuration::Settings {
    let mut settings = test_settings();
    configure(&mut settings);
    settings
}

// ---------------------------------------------------------------------------------------------
// Pool exhaustion and slow queries
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_and_slow_statements_answer_503_in_bounded_time() {
    const ACQUIRE: Duration = Duration::from_millis(500);
    const STATEMENT: Duration = Duration::from_secs(2);
    let app = spawn_app_with(|s| {
        s.database.max_connections = 2;
        s.database.acquire_timeout = ACQUIRE;
        s.database.statement_timeout = STATEMENT;
        s.rate_limit.enabled = false;
    })
    .await;
    let token = token(ORG, "test", ADMIN);
    let client = client();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            app.create_ok(json!({})).await["id"]
                .as_str()
                .expect("an id")
                .to_owned(),
        );
    }
    let base = app.address.clone();
    let patch = {
        let (client, token, base) = (client.clone(), token.clone(), base.clone());
        move |id: &str, body: Value, key: Option<&str>| {
            let mut request = client
                .patch(format!("{base}/v1/customers/{id}"))
                .bearer_auth(&token)
                .header("content-type", "application/merge-patch+json")
                .body(body.to_string());
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            async move {
                let started = Instant::now();
                let reply = send(request)
                    .await
                    .expect("an answer within the client timeout");
                (reply, started.elapsed())
            }
        }
    };

    // The test's own transaction holds the customers' rows, so PATCHes block on them.
    let mut locks = app.db.begin().await.expect("a transaction");
    sqlx::query("SELECT id FROM customers WHERE id = ANY($1) FOR UPDATE")
        .bind(&ids)
        .fetch_all(&mut *locks)
        .await
        .expect("lock the customers");

    // Two PATCHes (one keyed) take both pooled connections and wait on the locks.
    let slow = [
        tokio::spawn(patch(&ids[0], json!({"metadata": {"slow": "1"}}), None)),
        tokio::spawn(patch(
            &ids[1],
            json!({"metadata": {"slow": "2"}}),
            Some("slow-key"),
        )),
    ];
    wait_until_blocked_on_lock(&app.db, 2).await;

    // More requests than the pool: they must not queue past the acquire timeout.
    let mut starved = Vec::new();
    for i in 0..6 {
        starved.push(tokio::spawn(patch(
            &ids[2],
            json!({"metadata": {"starved": i.to_string()}}),
            None,
        )));
    }
    for _ in 0..2 {
        let request = client
            .get(format!("{base}/v1/customers/{}", ids[2]))
            .bearer_auth(&token);
        starved.push(tokio::spawn(async move {
            let started = Instant::now();
            let reply = send(request)
                .await
                .expect("an answer within the client timeout");
            (reply, started.elapsed())
        }));
    }
    // Liveness does not depend on the pool.
    let mut slowest_healthz = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let healthz = send(client.get(app.url("/healthz")))
            .await
            .expect("/healthz answers");
        assert_eq!(healthz.status, 200);
        slowest_healthz = slowest_healthz.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut starved_times = Vec::new();
    for task in starved {
        let (reply, elapsed) = task.await.expect("a request task");
        reply
            .check_unavailable()
            .unwrap_or_else(|e| panic!("a request that found the pool exhausted: {e}"));
        assert!(
            elapsed >= ACQUIRE.mul_f64(0.8) && elapsed < ACQUIRE + Duration::from_millis(1500),
            "a request that found the pool exhausted answered after {elapsed:?}; the acquire \
             timeout is {ACQUIRE:?}"
        );
        starved_times.push(elapsed);
    }
    // Well below the waits for the database, so it was not queued behind them.
    assert!(
        slowest_healthz < Duration::from_secs(1),
        "/healthz took {slowest_healthz:?} with the pool exhausted"
    );

    // The statement timeout ends the blocked PATCHes: 503, not an endless wait.
    let mut slow_times = Vec::new();
    for task in slow {
        let (reply, elapsed) = task.await.expect("a request task");
        reply
            .check_unavailable()
            .unwrap_or_else(|e| panic!("a PATCH blocked past the statement timeout: {e}"));
        assert!(
            elapsed >= STATEMENT.mul_f64(0.9) && elapsed < STATEMENT + Duration::from_secs(2),
            "a PATCH blocked on a row lock answered after {elapsed:?}; the statement timeout is \
             {STATEMENT:?}"
        );
        slow_times.push(elapsed);
    }
    locks.rollback().await.expect("release the locks");

    // Nothing refused was written, and the failed keyed PATCH left its key free (§8: 5xx
    // stores nothing).
    for id in &ids {
        assert_eq!(
            app.stored_version(id).await,
            1,
            "a refused PATCH wrote {id}"
        );
    }
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.db)
        .await
        .expect("count keys");
    assert_eq!(keys, 0, "a 503 stored its idempotency key");

    // Released: the service serves normally, pool-sized bursts included.
    let (retry, _) = patch(
        &ids[1],
        json!({"metadata": {"slow": "2"}}),
        Some("slow-key"),
    )
    .await;
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert!(!retry.replayed(), "the key was free, so the retry ran");
    assert_eq!(retry.version(), Some(2));
    let burst = futures_util::future::join_all([
        patch(&ids[0], json!({"metadata": {"after": "a"}}), None),
        patch(&ids[2], json!({"metadata": {"after": "b"}}), None),
    ])
    .await;
    for (reply, _) in &burst {
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.version(), Some(2));
    }
    let readyz = send(client.get(app.url("/readyz"))).await.expect("/readyz");
    assert_eq!(readyz.status, 200);

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

// ---------------------------------------------------------------------------------------------
// A server killed under a load of idempotent writes
// ---------------------------------------------------------------------------------------------

const CRASH_TASKS: usize = 8;

/// One keyed write of the crash load and the answer it got before the kill, if any.
struct Sent {
    write: KeyedWrite,
    /// The PATCH's ordinal on its task's customer (1, 2, ...), `None` for a create.
    patch_ordinal: Option<i64>,
    answer: Option<Reply>,
}

struct CrashLog {
    customer: String,
    sent: Vec<Sent>,
    violations: Vec<String>,
}

/// Keyed PATCHes and creates, alternately, until the server stops answering.
async fn crash_task(
    task: usize,
    customer: String,
    base: String,
    token: String,
    answered: Arc<AtomicUsize>,
) -> CrashLog {
    let client = client();
    let mut log = CrashLog {
        customer: customer.clone(),
        sent: Vec::new(),
        violations: Vec::new(),
    };
    let (mut patches, mut creates) = (0i64, 0u64);
    // Bounded, so a test whose kill never comes cannot loop forever.
    for n in 0..20_000u64 {
        let (write, patch_ordinal) = if n % 2 == 0 {
            patches += 1;
            let write = KeyedWrite {
                key: format!("crash-{task}-p{patches}"),
                method: Method::PATCH,
                path: format!("/v1/customers/{customer}"),
                body: json!({"metadata": {"seq": patches.to_string()}}).to_string(),
            };
            (write, Some(patches))
        } else {
            creates += 1;
            let key = format!("crash-{task}-c{creates}");
            let write = KeyedWrite {
                body: json!({"email": format!("crash-{task}-{creates}@faults.example"),
                             "metadata": {"key": key}})
                .to_string(),
                key,
                method: Method::POST,
                path: "/v1/customers".into(),
            };
            (write, None)
        };
        let answer = send(write.request(&client, &base, &token)).await.ok();
        let stopped = answer.is_none();
        if let Some(reply) = &answer {
            answered.fetch_add(1, Ordering::Relaxed);
            if !(200..300).contains(&reply.status) || reply.replayed() {
                log.violations.push(format!(
                    "{}: {} (replayed: {}) {}",
                    write.key,
                    reply.status,
                    reply.replayed(),
                    reply.text()
                ));
            }
        }
        log.sent.push(Sent {
            write,
            patch_ordinal,
            answer,
        });
        if stopped {
            break;
        }
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_idempotent_load_applies_every_key_exactly_once() {
    let options = fresh_database().await;
    let db = PgPoolOptions::new()
        .max_connections(3)
        .connect_with(options.clone())
        .await
        .expect("connect to the test database");
    let url = database_url(&options);
    let dir = tempfile::tempdir().expect("a temp dir");
    let client = client();
    let token = token(ORG, "test", ADMIN);

    let mut service = Service::start(dir.path(), &url, "before-kill");
    service.wait_ready(&client).await;
    let mut customers = Vec::new();
    for _ in 0..CRASH_TASKS {
        let created = send(
            client
                .post(service.url("/v1/customers"))
                .bearer_auth(&token)
                .json(&json!({})),
        )
        .await
        .expect("a create");
        assert_eq!(created.status, 201, "{}", created.text());
        customers.push(created.id());
    }

    let answered = Arc::new(AtomicUsize::new(0));
    let base = service.url("");
    let load: Vec<_> = customers
        .iter()
        .enumerate()
        .map(|(task, customer)| {
            tokio::spawn(crash_task(
                task,
                customer.clone(),
                base.clone(),
                token.clone(),
                answered.clone(),
            ))
        })
        .collect();
    wait_for("the load got 200 answers", Duration::from_secs(60), || {
        answered.load(Ordering::Relaxed) >= 200
    })
    .await;
    service.sigkill().await;
    let mut logs = Vec::new();
    for task in load {
        logs.push(task.await.expect("a load task"));
    }
    let violations: Vec<&String> = logs.iter().flat_map(|l| &l.violations).collect();
    assert!(
        violations.is_empty(),
        "answers before the kill that were not fresh 2xx: {violations:?}"
    );
    let sent: usize = logs.iter().map(|l| l.sent.len()).sum();
    let answered_before_kill = answered.load(Ordering::Relaxed);
    for log in &logs {
        assert!(
            log.sent.last().is_some_and(|s| s.answer.is_none()),
            "each load task stops at the first request the killed server did not answer"
        );
    }

    // Restart on the same database and retry what got no answer, with the same key.
    let mut service = Service::start(dir.path(), &url, "after-kill");
    service.wait_ready(&client).await;
    let base = service.url("");
    let mut committed_before_kill = 0;
    let mut executed_on_retry = 0;
    let mut in_progress_answers = 0;
    for log in &mut logs {
        for sent in log.sent.iter_mut().filter(|s| s.answer.is_none()) {
            let (reply, in_progress) = sent
                .write
                .settle(&client, &base, &token, Duration::from_secs(5))
                .await;
            in_progress_answers += in_progress;
            assert!(
                (200..300).contains(&reply.status),
                "retry of {}: {} {}\n{}",
                sent.write.key,
                reply.status,
                reply.text(),
                service.log()
            );
            if reply.replayed() {
                committed_before_kill += 1;
            } else {
                executed_on_retry += 1;
            }
            sent.answer = Some(reply);
        }
    }

    // To be strict, every key again: each must now be a replay of the answer it got.
    let mut replays = 0;
    for log in &logs {
        for sent in &log.sent {
            let first = sent
                .answer
                .as_ref()
                .expect("every write has its answer now");
            let (again, in_progress) = sent
                .write
                .settle(&client, &base, &token, Duration::from_secs(5))
                .await;
            in_progress_answers += in_progress;
            assert!(
                again.replayed(),
                "{} ran again instead of replaying: {} {}",
                sent.write.key,
                again.status,
                again.text()
            );
            assert_eq!(again.status, first.status, "{}", sent.write.key);
            assert_eq!(
                again.text(),
                first.text(),
                "{}: the replay is not the first answer",
                sent.write.key
            );
            assert_eq!(again.header("etag"), first.header("etag"));
            assert_eq!(again.header("location"), first.header("location"));
            replays += 1;
        }
    }

    // The database: one stored response per key, each PATCH applied once and in order, each
    // create made once.
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&db)
        .await
        .expect("count keys");
    assert_eq!(keys, sent as i64, "one stored key per write");
    let not_success: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM idempotency_keys WHERE status_code NOT IN (200, 201)",
    )
    .fetch_one(&db)
    .await
    .expect("count keys");
    assert_eq!(not_success, 0, "every stored response is a success");
    let created: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT metadata->>'key', count(*), min(id) FROM customers
          WHERE metadata ? 'key' GROUP BY 1",
    )
    .fetch_all(&db)
    .await
    .expect("read the created customers");
    let created: HashMap<String, (i64, String)> =
        created.into_iter().map(|(k, n, id)| (k, (n, id))).collect();
    let mut creates = 0;
    for log in &logs {
        let patches = log
            .sent
            .iter()
            .filter(|s| s.patch_ordinal.is_some())
            .count() as i64;
        let (version, metadata): (i64, Value) =
            sqlx::query_as("SELECT version, metadata FROM customers WHERE id = $1")
                .bind(&log.customer)
                .fetch_one(&db)
                .await
                .expect("the task's customer");
        assert_eq!(
            version,
            1 + patches,
            "{}: {patches} keyed PATCHes, each changing it, must move the version by exactly \
             {patches}",
            log.customer
        );
        assert_eq!(metadata, json!({"seq": patches.to_string()}));
        for sent in &log.sent {
            let answer = sent.answer.as_ref().expect("answered");
            match sent.patch_ordinal {
                Some(ordinal) => {
                    assert_eq!(answer.status, 200, "{}", sent.write.key);
                    assert_eq!(
                        answer.version(),
                        Some(ordinal + 1),
                        "{}: PATCH number {ordinal} must make version {}",
                        sent.write.key,
                        ordinal + 1
                    );
                    assert_eq!(answer.json()["metadata"]["seq"], json!(ordinal.to_string()));
                }
                None => {
                    creates += 1;
                    assert_eq!(answer.status, 201, "{}", sent.write.key);
                    let stored = created.get(&sent.write.key);
                    assert_eq!(
                        stored,
                        Some(&(1, answer.id())),
                        "{}: exactly one customer, the one answered",
                        sent.write.key
                    );
                }
            }
        }
    }
    assert_eq!(created.len(), creates, "no customer from a key never sent");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&db)
        .await
        .expect("count customers");
    assert_eq!(total, (CRASH_TASKS + creates) as i64);

    println!(
        "faults/crash: {sent} keyed writes ({} PATCHes, {creates} creates) by {CRASH_TASKS} \
         tasks; {answered_before_kill} answered before SIGKILL, {} unanswered: \
         {committed_before_kill} had committed (replayed on retry), {executed_on_retry} ran on \
         retry; {replays} strict replays identical; {in_progress_answers} transient 409 \
         in-progress answers; versions and {} stored keys exact",
        sent - creates,
        committed_before_kill + executed_on_retry,
        keys
    );
}

// ---------------------------------------------------------------------------------------------
// Three instances on one database
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_lose_no_update_and_run_each_key_once() {
    const PATCHERS: usize = 45; // below the 50-key metadata limit
    const KEYS: usize = 10;
    const CREATE_KEYS: usize = 5;
    const COPIES: usize = 6;
    let options = fresh_database().await;
    let db = PgPoolOptions::new()
        .max_connections(3)
        .connect_with(options.clone())
        .await
        .expect("connect to the test database");
    let url = database_url(&options);
    let dir = tempfile::tempdir().expect("a temp dir");
    let client = client();
    let token = token(ORG, "test", ADMIN);
    let mut services: Vec<Service> = (0..3)
        .map(|i| Service::start(dir.path(), &url, &format!("instance-{i}")))
        .collect();
    for service in &mut services {
        service.wait_ready(&client).await;
    }
    let bases: Vec<String> = services.iter().map(|s| s.url("")).collect();
    let create = |base: &str| {
        send(
            client
                .post(format!("{base}/v1/customers"))
                .bearer_auth(&token)
                .json(&json!({})),
        )
    };
    let plain = create(&bases[0]).await.expect("a create").id();
    let keyed = create(&bases[1]).await.expect("a create").id();

    // Concurrent PATCHes adding one metadata key each, spread over the three instances.
    let barrier = Arc::new(tokio::sync::Barrier::new(PATCHERS));
    let mut tasks = Vec::new();
    for i in 0..PATCHERS {
        let request = client
            .patch(format!("{}/v1/customers/{plain}", bases[i % 3]))
            .bearer_auth(&token)
            .header("content-type", "application/merge-patch+json")
            .body(json!({"metadata": {format!("k{i}"): "v"}}).to_string());
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            send(request).await
        }));
    }
    let mut versions = BTreeSet::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task
            .await
            .expect("a PATCH task")
            .unwrap_or_else(|e| panic!("PATCH k{i}: no answer: {e}"));
        assert_eq!(reply.status, 200, "PATCH k{i}: {}", reply.text());
        assert_eq!(
            reply.json()["metadata"][format!("k{i}")],
            "v",
            "PATCH k{i}'s answer lacks its own key"
        );
        versions.insert(reply.version().expect("an ETag"));
    }
    assert_eq!(
        versions,
        (2..=1 + PATCHERS as i64).collect::<BTreeSet<_>>(),
        "each PATCH made a version of its own"
    );
    let (version, metadata): (i64, Value) =
        sqlx::query_as("SELECT version, metadata FROM customers WHERE id = $1")
            .bind(&plain)
            .fetch_one(&db)
            .await
            .expect("the customer");
    let expected: serde_json::Map<String, Value> = (0..PATCHERS)
        .map(|i| (format!("k{i}"), json!("v")))
        .collect();
    assert_eq!(metadata, Value::Object(expected), "a lost update");
    assert_eq!(version, 1 + PATCHERS as i64);

    // Idempotent retries: copies of each keyed write sent at once to different instances.
    let mut writes = Vec::new();
    for k in 0..KEYS {
        writes.push(KeyedWrite {
            key: format!("multi-p{k}"),
            method: Method::PATCH,
            path: format!("/v1/customers/{keyed}"),
            body: json!({"metadata": {format!("j{k}"): "v"}}).to_string(),
        });
    }
    for k in 0..CREATE_KEYS {
        writes.push(KeyedWrite {
            key: format!("multi-c{k}"),
            method: Method::POST,
            path: "/v1/customers".into(),
            body: json!({"email": format!("multi-{k}@faults.example"),
                         "metadata": {"key": format!("multi-c{k}")}})
            .to_string(),
        });
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(writes.len() * COPIES));
    let mut tasks = Vec::new();
    for (w, write) in writes.iter().enumerate() {
        for copy in 0..COPIES {
            let (write, client, token, barrier) = (
                write.clone(),
                client.clone(),
                token.clone(),
                barrier.clone(),
            );
            let base = bases[(w + copy) % 3].clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let settled = write
                    .settle(&client, &base, &token, Duration::from_secs(5))
                    .await;
                (w, settled)
            }));
        }
    }
    let mut replies: BTreeMap<usize, Vec<Reply>> = BTreeMap::new();
    let mut in_progress_answers = 0;
    for task in tasks {
        let (w, (reply, in_progress)) = task.await.expect("a keyed task");
        in_progress_answers += in_progress;
        replies.entry(w).or_default().push(reply);
    }
    let mut patch_versions = BTreeSet::new();
    for (w, replies) in &replies {
        let write = &writes[*w];
        let status = if write.method == Method::PATCH {
            200
        } else {
            201
        };
        let first = &replies[0];
        for reply in replies {
            assert_eq!(reply.status, status, "{}: {}", write.key, reply.text());
            assert_eq!(
                reply.text(),
                first.text(),
                "{}: copies got different bodies",
                write.key
            );
            assert!(reply.body == first.body, "{}: not byte for byte", write.key);
            assert_eq!(reply.header("etag"), first.header("etag"));
            assert_eq!(reply.header("location"), first.header("location"));
        }
        let originals = replies.iter().filter(|r| !r.replayed()).count();
        assert_eq!(
            originals, 1,
            "{}: exactly one copy runs, the others replay it",
            write.key
        );
        if write.method == Method::PATCH {
            patch_versions.insert(first.version().expect("an ETag"));
        }
    }
    assert_eq!(
        patch_versions,
        (2..=1 + KEYS as i64).collect::<BTreeSet<_>>(),
        "each keyed PATCH took effect once, with a version of its own"
    );
    let (version, metadata): (i64, Value) =
        sqlx::query_as("SELECT version, metadata FROM customers WHERE id = $1")
            .bind(&keyed)
            .fetch_one(&db)
            .await
            .expect("the customer");
    assert_eq!(version, 1 + KEYS as i64, "each key ran once");
    let expected: serde_json::Map<String, Value> =
        (0..KEYS).map(|k| (format!("j{k}"), json!("v"))).collect();
    assert_eq!(metadata, Value::Object(expected));
    for k in 0..CREATE_KEYS {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM customers WHERE metadata->>'key' = $1")
                .bind(format!("multi-c{k}"))
                .fetch_all(&db)
                .await
                .expect("read created customers");
        let answered = replies[&(KEYS + k)][0].id();
        assert_eq!(ids, vec![answered], "multi-c{k}: exactly one customer");
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&db)
        .await
        .expect("count customers");
    assert_eq!(total, 2 + CREATE_KEYS as i64);
    let stored_keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&db)
        .await
        .expect("count keys");
    assert_eq!(stored_keys, writes.len() as i64);

    println!(
        "faults/three-instances: {PATCHERS} concurrent PATCHes over 3 processes, all keys kept, \
         version {}; {} keyed writes x {COPIES} concurrent copies over 3 processes = {} requests, \
         each key ran once ({} replays identical, {in_progress_answers} transient 409 \
         in-progress answers)",
        1 + PATCHERS,
        writes.len(),
        writes.len() * COPIES,
        writes.len() * (COPIES - 1),
    );
}
