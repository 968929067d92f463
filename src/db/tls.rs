//! TLS to PostgreSQL as libpq does it, on top of sqlx (built with rustls). sqlx reads `sslmode`,
//! `sslrootcert`, `sslcert` and `sslkey` from the URL (or `PGSSLMODE`, `PGSSLROOTCERT`, ...) and
//! does the handshake; this module adds what libpq does and sqlx does not:
//!
//! - `sslmode=require` with a root certificate verifies the chain, as `verify-ca` does (libpq:
//!   "if a root CA file exists, the behavior of sslmode=require will be the same as that of
//!   verify-ca"). sqlx alone would accept any certificate.
//! - `sslmode=allow` is refused: sqlx takes it as `disable`, which is not what libpq does.
//! - The certificate and key files are checked at start-up, with an error that names the setting.
//! - A TLS failure is told apart from the other connection failures ([`failure`]), so that the
//!   log names it: a refused certificate is a configuration to fix, not a host that is down.
//!
//! Without `sslrootcert`, `verify-ca`/`verify-full` verify against the Mozilla root certificates
//! compiled in (webpki-roots). `sslrootcert=system` says so explicitly (libpq's spelling for
//! the system's roots) and, as in libpq, means `verify-full`.

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// Removes `sslrootcert=system` from a URL's query (sqlx would take it for a file name); true
/// when it was there.
pub fn take_system_roots(url: &str) -> (String, bool) {
    let Some((head, query)) = url.split_once('?') else {
        return (url.to_owned(), false);
    };
    let is_system = |pair: &&str| {
        matches!(
            pair.split_once('='),
            Some(("sslrootcert" | "ssl-root-cert" | "ssl-ca", "system"))
        )
    };
    if !query.split('&').any(|pair| is_system(&pair)) {
        return (url.to_owned(), false);
    }
    let kept: Vec<&str> = query.split('&').filter(|pair| !is_system(pair)).collect();
    match kept.is_empty() {
        true => (head.to_owned(), true),
        false => (format!("{head}?{}", kept.join("&")), true),
    }
}

/// The URL's options with libpq's rules applied, or what is wrong (never the URL itself).
/// `system_roots`: the URL said `sslrootcert=system` (see [`take_system_roots`]).
pub fn libpq_rules(
    options: PgConnectOptions,
    system_roots: bool,
) -> Result<PgConnectOptions, String> {
    let url = sqlx::ConnectOptions::to_url_lossy(&options);
    let (mut root_cert, mut client_cert, mut client_key) = (false, false, false);
    for (key, value) in url.query_pairs() {
        if !matches!(key.as_ref(), "sslrootcert" | "sslcert" | "sslkey") {
            continue;
        }
        root_cert |= key == "sslrootcert";
        client_cert |= key == "sslcert";
        client_key |= key == "sslkey";
        // A file (from the URL or PGSSL*), not a PEM given inline by code.
        if let Some(path) = value.strip_prefix("file: ") {
            if let Err(e) = std::fs::File::open(path) {
                return Err(format!("{key}: cannot read {path}: {e}"));
            }
        }
    }
    // libpq asks for no TLS on a Unix socket (PostgreSQL offers none there), whatever sslmode.
    if options.get_socket().is_some() || options.get_host().starts_with('/') {
        return Ok(options.ssl_mode(PgSslMode::Disable));
    }
    if client_cert != client_key {
        return Err(
            "sslcert and sslkey go together: a client certificate needs its key".to_owned(),
        );
    }
    if system_roots {
        // libpq: "sslrootcert=system" requires verify-full, and makes it the default.
        return match options.get_ssl_mode() {
            PgSslMode::VerifyFull | PgSslMode::Prefer => {
                Ok(options.ssl_mode(PgSslMode::VerifyFull))
            }
            other => Err(format!(
                "sslrootcert=system needs sslmode=verify-full, not {}",
                mode_name(&options.clone().ssl_mode(other))
            )),
        };
    }
    match options.get_ssl_mode() {
        PgSslMode::Allow => Err(
            "sslmode=allow is not supported (disable, prefer, require, verify-ca or verify-full)"
                .to_owned(),
        ),
        PgSslMode::Require if root_cert => Ok(options.ssl_mode(PgSslMode::VerifyCa)),
        _ => Ok(options),
    }
}

