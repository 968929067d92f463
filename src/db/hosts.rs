//! Several database hosts in one URL, as libpq, JDBC and pgx accept them, on top of sqlx (which
//! takes one host):
//!
//! ```text
//! postgres://user:secret@10.0.0.1:5432,10.0.0.2:5432,[fd00::3]/customers?target_session_attrs=read-write
//! ```
//!
//! Everything but the host list is shared by all hosts. `target_session_attrs` is `any` (the
//! default: the first host that accepts a connection) or `read-write` (`primary` is taken as a
//! synonym): the first host, in the order given, that is not in recovery and not read-only.
//! The pool connects to the selected host only; [`super::monitor`] selects again when it fails.
//!
//! The TLS settings (`sslmode`, `sslrootcert`, ...; see [`super::tls`]) are part of the shared
//! rest, so every host, and every probe of the monitor, uses them; `verify-full` checks each
//! host's certificate against that host's own name.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;

use super::url::{split_hosts, take_session_attrs, UrlError};

/// The hosts of `database.url`, each with the options of the whole URL, and which one is in use.
#[derive(Debug, Clone)]
pub struct Hosts {
    hosts: Vec<Host>,
    read_write: bool,
    selected: usize,
    /// The TLS failure of the last [`Hosts::select`] that found no host, if one was.
    tls_failure: Option<String>,
}

#[derive(Debug, Clone)]
struct Host {
    options: PgConnectOptions,
    /// `host:port`, for log lines (the URL itself carries the password and is never logged).
    label: String,
}

/// Bounds a probe (connect, and the recovery check) of one host.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a read-write session needs: not a standby, and not read-only by default.
pub(super) const READ_ONLY_SQL: &str =
    "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only')::bool";

impl Hosts {
    /// One host, any session: the private PostgreSQL, or a pool made by hand.
    pub fn single(options: PgConnectOptions) -> Self {
        let label = label(&options);
        Self {
            hosts: vec![Host { options, label }],
            read_write: false,
            selected: 0,
            tls_failure: None,
        }
    }

    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let (url, read_write) = take_session_attrs(url)?;
        let (url, system_roots) = super::tls::take_system_roots(&url);
        let tls_written = super::tls::tls_written(&url);
        let parsed = split_hosts(&url)?;
        let parse = |url: &str| {
            let options = url
                .parse::<PgConnectOptions>()
                .map_err(|e| UrlError::new(format!("is not a valid PostgreSQL URL: {e}")))?;
            super::tls::libpq_rules(options, system_roots).map_err(UrlError::new)
        };
        let hosts = match parsed {
            None => vec![parse(&url)?],
            Some((prefix, list, suffix)) => {
                // sqlx parses everything but the host list, once, with the first host.
                let base = parse(&format!("{prefix}{}{suffix}", list[0].0))?;
                list.into_iter()
                    .map(|(host, port)| {
                        let options = base.clone().host(host.trim_matches(['[', ']']));
                        match port {
                            Some(port) => options.port(port),
                            None => options,
                        }
                    })
                    .collect()
            }
        };
        Ok(Self {
            hosts: hosts
                .into_iter()
                .map(|options| super::tls::loopback_default(options, tls_written))
                .map(|options| Host {
                    label: label(&options),
                    options,
                })
                .collect(),
            read_write,
            selected: 0,
            tls_failure: None,
        })
    }

    pub fn read_write(&self) -> bool {
        self.read_write
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The options of the selected host.
    pub fn selected(&self) -> &PgConnectOptions {
        &self.hosts[self.selected].options
    }

    pub fn selected_index(&self) -> usize {
        self.selected
    }

    pub fn label(&self, index: usize) -> &str {
        &self.hosts[index].label
    }

    pub fn options(&self, index: usize) -> &PgConnectOptions {
        &self.hosts[index].options
    }

    /// Why the last [`Hosts::select`] that found no host failed, when TLS was the reason for one
    /// host: a certificate refused is a configuration to fix, and the log must say so.
    pub fn tls_failure(&self) -> Option<&str> {
        self.tls_failure.as_deref()
    }

    /// Applies `f` to every host's options (the pool's per-connection settings).
    pub fn map_options(mut self, f: impl Fn(PgConnectOptions) -> PgConnectOptions) -> Self {
        for host in &mut self.hosts {
            host.options = f(host.options.clone());
        }
        self
    }

    /// Tries the hosts once each and selects the first acceptable one in the order given;
    /// returns its index and the probe's connection, or `None` (the selection is then
    /// unchanged). For a read-write target the hosts are probed all at once and the first to
    /// take writes wins (only one does; a stalled host first in the list costs nothing then).
    pub async fn select(&mut self) -> Option<(usize, sqlx::PgConnection)> {
        self.tls_failure = None;
        if self.read_write {
            use futures_util::stream::{FuturesUnordered, StreamExt};
            let mut probes: FuturesUnordered<_> = (self.hosts.iter().enumerate())
                .map(|(index, host)| async move { (index, probe(&host.options, true).await) })
                .collect();
            while let Some((index, result)) = probes.next().await {
                match result {
                    Ok(conn) => {
                        self.selected = index;
                        return Some((index, conn));
                    }
                    Err(reason) => not_selected(&self.hosts[index], reason, &mut self.tls_failure),
                }
            }
            return None;
        }
        for index in 0..self.hosts.len() {
            match probe(&self.hosts[index].options, self.read_write).await {
                Ok(conn) => {
                    self.selected = index;
                    return Some((index, conn));
                }
                Err(reason) => not_selected(&self.hosts[index], reason, &mut self.tls_failure),
            }
        }
        None
    }
}

