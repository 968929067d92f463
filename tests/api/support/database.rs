//! The databases of the tests.
//!
//! The database server is chosen by `TEST_DATABASE` ([`Way`]): `url` (`DATABASE_URL`),
//! `private` (a PostgreSQL under `target/test-postgres` started, or reused, from the installed
//! server programs) or `container` (a `postgres:15` container, with testcontainers). Unset: the
//! first of those three that is there. The way a run used is written to
//! `target/test-database.txt`. Each test gets its own database, cloned from a migrated template,
//! so tests run in parallel.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use customers_api::private_postgres::{Durability, PrivatePostgres, Watchdog};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};

use super::logs::init_test_logs;

/// The tests' private PostgreSQL stops by itself after this long with no test process using it.
const IDLE: Duration = Duration::from_secs(10 * 60);

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

/// `DATABASE_URL` when it is set and not empty.
fn database_url_env() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// How the tests reach a PostgreSQL server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// `DATABASE_URL`.
    Url,
    /// A private server from the installed PostgreSQL server programs.
    Private,
    /// A `postgres:15` container started with testcontainers.
    Container,
}

impl Way {
    fn chosen() -> anyhow::Result<Way> {
        match std::env::var("TEST_DATABASE").as_deref() {
            Ok("url") => Ok(Way::Url),
            Ok("private") => Ok(Way::Private),
            Ok("container") => Ok(Way::Container),
            Ok("") | Err(_) if database_url_env().is_some() => Ok(Way::Url),
            Ok("") | Err(_) if find_postgres_programs().is_ok() => Ok(Way::Private),
            Ok("") | Err(_) if docker_answers() => Ok(Way::Container),
            Ok("") | Err(_) => anyhow::bail!(
                "no database for the tests: set DATABASE_URL, install the PostgreSQL server \
                 programs, or run a Docker engine (TEST_DATABASE=container)"
            ),
            Ok(other) => anyhow::bail!("TEST_DATABASE={other:?}: use url, private or container"),
        }
    }
}

fn docker_answers() -> bool {
    std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The container of a run that used one: kept for the whole test process (a static is never
/// dropped). Containers of earlier runs whose process is gone are removed at the next start.
static CONTAINER: OnceLock<
    testcontainers_modules::testcontainers::ContainerAsync<
        testcontainers_modules::postgres::Postgres,
    >,
> = OnceLock::new();

const CONTAINER_LABEL: &str = "customers-api-tests.pid";

/// The password of the container's `postgres` user (the module's default).
const CONTAINER_PASSWORD: &str = "postgres";

async fn start_container() -> anyhow::Result<PgConnectOptions> {
    use testcontainers_modules::postgres::Postgres;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    use testcontainers_modules::testcontainers::ImageExt;
    remove_containers_of_ended_runs();
    // The tag is named on purpose: the module's default is not the PostgreSQL this project runs.
    let container = Postgres::default()
        .with_tag("15")
        .with_label(CONTAINER_LABEL, std::process::id().to_string())
        .start()
        .await?;
    let options = PgConnectOptions::new()
        .host(&container.get_host().await?.to_string())
        .port(container.get_host_port_ipv4(5432).await?)
        .username("postgres")
        .password(CONTAINER_PASSWORD)
        .database("postgres");
    let _ = CONTAINER.set(container);
    Ok(options)
}

fn remove_containers_of_ended_runs() {
    let Ok(listed) = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label={CONTAINER_LABEL}"),
            "--format",
            &format!("{{{{.ID}}}} {{{{.Label \"{CONTAINER_LABEL}\"}}}}"),
        ])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        if let Some((id, pid)) = line.split_once(' ') {
            if !std::path::Path::new("/proc").join(pid).exists() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", id])
                    .output();
            }
        }
    }
}

