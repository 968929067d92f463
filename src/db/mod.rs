//! The connection pool, migrations and the classification of database failures.
//!
//! Failover (docs/high-availability.md): an error that means a connection or its server is gone
//! ([`is_connection_lost`]) condemns every connection opened before it; the pool checks that on
//! checkout and on release, without a round trip, so neither the connection that failed nor an
//! idle one that sat through the failover is used again. [`acquire`] waits, within
//! `acquire_timeout`, for a server that takes connections; [`monitor`] keeps the pool on a host
//! that serves (one of several, see [`hosts`]); [`deadline`] bounds a request whose server
//! stopped answering.

pub mod deadline;
pub mod hosts;
pub mod lost;
pub mod monitor;
pub mod sweep;
pub mod tls;
mod url;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::configuration::DatabaseSettings;
pub use hosts::Hosts;
pub use lost::{
    connection_generation, connection_lost, is_connection_lost, is_unavailable, note,
    retire_older_connections,
};
use lost::{host_changed_signal, is_condemned};

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
    pool_for(
        &Hosts::single(connection_options(options, settings)),
        settings,
    )
}

/// The per-connection settings of the pool's connections.
pub fn connection_options(
    options: PgConnectOptions,
    settings: &DatabaseSettings,
) -> PgConnectOptions {
    let statement_timeout = settings.statement_timeout.as_millis().to_string();
    // A session left idle inside a transaction (a bug, a cut-off request whose connection was
    // not returned) holds back the feed's horizon, pg_snapshot_xmin, for every tenant.
    let idle_in_transaction = settings.idle_in_transaction_timeout.as_millis().to_string();
    options.application_name("customers-api").options([
        ("statement_timeout", statement_timeout.as_str()),
        (
            "idle_in_transaction_session_timeout",
            idle_in_transaction.as_str(),
        ),
    ])
}

/// [`pool`] on the selected host of `hosts`, whose options must already be
/// [`connection_options`]. With a read-write target, a new connection whose server is read-only
/// (a standby, or a demoted primary) is refused, found out in the round trip that sets the
/// connection up; the pool then tries again until `acquire_timeout`, and the monitor selects.
pub fn pool_for(hosts: &Hosts, settings: &DatabaseSettings) -> PgPool {
    // enable_seqscan = off: the tenant binding of every statement (customers::repo) runs before
    // the index scan it keys; a sequential scan would check the policy on rows before the
    // binding and find nothing. Every query here has its index.
    // jit = off: these are small statements, and the cost enable_seqscan = off puts on a plan's
    // never-run branches (a write's key-less idempotency save, say) otherwise crosses
    // jit_above_cost, so every execution paid ~0.3 s of LLVM compilation.
    // app.tenant = '': the tenant binding defined (and matching no row) from the start. The
    // planner evaluates the policies' current_setting('app.tenant', true) to estimate a custom
    // plan; NULL, on a session that never bound a tenant, made the first listing of each new
    // connection read the whole tenant into a sort
    // (docs/performance.md#the-first-page-on-a-new-connection).
    let setup: &'static str = if hosts.read_write() {
        "SET ROLE customers_app; SET enable_seqscan = off; SET jit = off; SET app.tenant = ''; \
         SELECT pg_is_in_recovery() OR current_setting('transaction_read_only')::bool"
    } else {
        "SET ROLE customers_app; SET enable_seqscan = off; SET jit = off; SET app.tenant = ''; \
         SELECT false"
    };
    PgPoolOptions::new()
        .after_connect(move |conn, meta| {
            Box::pin(async move {
                use sqlx::{Executor, Row};
                // One round trip (a &str runs as a simple query): the SETs, then one row.
                let read_only: bool = conn.fetch_one(setup).await?.try_get(0)?;
                if read_only {
                    connection_lost();
                    return Err(sqlx::Error::Io(std::io::Error::other(
                        "the server is read-only (a standby): not the primary",
                    )));
                }
                deadline::taken(&meta);
                Ok(())
            })
        })
        // No ping before every use (a round trip per request). A connection opened before the
        // last lost connection is closed instead of being handed out or taken back; sqlx
        // itself pings a connection when it is released, which drops one whose socket died.
        .test_before_acquire(false)
        .before_acquire(|_conn, meta| {
            Box::pin(async move {
                let usable = !is_condemned(&meta);
                if usable {
                    deadline::taken(&meta);
                }
                Ok(usable)
            })
        })
        .after_release(|_conn, meta| {
            Box::pin(async move { Ok(!is_condemned(&meta) && deadline::released(&meta)) })
        })
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(hosts.selected().clone())
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

