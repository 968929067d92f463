//! The test harness: a real server on port 0 against a fresh database per test.
//!
//! The database server is `DATABASE_URL` when set, else a private PostgreSQL under
//! `target/test-postgres` started (or reused) from the installed server programs. Each test gets
//! its own database, cloned from a migrated template, so tests run in parallel.

use std::sync::OnceLock;
use std::time::Duration;

use customers_api::auth::{mint_token, KeyRing, Mode, TokenRequest};
use customers_api::configuration::{Secret, Settings};
use customers_api::private_postgres::{Durability, PrivatePostgres};
use customers_api::startup::Application;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};

pub const ORG: &str = "org_a";
pub const ADMIN: &str = "customers:admin";
pub const WRITE: &str = "customers:write";
pub const READ: &str = "customers:read";

struct Server {
    options: PgConnectOptions,
    template: String,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

fn server() -> &'static Server {
    SERVER
        .get_or_init(|| {
            // Set-up is async; run it on a runtime of its own so that it outlives any test's.
            std::thread::spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?
                    .block_on(prepare_server())
                    .map_err(|e| format!("{e:#}"))
            })
            .join()
            .expect("set-up thread panicked")
        })
        .as_ref()
        .expect("the test database server could not be prepared")
}

async fn prepare_server() -> anyhow::Result<Server> {
    let options = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url.parse::<PgConnectOptions>()?,
        _ => {
            let dir =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-postgres/data");
            let server = tokio::task::spawn_blocking(move || {
                PrivatePostgres::start(&dir, Durability::Ephemeral)
            })
            .await??;
            // Left running for the next test process to reuse; CI machines are discarded.
            server.connect_options()
        }
    };
    // One template per set of migrations, so a changed migration gets a fresh one.
    let mut hash = 0u64;
    for m in customers_api::db::MIGRATOR.iter() {
        for b in m.checksum.iter() {
            hash = hash.wrapping_mul(31).wrapping_add(u64::from(*b));
        }
    }
    let template = format!("customers_tpl_{:x}", hash & 0xffff_ffff_ffff);
    let mut admin = PgConnection::connect_with(&options).await?;
    // Several test processes may prepare at once: one does, the others wait and find it done.
    admin.execute("SELECT pg_advisory_lock(727172)").await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let building = format!("{template}_building");
        admin
            .execute(format!("DROP DATABASE IF EXISTS {building}").as_str())
            .await?;
        admin
            .execute(format!("CREATE DATABASE {building}").as_str())
            .await?;
        let mut conn = PgConnection::connect_with(&options.clone().database(&building)).await?;
        customers_api::db::MIGRATOR.run(&mut conn).await?;
        conn.close().await?;
        admin
            .execute(format!("ALTER DATABASE {building} RENAME TO {template}").as_str())
            .await?;
    }
    // Databases of earlier runs that nobody uses any more (DROP refuses one in use).
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'customers_test_%' AND datname NOT LIKE $1",
    )
    .bind(format!("customers_test_{}_%", std::process::id()))
    .fetch_all(&mut admin)
    .await?;
    for db in stale {
        let _ = admin
            .execute(format!("DROP DATABASE IF EXISTS {db}").as_str())
            .await;
    }
    admin.execute("SELECT pg_advisory_unlock(727172)").await?;
    admin.close().await?;
    Ok(Server { options, template })
}