async fn prepare_server() -> anyhow::Result<Server> {
    let way = Way::chosen()?;
    let options = match way {
        Way::Url => database_url_env()
            .ok_or_else(|| anyhow::anyhow!("TEST_DATABASE=url but DATABASE_URL is not set"))?
            .parse::<PgConnectOptions>()?,
        Way::Private => {
            let dir =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-postgres/data");
            let server = tokio::task::spawn_blocking(move || {
                PrivatePostgres::start(&dir, Durability::Ephemeral)
            })
            .await??;
            // Left running for the next test process to reuse, but never for ever: it stops once
            // unused for IDLE, or as soon as the checkout is deleted.
            server.watch(&Watchdog {
                owned: false,
                anchor: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")),
                idle: Some(IDLE),
            })?;
            let options = server.connect_options();
            // In use while this process runs.
            std::thread::spawn(move || loop {
                server.mark_used();
                std::thread::sleep(Duration::from_secs(60));
            });
            options
        }
        Way::Container => start_container().await?,
    };
    let record = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-database.txt");
    let _ = std::fs::write(&record, format!("{way:?}\n").to_lowercase());
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

/// A pool of the test's own (as the owner of the schema, not the service's role), for asserting
/// what is stored.
pub async fn connect(options: &PgConnectOptions, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options.clone())
        .await
        .expect("connect to the test database")
}

/// A fresh database for servers started as child processes: a pool for the test's own checks,
/// and the URL the children get.
pub async fn fresh_database_for_binaries() -> (PgPool, String) {
    let options = fresh_database().await;
    (connect(&options, 3).await, database_url(&options))
}

/// A URL for a child process's `DATABASE_URL` naming the database of `options`: the Unix socket
/// of a private server, the container's address and credentials, else `DATABASE_URL` with
/// another path.
pub fn database_url(options: &PgConnectOptions) -> String {
    let database = options.get_database().expect("a database name");
    if let Some(socket) = options.get_socket() {
        // A private server (the tests' or a scratch one) listens on a Unix socket only.
        let mut url = reqwest::Url::parse(&format!(
            "postgres://{}@localhost:{}/{database}",
            options.get_username(),
            options.get_port()
        ))
        .expect("a URL");
        url.query_pairs_mut()
            .append_pair("host", &socket.to_string_lossy());
        return url.to_string();
    }
    if CONTAINER.get().is_some() {
        return format!(
            "postgres://{}:{CONTAINER_PASSWORD}@{}:{}/{database}",
            options.get_username(),
            options.get_host(),
            options.get_port()
        );
    }
    let url = database_url_env().expect("a test database reached by TCP comes from DATABASE_URL");
    let mut url = reqwest::Url::parse(&url).expect("DATABASE_URL is a URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// Whether the tests run against `DATABASE_URL` (rather than a private PostgreSQL).
pub fn uses_database_url() -> bool {
    database_url_env().is_some()
}

/// The PostgreSQL server programs a test needs to start a PostgreSQL of its own, or why not.
pub fn find_postgres_programs() -> Result<(), String> {
    customers_api::private_postgres::find_bin_dir()
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

/// A database of the run reached over TCP, for what needs a `host:port` (multi-host URLs): the
/// suite's own server when it listens on TCP (`DATABASE_URL`, a container), else a loopback
/// port of the test's own relayed to the private server's Unix socket (which stays reachable
/// by its owner only).
pub struct TcpDatabase {
    /// `user@` or `user:password@`, as in a URL.
    pub user_info: String,
    /// `127.0.0.1:PORT` and the like.
    pub host_port: String,
    pub database: String,
}

pub async fn tcp_database() -> TcpDatabase {
    let options = fresh_database().await;
    let database = options.get_database().expect("a database name").to_owned();
    let user = options.get_username().to_owned();
    if let Some(socket) = options.get_socket() {
        let socket = socket.join(format!(".s.PGSQL.{}", options.get_port()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("an address").port();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let socket = socket.clone();
                tokio::spawn(async move {
                    if let Ok(mut unix) = tokio::net::UnixStream::connect(&socket).await {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                    }
                });
            }
        });
        return TcpDatabase {
            user_info: format!("{user}@"),
            host_port: format!("127.0.0.1:{port}"),
            database,
        };
    }
    let password = if CONTAINER.get().is_some() {
        Some(CONTAINER_PASSWORD.to_owned())
    } else {
        database_url_env()
            .and_then(|url| reqwest::Url::parse(&url).ok())
            .and_then(|url| url.password().map(str::to_owned))
    };
    let host = options.get_host();
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    TcpDatabase {
        user_info: match password {
            Some(password) => format!("{user}:{password}@"),
            None => format!("{user}@"),
        },
        host_port: format!("{host}:{}", options.get_port()),
        database,
    }
}