/// Ready = a writable primary answers (a server in recovery is not ready) and every migration
/// this binary knows is applied. Answers within `acquire_timeout`.
pub async fn is_ready(pool: &PgPool) -> bool {
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let until = tokio::time::Instant::now() + pool.options().get_acquire_timeout();
    let mut conn = match tokio::time::timeout_at(until, acquire_following_host(pool)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            note(&e);
            return false;
        }
        Err(_) => return false,
    };
    let check = sqlx::query_as::<_, (Option<i64>, bool)>(
        "SELECT (SELECT max(version) FROM _sqlx_migrations WHERE success), pg_is_in_recovery()",
    )
    .fetch_one(&mut *conn);
    match tokio::time::timeout_at(until, check).await {
        Ok(Ok((applied, in_recovery))) => !in_recovery && applied.is_some_and(|v| v >= latest),
        Ok(Err(e)) => {
            note(&e);
            false
        }
        Err(_) => {
            // Cut off mid-statement: this connection must not be reused.
            conn.close_on_drop();
            false
        }
    }
}

/// `pool.acquire()`, started again when the monitor selects another host: an attempt stuck
/// connecting to a stalled host is dropped (nothing was sent) instead of waiting out the
/// `acquire_timeout`.
///
/// A connection it opens is registered with the service's own runtime ([`deadline::home`]),
/// so that it outlives the HTTP worker whose request opened it.
async fn acquire_following_host(
    pool: &PgPool,
) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, sqlx::Error> {
    let home = deadline::home();
    loop {
        let changed = host_changed_signal().notified();
        tokio::select! {
            acquired = on_runtime(home.as_ref(), pool.acquire()) => return acquired,
            _ = changed => {}
        }
    }
}

/// Polls `work` inside the context of `runtime` (when given): the sockets and timers it creates
/// belong to that runtime's drivers, while the task polling it stays where it is.
async fn on_runtime<F: std::future::Future>(
    runtime: Option<&tokio::runtime::Handle>,
    work: F,
) -> F::Output {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        let _entered = runtime.map(|r| r.enter());
        work.as_mut().poll(cx)
    })
    .await
}

static WAITING: AtomicI64 = AtomicI64::new(0);

/// Requests currently waiting for a pooled connection (a metrics gauge).
pub fn waiting() -> i64 {
    WAITING.load(Ordering::Relaxed)
}

/// A transaction on a connection from [`acquire`] (the transaction owns it).
pub async fn begin(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let conn = acquire(pool).await?;
    // What `Pool::begin` does, on a connection taken the way every request takes one.
    sqlx::Transaction::begin(conn, None).await
}

/// Takes a connection from the pool, counting the wait for `/metrics`. All request paths get
/// their connection here (or through [`begin`]).
///
/// A connection that cannot be opened because the server is gone (refused, or closed by a
/// proxy with no primary behind it) is tried again, with a short backoff, until
/// `acquire_timeout`: nothing has been sent yet, so this is safe for writes too, and a request
/// that arrives during a failover is served as soon as the new primary takes connections.
/// Starts the request's [`deadline`].
pub async fn acquire(
    pool: &PgPool,
) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, sqlx::Error> {
    // A guard, so that a request dropped while waiting is uncounted too.
    struct Waiting;
    impl Drop for Waiting {
        fn drop(&mut self) {
            WAITING.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let until = tokio::time::Instant::now() + pool.options().get_acquire_timeout();
    WAITING.fetch_add(1, Ordering::Relaxed);
    let _waiting = Waiting;
    deadline::start(until).await?;
    let mut backoff = Duration::from_millis(25);
    loop {
        let error = match tokio::time::timeout_at(until, acquire_following_host(pool)).await {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) => e,
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
        };
        note(&error);
        if !is_connection_lost(&error) || tokio::time::Instant::now() + backoff >= until {
            return Err(error);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

/// Whether the pool's server answers a new connection of its own within `within`: what tells
/// a server that stopped answering from a request that was merely slow ([`deadline`]). An
/// error the server sent (too many connections, say) is an answer; a timeout, or a failure to
/// reach it, is not.
pub async fn server_answers(pool: &PgPool, within: Duration) -> bool {
    use sqlx::Connection;
    let options = pool.connect_options();
    let probe = async {
        let mut conn = sqlx::PgConnection::connect_with(&options).await?;
        let answered = conn.ping().await;
        conn.close().await.ok();
        answered
    };
    match tokio::time::timeout(within, probe).await {
        Ok(Ok(())) => true,
        Ok(Err(e @ sqlx::Error::Database(_))) => !is_connection_lost(&e),
        _ => false,
    }
}