/// Whether the URL or the environment says anything of TLS: an `sslmode`, a root certificate
/// or a client certificate or key, in the URL (under any of the names sqlx reads) or as
/// `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` or `PGSSLKEY`. Without any of them sqlx takes
/// `prefer`.
pub fn tls_written(url: &str) -> bool {
    const KEYS: [&str; 9] = [
        "sslmode",
        "ssl-mode",
        "sslrootcert",
        "ssl-root-cert",
        "ssl-ca",
        "sslcert",
        "ssl-cert",
        "sslkey",
        "ssl-key",
    ];
    const VARS: [&str; 4] = ["PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"];
    let in_url = url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| KEYS.contains(&pair.split_once('=').map_or(pair, |(key, _)| key)))
    });
    in_url || VARS.iter().any(|var| std::env::var_os(var).is_some())
}

/// No TLS to a server on this host unless TLS was asked for ([`tls_written`]): a host that is
/// a loopback address or `localhost` gets `disable` instead of the default `prefer`.
///
/// `prefer` encrypts when the server offers TLS but checks no certificate, so it only hides the
/// traffic from someone who can watch the path to the server. On loopback nobody can who could
/// not read the service's memory as well, and the encryption cost every request a tenth of its
/// instructions (docs/operations.md#tls-to-postgresql). An `sslmode` written, `prefer`
/// included, is kept as libpq would keep it, and so is `prefer` when a certificate or key is
/// named (a client certificate is presented only over TLS); that is also the way to reach a
/// loopback server that accepts only TLS (`hostssl` in its `pg_hba.conf`).
pub fn loopback_default(options: PgConnectOptions, tls_written: bool) -> PgConnectOptions {
    let host = options.get_host().trim_matches(['[', ']']);
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match !tls_written && loopback && matches!(options.get_ssl_mode(), PgSslMode::Prefer) {
        true => options.ssl_mode(PgSslMode::Disable),
        false => options,
    }
}

/// The `sslmode` as written in a URL.
pub fn mode_name(options: &PgConnectOptions) -> &'static str {
    match options.get_ssl_mode() {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

/// What went wrong in the TLS handshake, when `e` is a TLS failure: rustls' own words, such as
/// `invalid peer certificate: certificate not valid for name "db.example"; certificate is only
/// valid for ...` or `invalid peer certificate: UnknownIssuer`.
pub fn failure(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Tls(e) => Some(e.to_string()),
        // rustls reports a failed handshake as an I/O error that carries its own.
        sqlx::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(|e| e.to_string()),
        _ => None,
    }
}

/// [`failure`] of a migration's connection.
pub fn migration_failure(e: &sqlx::migrate::MigrateError) -> Option<String> {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => failure(e),
        _ => None,
    }
}