/// Logs why a host was not selected, and keeps the first TLS failure of the round.
fn not_selected(host: &Host, reason: ProbeError, tls_failure: &mut Option<String>) {
    tracing::debug!(host = %host.label, %reason, "database host not selected");
    if reason.tls {
        tls_failure.get_or_insert_with(|| super::tls::describe(&host.options, &reason.reason));
    }
}

/// Why a probe found a host unacceptable.
#[derive(Debug)]
pub struct ProbeError {
    pub reason: String,
    /// The TLS handshake failed (see [`super::tls::failure`]).
    pub tls: bool,
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl From<String> for ProbeError {
    fn from(reason: String) -> Self {
        Self { reason, tls: false }
    }
}

/// Connects to one host and, for a read-write target, checks that it takes writes; bounded by
/// [`PROBE_TIMEOUT`].
pub async fn probe(
    options: &PgConnectOptions,
    read_write: bool,
) -> Result<sqlx::PgConnection, ProbeError> {
    let attempt = async {
        let mut conn = sqlx::PgConnection::connect_with(options)
            .await
            .map_err(|e| match super::tls::failure(&e) {
                Some(reason) => ProbeError { reason, tls: true },
                None => ProbeError::from(e.to_string()),
            })?;
        if read_write && is_read_only(&mut conn).await.map_err(|e| e.to_string())? {
            return Err("read-only (a standby)".to_owned().into());
        }
        Ok(conn)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}").into()),
    }
}

pub(super) async fn is_read_only(conn: &mut sqlx::PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(READ_ONLY_SQL).fetch_one(conn).await
}

fn label(options: &PgConnectOptions) -> String {
    format!("{}:{}", options.get_host(), options.get_port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(url: &str) -> Vec<(String, u16)> {
        let parsed = Hosts::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        (0..parsed.len())
            .map(|i| {
                let o = parsed.options(i);
                (o.get_host().to_owned(), o.get_port())
            })
            .collect()
    }

    #[test]
    fn one_host_is_left_to_sqlx() {
        let parsed = Hosts::parse("postgres://u:p@db.example:6543/customers").unwrap();
        assert_eq!(parsed.len(), 1);
        assert!(!parsed.read_write());
        assert_eq!(parsed.selected().get_host(), "db.example");
        assert_eq!(parsed.selected().get_port(), 6543);
        assert_eq!(parsed.selected().get_database(), Some("customers"));
        assert_eq!(parsed.selected().get_username(), "u");
    }

    #[test]
    fn several_hosts_share_the_rest_of_the_url() {
        let url = "postgres://app:s%40cret,x@127.0.0.1:5441,127.0.0.1:5442,127.0.0.1:5443/db\
                   ?target_session_attrs=read-write&application_name=x&sslmode=disable";
        assert_eq!(
            hosts(url),
            [
                ("127.0.0.1".to_owned(), 5441),
                ("127.0.0.1".to_owned(), 5442),
                ("127.0.0.1".to_owned(), 5443)
            ]
        );
        let parsed = Hosts::parse(url).unwrap();
        assert!(parsed.read_write());
        for i in 0..3 {
            let o = parsed.options(i);
            assert_eq!(o.get_database(), Some("db"));
            assert_eq!(o.get_username(), "app");
            assert_eq!(o.get_application_name(), Some("x"));
        }
        assert_eq!(parsed.label(1), "127.0.0.1:5442");
    }

    #[test]
    fn ports_are_optional_and_ipv6_is_bracketed() {
        assert_eq!(
            hosts("postgresql://[::1]:5441,[fd00::2],db3/x"),
            [
                ("::1".to_owned(), 5441),
                ("fd00::2".to_owned(), 5432),
                ("db3".to_owned(), 5432)
            ]
        );
        // No user info, no path.
        assert_eq!(
            hosts("postgres://a:1,b:2"),
            [("a".to_owned(), 1), ("b".to_owned(), 2)]
        );
        assert_eq!(hosts("postgres://a:1,b:2?sslmode=disable").len(), 2);
    }

    #[test]
    fn session_attrs() {
        let rw = |url: &str| Hosts::parse(url).map(|h| h.read_write());
        assert!(!rw("postgres://h/db").unwrap());
        assert!(!rw("postgres://h/db?target_session_attrs=any").unwrap());
        assert!(rw("postgres://h/db?target_session_attrs=read-write").unwrap());
        assert!(rw("postgres://h,g/db?sslmode=disable&target_session_attrs=primary").unwrap());
        let e = rw("postgres://h,g/db?target_session_attrs=standby").unwrap_err();
        assert!(e.to_string().contains("standby"), "{e}");
    }

    #[test]
    fn bad_host_lists_are_refused_without_echoing_the_url() {
        for (url, expect) in [
            (
                "postgres://u:hunter2@a:1,b:x/db",
                "host 2 of the host list has an invalid port",
            ),
            (
                "postgres://u:hunter2@a:1,:5/db",
                "host 2 of the host list is empty",
            ),
            (
                "postgres://u:hunter2@a:0,b/db",
                "host 1 of the host list has an invalid port",
            ),
            (
                "postgres://u:hunter2@a,[::1/db",
                "host 2 of the host list has an unclosed [",
            ),
        ] {
            let e = Hosts::parse(url).unwrap_err().to_string();
            assert!(e.contains(expect), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
