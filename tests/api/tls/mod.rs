//! TLS to PostgreSQL, as libpq (docs/operations.md, "TLS to PostgreSQL"): each `sslmode` against
//! a server with `ssl = on` and certificates of a CA made here, a wrong CA, a wrong host name, a
//! `hostssl`-only server, several hosts, and a TLS failure at start-up (refused with migrations
//! on start, `/readyz` 503 without) with the log naming it.

mod server;

use std::time::Duration;

use customers_api::db::hosts::{probe, ProbeError};
use customers_api::db::Hosts;
use sqlx::PgConnection;

use crate::support::*;
use server::{Ca, Hba, TlsServer};

/// Connects the way the service does (its URL parsing, the monitor's probe) to the first host
/// of `url`; whether the session is encrypted, or why it failed.
async fn connect(url: &str) -> Result<bool, ProbeError> {
    let hosts = Hosts::parse(url).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = probe(hosts.options(0), false).await?;
    Ok(session_is_encrypted(&mut conn).await)
}

async fn session_is_encrypted(conn: &mut PgConnection) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(conn)
        .await
        .expect("pg_stat_ssl")
}

fn root(path: &std::path::Path) -> String {
    format!("sslrootcert={}", path.display())
}

#[tokio::test]
async fn each_sslmode_connects_where_libpq_does_and_encrypts_when_asked() {
    let ca = Ca::new("customers-api test CA");
    let server = TlsServer::start(&ca, &["localhost", "127.0.0.1"], Hba::Any).await;
    let ca_file = ca.write(server.dir.path(), "ca.pem");
    let root = root(&ca_file);
    for (host, query, encrypted) in [
        ("127.0.0.1", "sslmode=disable".to_owned(), false),
        // No sslmode to a server on this host: no TLS (docs/operations.md#tls-to-postgresql).
        ("127.0.0.1", String::new(), false),
        ("localhost", String::new(), false),
        // libpq's default written out: TLS when the server offers it, certificate unchecked.
        ("127.0.0.1", "sslmode=prefer".to_owned(), true),
        ("127.0.0.1", "sslmode=require".to_owned(), true),
        ("127.0.0.1", format!("sslmode=require&{root}"), true),
        ("127.0.0.1", format!("sslmode=verify-ca&{root}"), true),
        ("localhost", format!("sslmode=verify-full&{root}"), true),
        ("127.0.0.1", format!("sslmode=verify-full&{root}"), true),
    ] {
        let url = server.url(host, "postgres", &query);
        let ssl = connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{host} ?{query}: {e}"));
        assert_eq!(ssl, encrypted, "{host} ?{query}");
    }
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_refused_when_the_chain_is_verified() {
    let ca = Ca::new("the server's CA");
    let server = TlsServer::start(&ca, &["localhost", "127.0.0.1"], Hba::Any).await;
    let other = root(&Ca::new("another CA").write(server.dir.path(), "other-ca.pem"));
    for query in [
        format!("sslmode=verify-ca&{other}"),
        format!("sslmode=verify-full&{other}"),
        // libpq's rule: require with a root certificate verifies the chain.
        format!("sslmode=require&{other}"),
        // Without sslrootcert: the public roots, which do not know a private CA either.
        "sslmode=verify-full".to_owned(),
        "sslrootcert=system".to_owned(),
    ] {
        let error = connect(&server.url("localhost", "postgres", &query))
            .await
            .expect_err(&query);
        assert!(error.tls, "{query}: not a TLS failure: {error}");
        assert!(
            error
                .reason
                .contains("invalid peer certificate: UnknownIssuer"),
            "{query}: {error}"
        );
    }
    // Without verification, the same certificate is accepted (and the session encrypted).
    for query in ["sslmode=require", "sslmode=prefer"] {
        assert!(connect(&server.url("localhost", "postgres", query))
            .await
            .expect(query));
    }
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_host_and_says_so() {
    let ca = Ca::new("customers-api test CA");
    let server = TlsServer::start(&ca, &["db.internal.example"], Hba::Any).await;
    let root = root(&ca.write(server.dir.path(), "ca.pem"));
    let error = connect(&server.url(
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&{root}"),
    ))
    .await
    .expect_err("a certificate for another host");
    assert!(error.tls, "{error}");
    assert!(
        error
            .reason
            .contains("certificate not valid for name \"localhost\"")
            && error.reason.contains("db.internal.example"),
        "the error names the mismatch: {error}"
    );
    // verify-ca checks the chain only: the same certificate passes.
    let url = server.url(
        "localhost",
        "postgres",
        &format!("sslmode=verify-ca&{root}"),
    );
    assert!(connect(&url).await.expect("verify-ca"));
}

#[tokio::test]
async fn a_hostssl_only_server_refuses_sslmode_disable() {
    let ca = Ca::new("customers-api test CA");
    let server = TlsServer::start(&ca, &["localhost", "127.0.0.1"], Hba::SslOnly).await;
    let error = connect(&server.url("127.0.0.1", "postgres", "sslmode=disable"))
        .await
        .expect_err("no pg_hba.conf entry without TLS");
    assert!(!error.tls, "the server refused, TLS did not fail: {error}");
    assert!(error.reason.contains("no encryption"), "{error}");
    // Nor does a loopback host without an sslmode (no TLS by default there): it must be written.
    let error = connect(&server.url("127.0.0.1", "postgres", ""))
        .await
        .expect_err("no TLS by default on loopback");
    assert!(
        !error.tls && error.reason.contains("no encryption"),
        "{error}"
    );
    let root = root(&ca.write(server.dir.path(), "ca.pem"));
    for query in [
        "sslmode=prefer".to_owned(),
        format!("sslmode=verify-full&{root}"),
    ] {
        assert!(connect(&server.url("localhost", "postgres", &query))
            .await
            .expect(&query));
    }
}

#[tokio::test]
async fn a_server_that_asks_for_a_client_certificate_takes_sslcert_and_sslkey() {
    let ca = Ca::new("customers-api test CA");
    let server = TlsServer::start(&ca, &["localhost", "127.0.0.1"], Hba::ClientCert).await;
    let dir = server.dir.path();
    let root = root(&ca.write(dir, "ca.pem"));
    let (cert, key) = ca.client_certificate("postgres");
    std::fs::write(dir.join("client.crt"), cert).unwrap();
    std::fs::write(dir.join("client.key"), key).unwrap();
    let base = format!("sslmode=verify-full&{root}");
    let error = connect(&server.url("localhost", "postgres", &base))
        .await
        .expect_err("no client certificate");
    assert!(error.reason.contains("certificate"), "{error}");
    let only_cert = format!(
        "sslcert={}&sslkey={}",
        dir.join("client.crt").display(),
        dir.join("client.key").display()
    );
    let with_cert = format!("{base}&{only_cert}");
    assert!(connect(&server.url("localhost", "postgres", &with_cert))
        .await
        .expect("the client certificate is accepted"));
    // No sslmode, but a client certificate named: TLS all the same on loopback (prefer, as
    // libpq), so that the certificate is presented (docs/operations.md#tls-to-postgresql).
    assert!(connect(&server.url("127.0.0.1", "postgres", &only_cert))
        .await
        .expect("a client certificate without an sslmode"));
    // A certificate for another user does not log in as postgres.
    let (cert, key) = ca.client_certificate("someone_else");
    std::fs::write(dir.join("client.crt"), cert).unwrap();
    std::fs::write(dir.join("client.key"), key).unwrap();
    let error = connect(&server.url("localhost", "postgres", &with_cert))
        .await
        .expect_err("a certificate for another user");
    // The server's words: the certificate's name is not the user's.
    assert!(
        error
            .reason
            .contains("authentication failed for user \"postgres\""),
        "{error}"
    );
}

#[tokio::test]
async fn several_hosts_each_use_the_tls_settings_of_the_url() {
    let ca = Ca::new("customers-api test CA");
    let server = TlsServer::start(&ca, &["localhost", "127.0.0.1"], Hba::SslOnly).await;
    let root = root(&ca.write(server.dir.path(), "ca.pem"));
    let dead = free_port();
    for attrs in ["", "&target_session_attrs=read-write"] {
        let url = format!(
            "postgres://postgres@127.0.0.1:{dead},localhost:{}/postgres?sslmode=verify-full&{root}{attrs}",
            server.port
        );
        let mut hosts = Hosts::parse(&url).expect("a multi-host URL");
        let (index, mut conn) = hosts.select().await.expect("the second host answers");
        assert_eq!(index, 1, "{attrs}");
        assert!(session_is_encrypted(&mut conn).await, "{attrs}");
    }
    // A refused certificate is what select reports when no host is acceptable.
    let other = root_of_other_ca(&server);
    let mut hosts = Hosts::parse(&format!(
        "postgres://postgres@127.0.0.1:{dead},localhost:{}/postgres?sslmode=verify-full&{other}",
        server.port
    ))
    .unwrap();
    assert!(hosts.select().await.is_none());
    let failure = hosts.tls_failure().expect("the TLS failure is kept");
    assert!(
        failure.contains(&format!("localhost:{}", server.port))
            && failure.contains("sslmode=verify-full")
            && failure.contains("UnknownIssuer"),
        "{failure}"
    );
}

fn root_of_other_ca(server: &TlsServer) -> String {
    root(&Ca::new("another CA").write(server.dir.path(), "other-ca.pem"))
}

/// The service itself, over several hosts with verify-full: ready, and every session it opened
/// (the pool's and the monitor's) is encrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_serves_over_tls_on_several_hosts() {
    let ca = Ca::new("customers-api test CA");
    let server = TlsServer::start(&ca, &["localhost", "127.0.0.1"], Hba::SslOnly).await;
    server.create_database("customers").await;
    let root = root(&ca.write(server.dir.path(), "ca.pem"));
    let url = format!(
        "postgres://postgres@127.0.0.1:{},localhost:{}/customers?sslmode=verify-full&{root}&target_session_attrs=read-write",
        free_port(),
        server.port
    );
    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start_with_env(dir.path(), &url, "tls-several-hosts", &[]);
    let client = reqwest::Client::new();
    service.wait_ready(&client).await;
    let created = client
        .post(service.url("/v1/customers"))
        .bearer_auth(token(ORG, "test", ADMIN))
        .json(&full_customer())
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201, "{:?}", created.text().await);

    let admin = server.url(
        "localhost",
        "customers",
        &format!("sslmode=verify-full&{root}"),
    );
    let mut conn = probe(Hosts::parse(&admin).unwrap().options(0), false)
        .await
        .unwrap();
    let sessions: Vec<bool> = sqlx::query_scalar(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'customers-api'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(
        sessions.len() >= 2,
        "the pool's and the monitor's sessions: {sessions:?}"
    );
    assert!(sessions.iter().all(|ssl| *ssl), "{sessions:?}");
    assert!(service.terminate().await.success());
}

/// A TLS failure is never served through: with migrations on start the service does not start,
/// without them `/readyz` stays 503; either way the log names the TLS error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_failure_stops_start_up_or_keeps_readyz_503_and_is_logged() {
    let ca = Ca::new("customers-api test CA");
    let server = TlsServer::start(&ca, &["localhost", "127.0.0.1"], Hba::Any).await;
    server.create_database("customers").await;
    let other = root_of_other_ca(&server);
    let url = server.url(
        "localhost",
        "customers",
        &format!("sslmode=verify-full&{other}"),
    );
    let named = |log: &str| {
        log.contains(&format!(
            "TLS to the database at localhost:{} failed (sslmode=verify-full)",
            server.port
        )) && log.contains("UnknownIssuer")
    };

    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path(), free_port())
        .env("DATABASE_URL", &url)
        .env("CUSTOMERS_API__DATABASE__MIGRATE_ON_START", "true")
        .output()
        .expect("run the binary");
    assert!(
        !out.status.success(),
        "started through a refused certificate"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(named(&stderr), "{stderr}");

    let mut service = Service::start_with_env(dir.path(), &url, "tls-refused", &[]);
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline || !named(&service.log()) {
        let status = client
            .get(service.url("/readyz"))
            .send()
            .await
            .map(|r| r.status());
        assert!(
            status.as_ref().map_or(true, |s| *s == 503),
            "ready through a refused certificate: {status:?}"
        );
        assert!(
            std::time::Instant::now() < deadline + Duration::from_secs(30),
            "the log does not name the TLS failure: {}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(service.terminate().await.success());
}

/// The figure in docs/operations.md: how long the first pool connection takes with and without
/// TLS (connect, handshake, the session set-up), median of 15. A measurement, not a test:
/// `cargo test --test api tls::handshake_cost -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn handshake_cost() {
    let ca = Ca::new("customers-api test CA");
    let server = TlsServer::start(&ca, &["localhost", "127.0.0.1"], Hba::Any).await;
    server.create_database("customers").await;
    let root = root(&ca.write(server.dir.path(), "ca.pem"));
    let settings = test_settings();
    for query in [
        "sslmode=disable".to_owned(),
        format!("sslmode=verify-full&{root}"),
    ] {
        let mut times = Vec::new();
        for _ in 0..15 {
            let hosts = Hosts::parse(&server.url("localhost", "customers", &query))
                .unwrap()
                .map_options(|o| customers_api::db::connection_options(o, &settings.database));
            let started = std::time::Instant::now();
            let pool = customers_api::db::pool_for(&hosts, &settings.database);
            let conn = customers_api::db::acquire(&pool)
                .await
                .expect("a connection");
            times.push(started.elapsed());
            drop(conn);
            pool.close().await;
        }
        times.sort();
        println!(
            "{query}: median {:?} (min {:?}, max {:?})",
            times[7], times[0], times[14]
        );
    }
}
