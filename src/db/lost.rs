//! What the service knows of lost connections: which errors mean the connection (or its server)
//! is gone, and the process-wide mark that condemns every connection opened before the last
//! loss. Below everything else of `db` and below the error type, which classifies a database
//! error with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnectionMetadata;

/// Whether an error means the connection, or the server behind it, is gone or no longer the
/// primary: what a failover produces. I/O errors (also while connecting: refused, reset, EOF
/// from a proxy with no server behind it), a broken protocol conversation, SQLSTATE class 08,
/// 57P01/57P02/57P03 (shutdown, crash, starting up) and 25006 (a read-only transaction: a
/// demoted primary). A write that failed this way may or may not have committed.
pub fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "25006")
        }),
        _ => false,
    }
}

/// Whether an error means "the database cannot serve right now" (503 + Retry-After) rather
/// than a bug (500).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    is_connection_lost(e)
        || match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
            // 53300: too many connections; 57014: statement timeout; 55P03: lock timeout.
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| matches!(code.as_ref(), "53300" | "57014" | "55P03")),
            _ => false,
        }
}

/// Takes note of what an error says about the database: a lost connection condemns the older
/// ones. Every error of a request passes here (`From<sqlx::Error> for ApiError`).
pub fn note(e: &sqlx::Error) {
    if is_connection_lost(e) {
        connection_lost();
    }
}

/// A connection was lost (or its server stopped answering): condemns every connection opened
/// until now, and wakes the monitor.
pub fn connection_lost() {
    retire_older_connections();
    lost_signal().notify_one();
}

/// Condemns every connection opened until now: the pool closes each one the next time it would
/// hand it out or take it back. Process-wide (one service, one database): another pool of the
/// process pays one reconnect per connection, nothing else.
pub fn retire_older_connections() {
    let now = epoch().elapsed().as_nanos() as u64 + 1;
    LAST_LOST.fetch_max(now, Ordering::AcqRel);
}

/// When a lost connection was last seen: nanoseconds after [`epoch`], plus one (0: never).
static LAST_LOST: AtomicU64 = AtomicU64::new(0);

/// Changes whenever a connection is lost ([`connection_lost`]). What the service learnt of the
/// database before a change may be stale in a way no later read shows at once: a failover to a
/// standby that had not received the last commits loses them. A cache of database state keeps
/// the generation of each entry and drops those of an older one (`customers::recent`).
pub fn connection_generation() -> u64 {
    LAST_LOST.load(Ordering::Acquire)
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub(super) fn lost_signal() -> &'static tokio::sync::Notify {
    static LOST: OnceLock<tokio::sync::Notify> = OnceLock::new();
    LOST.get_or_init(tokio::sync::Notify::new)
}

/// Woken when the monitor points the pool at another host.
pub(super) fn host_changed_signal() -> &'static tokio::sync::Notify {
    static CHANGED: OnceLock<tokio::sync::Notify> = OnceLock::new();
    CHANGED.get_or_init(tokio::sync::Notify::new)
}

/// Resolves after [`connection_lost`] (the monitor's wake-up).
pub(super) async fn wait_for_lost_connection() {
    lost_signal().notified().await
}

/// Was this connection opened before the last lost connection?
pub(super) fn is_condemned(meta: &PoolConnectionMetadata) -> bool {
    let lost = LAST_LOST.load(Ordering::Acquire);
    if lost == 0 {
        return false;
    }
    let lost_at = epoch() + Duration::from_nanos(lost - 1);
    Instant::now()
        .checked_sub(meta.age)
        .is_none_or(|opened| opened <= lost_at)
}
