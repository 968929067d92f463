//! The connection pool, migrations and the classification of database failures.

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::configuration::DatabaseSettings;

/// The files in `migrations/`, the same ones `sqlx migrate run` applies.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A lazily connecting pool: a database that is down at a given moment makes requests answer
/// 503 (bounded by `acquire_timeout`) instead of stopping the service.
///
/// Every connection switches to the role `customers_app` once, when it is opened: it owns
/// nothing and cannot bypass the row-level security policies of migration 3, so a statement
/// sees only the tenant it bound (see `customers::repo`). The login role must be allowed to
/// (a superuser, or a member of `customers_app`). Migrations do not use this pool.
pub fn pool(options: PgConnectOptions, settings: &DatabaseSettings) -> PgPool {
    let statement_timeout = settings.statement_timeout.as_millis().to_string();
    let options = options
        .application_name("customers-api")
        .options([("statement_timeout", statement_timeout.as_str())]);
    PgPoolOptions::new()
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // enable_seqscan = off: the tenant binding of every statement (customers::repo)
                // runs before the index scan it keys; a sequential scan would check the policy
                // on rows before the binding and find nothing. Every query here has its index.
                // jit = off: these are small statements, and the cost enable_seqscan = off puts
                // on a plan's never-run branches (a write's key-less idempotency save, say)
                // otherwise crosses jit_above_cost, so every execution paid ~0.3 s of LLVM
                // compilation.
                use sqlx::Executor;
                conn.execute("SET ROLE customers_app; SET enable_seqscan = off; SET jit = off")
                    .await?;
                Ok(())
            })
        })
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(settings.acquire_timeout)
        // No ping before every use (a round trip per request): a connection broken by a database
        // restart fails its next query with a 503 and is then dropped from the pool.
        .test_before_acquire(false)
        .connect_lazy_with(options)
}

/// Applies the migrations on a connection of its own, as the login role (the owner of the
/// schema), not as the restricted role of the pool.
pub async fn migrate(options: &PgConnectOptions) -> Result<(), sqlx::migrate::MigrateError> {
    use sqlx::Connection;
    // A migration may take longer than a request is allowed to.
    let options = options.clone().options([("statement_timeout", "0")]);
    let mut conn = sqlx::PgConnection::connect_with(&options).await?;
    let result = MIGRATOR.run(&mut conn).await;
    conn.close().await.ok();
    result
}

/// Ready = the database answers and every migration this binary knows is applied.
pub async fn is_ready(pool: &PgPool) -> bool {
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await;
    matches!(applied, Ok(Some(v)) if v >= latest)
}

/// Whether an error means "the database cannot serve right now" (503 + Retry-After) rather
/// than a bug (500).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P0x: shutting down / starting up; 53300: too many
            // connections; 57014: statement timeout; 55P03: lock timeout.
            code.starts_with("08")
                || code.starts_with("57P0")
                || matches!(code.as_ref(), "53300" | "57014" | "55P03")
        }),
        _ => false,
    }
}

static WAITING: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Requests currently waiting for a pooled connection (a metrics gauge).
pub fn waiting() -> i64 {
    WAITING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts a request waiting for a pooled connection while it lives (a guard, so that a request
/// dropped while waiting is uncounted too).
struct Waiting;

impl Waiting {
    fn start() -> Self {
        WAITING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Takes a connection from the pool, counting the wait for `/metrics`. All request paths get
/// their connection here or from [`begin`].
pub async fn acquire(
    pool: &PgPool,
) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, sqlx::Error> {
    let _waiting = Waiting::start();
    pool.acquire().await
}

/// A transaction on a pooled connection, counting the wait like [`acquire`].
pub async fn begin(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let _waiting = Waiting::start();
    pool.begin().await
}