/// A fresh, migrated database of its own; returns its connect options.
pub async fn fresh_database() -> PgConnectOptions {
    init_test_logs();
    let server = server();
    let name = format!(
        "customers_test_{}_{}",
        std::process::id(),
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let mut admin = PgConnection::connect_with(&server.options)
        .await
        .expect("connect to the test server");
    admin
        .execute(
            format!(
                "CREATE DATABASE {name} TEMPLATE {} STRATEGY FILE_COPY",
                server.template
            )
            .as_str(),
        )
        .await
        .expect("create a test database");
    admin.close().await.ok();
    server.options.clone().database(&name)
}

/// Settings for a test server: port 0, one worker, the default development keys.
pub fn test_settings() -> Settings {
    let mut settings = Settings::load().expect("the default configuration loads");
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.server.workers = 1;
    settings.database.url = Secret::new("");
    settings.database.migrate_on_start = false;
    settings.database.max_connections = 20;
    settings
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    /// A pool of the test's database, for asserting what is stored.
    pub db: PgPool,
    pub db_options: PgConnectOptions,
    pub client: reqwest::Client,
    pub settings: Settings,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let db_options = fresh_database().await;
    let mut settings = test_settings();
    configure(&mut settings);
    spawn_app_on(db_options, settings).await
}

/// A server on an existing database (several servers may share one).
pub async fn spawn_app_on(db_options: PgConnectOptions, settings: Settings) -> TestApp {
    init_test_logs();
    let pool = customers_api::db::pool(db_options.clone(), &settings.database);
    let app = Application::build_with_pool(settings.clone(), pool)
        .await
        .expect("the application builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(5)
        .connect_with(db_options.clone())
        .await
        .expect("connect to the test database");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db,
        db_options,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a client"),
        settings,
    }
}

/// A token from the development key, as `customers-api token` would print it.
pub fn token(org: &str, mode: &str, scope: &str) -> String {
    let settings = test_settings();
    let ring = KeyRing::from_settings(&settings.auth).expect("keys load");
    let mode = if mode == "live" {
        Mode::Live
    } else {
        Mode::Test
    };
    mint_token(
        &ring,
        &TokenRequest {
            org: org.into(),
            mode,
            scope: scope.into(),
            ttl: Duration::from_secs(3600),
            sub: "tests".into(),
        },
    )
    .expect("a token")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A request with an admin token of `ORG` in test mode.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_as(method, path, &token(ORG, "test", ADMIN))
    }

    pub fn request_as(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    pub async fn create(&self, body: Value) -> Response {
        self.request(Method::POST, "/v1/customers")
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// Creates a customer and returns its JSON; panics unless 201.
    pub async fn create_ok(&self, body: Value) -> Value {
        let response = self.create(body).await;
        assert_eq!(
            response.status(),
            201,
            "create failed: {:?}",
            response.text().await
        );
        response.json().await.expect("a JSON customer")
    }

    pub async fn patch(&self, id: &str, body: Value) -> Response {
        self.request(Method::PATCH, &format!("/v1/customers/{id}"))
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, id: &str) -> Response {
        self.request(Method::GET, &format!("/v1/customers/{id}"))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_json(&self, id: &str) -> Value {
        let response = self.get(id).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("JSON")
    }

    /// The stored row's version, straight from the database.
    pub async fn stored_version(&self, id: &str) -> i64 {
        sqlx::query_scalar("SELECT version FROM customers WHERE id = $1")
            .bind(id)
            .fetch_one(&self.db)
            .await
            .expect("the customer is stored")
    }

    pub async fn count_customers(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM customers")
            .fetch_one(&self.db)
            .await
            .expect("count")
    }
}

/// Reads an error response and checks the envelope; returns the `error` object.
pub async fn error_body(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    assert!(
        response.headers().contains_key("x-request-id"),
        "every response carries X-Request-Id"
    );
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "errors are JSON, got {content_type}"
    );
    let body: Value = response.json().await.expect("a JSON error");
    let error = body["error"].clone();
    assert_eq!(error["code"], code, "unexpected error: {body}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(error["requestId"].as_str().is_some());
    assert!(error["type"].as_str().is_some());
    error
}

/// The `param`s of `details.errors`.
pub fn error_params(error: &Value) -> Vec<String> {
    error["details"]["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["param"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Where the logs of the whole test run go, for `scripts/scan-test-logs` to check that no
/// token, email, phone or name is ever logged. `.ci/run` empties it before `cargo test`.
/// Binaries that tests start may write their logs here too (any file under it is scanned).
pub fn test_log_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-logs")
}

static TEST_LOGS: std::sync::Once = std::sync::Once::new();

/// Installs, once per test process, a global subscriber for the in-process servers: the
/// service's JSON format (`telemetry::init` can only write to stdout, which the test harness
/// swallows) at info level, into `target/test-logs/api-<pid>.jsonl`.
pub fn init_test_logs() {
    TEST_LOGS.call_once(|| {
        let dir = test_log_dir();
        std::fs::create_dir_all(&dir).expect("create target/test-logs");
        let path = dir.join(format!("api-{}.jsonl", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open the test log file");
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::sync::Mutex::new(file))
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .finish();
        // A test that installed its own subscriber first keeps it; its lines are not scanned.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}
