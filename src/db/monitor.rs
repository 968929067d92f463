//! The database monitor: one background task per service that keeps the pool pointed at a host
//! that serves (the first acceptable one of [`Hosts`]) and notices a failover without waiting
//! for a request to run into it.
//!
//! A host refused for TLS (a certificate that does not verify, a server without TLS where it is
//! required) is logged as an error, once per distinct failure: the service does not serve
//! through it (`/readyz` stays 503), and the log says why.
//!
//! It holds one connection of its own to the selected host and checks it every
//! [`HEARTBEAT`] (a `Sync` round trip, or the read-only check for a read-write target), bounded
//! by [`PROBE_TIMEOUT`](super::hosts::PROBE_TIMEOUT). When that check fails, or a request
//! reports a lost connection ([`super::connection_lost`]), every connection opened before then
//! is condemned (see [`super::retire_older_connections`]) and the hosts are tried again until
//! one is acceptable; the pool then opens its connections there, and a request still waiting
//! for a connection to the old host starts again on the new one.

use std::time::Duration;

use sqlx::{Connection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::hosts::{is_read_only, Hosts, PROBE_TIMEOUT};

/// How often the monitor checks its connection.
pub const HEARTBEAT: Duration = Duration::from_millis(250);
/// Pause between rounds over the hosts while none is acceptable.
const RETRY: Duration = Duration::from_millis(100);

/// Stops when [`Monitor::stop`] is called or when dropped.
pub struct Monitor {
    stop: CancellationToken,
    task: JoinHandle<()>,
    _stop_on_drop: tokio_util::sync::DropGuard,
}

impl Monitor {
    /// Starts watching. `hosts` must be the pool's own (same per-connection options), with the
    /// host the pool uses selected.
    pub fn spawn(pool: PgPool, hosts: Hosts) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(pool, hosts, stop.clone()));
        Self {
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
            task,
        }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn run(pool: PgPool, mut hosts: Hosts, stop: CancellationToken) {
    let mut in_use = hosts.selected_index();
    let mut tls_reported: Option<String> = None;
    loop {
        // Select, again and again, until a host is acceptable (see Hosts::select).
        let mut conn = loop {
            if let Some((_, conn)) = hosts.select().await {
                if tls_reported.take().is_some() {
                    tracing::info!(
                        host = hosts.label(hosts.selected_index()),
                        "TLS to the database works again"
                    );
                }
                break conn;
            }
            if let Some(failure) = hosts.tls_failure() {
                if tls_reported.as_deref() != Some(failure) {
                    tracing::error!(error = failure, "the database cannot be used: TLS failed");
                    tls_reported = Some(failure.to_owned());
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        };
        let selected = hosts.selected_index();
        if selected != in_use {
            // Connections to the host left behind must not be handed out again.
            super::retire_older_connections();
            pool.set_connect_options(hosts.selected().clone());
            super::lost::host_changed_signal().notify_waiters();
            tracing::warn!(
                from = hosts.label(in_use),
                to = hosts.label(selected),
                "database host changed"
            );
            in_use = selected;
        }

        // Watch, until the heartbeat fails or a request reports a lost connection.
        let reason = loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    conn.close().await.ok();
                    return;
                }
                _ = super::lost::wait_for_lost_connection() => break "a request lost its connection",
                _ = tokio::time::sleep(HEARTBEAT) => {}
            }
            let check = async {
                if hosts.read_write() {
                    is_read_only(&mut conn).await.map(|read_only| !read_only)
                } else {
                    conn.ping().await.map(|()| true)
                }
            };
            match tokio::time::timeout(PROBE_TIMEOUT, check).await {
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) => break "the host became read-only",
                Ok(Err(_)) => break "the monitor's connection failed",
                Err(_) => break "the host did not answer the heartbeat",
            }
        };
        // Dropped, not closed: the host may not be answering.
        drop(conn);
        super::retire_older_connections();
        tracing::warn!(
            host = hosts.label(in_use),
            reason,
            "database failover suspected; selecting a host again"
        );
    }
}