/// A line for the log: the host, the mode and what failed.
pub fn describe(options: &PgConnectOptions, what: &str) -> String {
    format!(
        "TLS to the database at {}:{} failed (sslmode={}): {what}",
        options.get_host(),
        options.get_port(),
        mode_name(options)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(url: &str) -> Result<PgConnectOptions, String> {
        let (url, system) = take_system_roots(url);
        libpq_rules(url.parse().expect("a URL"), system)
    }

    #[test]
    fn sslrootcert_system_means_the_public_roots_and_verify_full() {
        let mode = |url: &str| rules(url).map(|o| mode_name(&o));
        assert_eq!(
            mode("postgres://h/db?sslrootcert=system"),
            Ok("verify-full")
        );
        assert_eq!(
            mode("postgres://h/db?sslmode=verify-full&sslrootcert=system&application_name=x"),
            Ok("verify-full")
        );
        let e = mode("postgres://h/db?sslmode=require&sslrootcert=system").unwrap_err();
        assert!(
            e.contains("sslrootcert=system needs sslmode=verify-full, not require"),
            "{e}"
        );
        assert_eq!(
            take_system_roots("postgres://h/db?a=1&sslrootcert=system&b=2"),
            ("postgres://h/db?a=1&b=2".to_owned(), true)
        );
        assert_eq!(
            take_system_roots("postgres://h/db?sslrootcert=/x.pem"),
            ("postgres://h/db?sslrootcert=/x.pem".to_owned(), false)
        );
    }

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let path = ca.path().display();
        let mode = |url: &str| mode_name(&rules(url).unwrap());
        assert_eq!(
            mode(&format!(
                "postgres://h/db?sslmode=require&sslrootcert={path}"
            )),
            "verify-ca"
        );
        assert_eq!(mode("postgres://h/db?sslmode=require"), "require");
        assert_eq!(
            mode(&format!(
                "postgres://h/db?sslmode=verify-full&sslrootcert={path}"
            )),
            "verify-full"
        );
        assert_eq!(
            mode(&format!(
                "postgres://h/db?sslmode=disable&sslrootcert={path}"
            )),
            "disable"
        );
        assert_eq!(mode("postgres://h/db"), "prefer");
        assert_eq!(
            mode("postgres://u@localhost/db?host=/run/pg&sslmode=require"),
            "disable"
        );
    }

    #[test]
    fn a_loopback_host_without_an_sslmode_is_not_encrypted() {
        // Decided from the URL alone: no connection is made (no PGSSL* variable in tests).
        let mode = |url: &str| {
            let options = rules(url).unwrap();
            mode_name(&loopback_default(options, tls_written(url)))
        };
        let ca = tempfile::NamedTempFile::new().unwrap();
        let ca = ca.path().display();
        for host in ["127.0.0.1", "127.9.8.7", "[::1]", "localhost", "LOCALHOST"] {
            assert_eq!(
                mode(&format!("postgres://u@{host}:5432/db")),
                "disable",
                "{host}"
            );
            assert_eq!(
                mode(&format!("postgres://u@{host}/db?application_name=x")),
                "disable",
                "{host}"
            );
            // Written, prefer included: kept.
            for written in ["sslmode=prefer", "ssl-mode=prefer", "sslmode=require"] {
                let url = format!("postgres://u@{host}/db?a=1&{written}");
                assert_eq!(mode(&url), written.split_once('=').unwrap().1, "{url}");
            }
            // A certificate named: TLS was asked for, prefer kept.
            for key in ["sslrootcert", "ssl-root-cert", "ssl-ca"] {
                let url = format!("postgres://u@{host}/db?{key}={ca}");
                assert_eq!(mode(&url), "prefer", "{url}");
            }
        }
        for host in [
            "db.example",
            "10.0.0.1",
            "192.168.1.5",
            "[fd00::3]",
            "localhost.example",
        ] {
            assert_eq!(mode(&format!("postgres://u@{host}/db")), "prefer", "{host}");
        }
        // The client certificate's names (their files are not read here).
        for key in ["sslcert", "ssl-cert", "sslkey", "ssl-key"] {
            assert!(
                tls_written(&format!("postgres://u@h/db?x=1&{key}=/k.pem")),
                "{key}"
            );
        }
        assert!(!tls_written("postgres://u@h/db?sslmodex=1&x=sslmode"));
        assert!(!tls_written("postgres://u@h/db"));
    }

    #[test]
    fn allow_and_unreadable_files_are_refused_by_name() {
        let e = rules("postgres://u:hunter2@h/db?sslmode=allow").unwrap_err();
        assert!(e.contains("sslmode=allow"), "{e}");
        for key in ["sslrootcert", "sslcert", "sslkey"] {
            let e = rules(&format!(
                "postgres://u:hunter2@h/db?{key}=/nonexistent/x.pem"
            ))
            .unwrap_err();
            assert!(
                e.starts_with(&format!("{key}: cannot read /nonexistent/x.pem")),
                "{e}"
            );
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
