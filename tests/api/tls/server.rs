//! A PostgreSQL with `ssl = on` on 127.0.0.1, with certificates made here by a CA of the test's
//! own (rcgen), for the TLS tests. It is a [`ScratchPostgres`] (so it stops when dropped) that
//! also listens on TCP; the certificate, the key and `pg_hba.conf` are written into its data
//! directory and take effect on a reload.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use sqlx::{Connection, Executor, PgConnection};

use crate::support::*;

/// A certificate authority of the test's own.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a CA key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("a self-signed CA"),
        }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA's certificate to `dir/<file>` (what a client names as `sslrootcert`).
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.pem()).expect("write the CA certificate");
        path
    }

    /// A client certificate for the user `user` (its common name) and its key, PEM.
    pub fn client_certificate(&self, user: &str) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        params.distinguished_name.push(DnType::CommonName, user);
        let key = KeyPair::generate().expect("a client key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a signed certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for `names` (host names or IP addresses) and its key, PEM.
    pub fn server_certificate(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        let key = KeyPair::generate().expect("a server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a signed certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// Who may connect without TLS.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hba {
    /// `host`: with or without TLS.
    Any,
    /// `hostssl` only: a connection without TLS finds no entry and is refused.
    SslOnly,
    /// `hostssl` with `clientcert=verify-full`: a client certificate the CA signed, for the user.
    ClientCert,
}

pub struct TlsServer {
    pub port: u16,
    scratch: ScratchPostgres,
    /// Where the tests' client-side files go (CA certificates).
    pub dir: tempfile::TempDir,
}

impl TlsServer {
    /// Starts a server on 127.0.0.1 whose certificate, issued by `ca`, names `names`.
    pub async fn start(ca: &Ca, names: &[&str], hba: Hba) -> Self {
        let port = free_port();
        let port_text = port.to_string();
        let scratch = tokio::task::spawn_blocking(move || {
            ScratchPostgres::start_with_settings(&[
                ("listen_addresses", "127.0.0.1"),
                ("port", &port_text),
            ])
        })
        .await
        .expect("the scratch PostgreSQL starts");

        let data = scratch.data_dir().to_path_buf();
        let (cert, key) = ca.server_certificate(names);
        let entry = match hba {
            Hba::Any => "host all all 127.0.0.1/32 trust",
            Hba::SslOnly => "hostssl all all 127.0.0.1/32 trust",
            Hba::ClientCert => "hostssl all all 127.0.0.1/32 trust clientcert=verify-full",
        };
        let hba = format!("local all all trust\n{entry}\n");
        // Owned by the account the server runs as; the key readable by it alone (PostgreSQL
        // refuses a key others can read).
        for (file, text, mode) in [
            ("server.crt", cert.as_str(), 0o644),
            ("server.key", key.as_str(), 0o600),
            // The CA client certificates are checked against (ssl_ca_file).
            ("root.crt", ca.pem().as_str(), 0o644),
            ("pg_hba.conf", hba.as_str(), 0o600),
        ] {
            write_owned_like(&data, file, text, mode);
        }
        let mut admin = PgConnection::connect_with(&scratch.options())
            .await
            .expect("connect to the scratch PostgreSQL");
        admin
            .execute("ALTER SYSTEM SET ssl = on")
            .await
            .expect("ssl = on");
        admin
            .execute("ALTER SYSTEM SET ssl_ca_file = 'root.crt'")
            .await
            .expect("ssl_ca_file");
        admin
            .execute("SELECT pg_reload_conf()")
            .await
            .expect("reload");
        admin.close().await.ok();
        // The reload is taken by the postmaster in its own time; a new session shows it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut conn = PgConnection::connect_with(&scratch.options())
                .await
                .expect("connect to the scratch PostgreSQL");
            let ssl: String = sqlx::query_scalar("SHOW ssl")
                .fetch_one(&mut conn)
                .await
                .expect("SHOW ssl");
            conn.close().await.ok();
            if ssl == "on" {
                break;
            }
            assert!(Instant::now() < deadline, "ssl = on did not take effect");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let dir = tempfile::tempdir().expect("a temp dir");
        TlsServer { port, scratch, dir }
    }

    /// `postgres://postgres@<host>:<port>/<database>?<query>`.
    pub fn url(&self, host: &str, database: &str, query: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/{database}?{query}",
            self.port
        )
    }

    /// A migrated database for the service (created over the Unix socket).
    pub async fn create_database(&self, name: &str) {
        self.scratch.create_database(name).await;
    }
}

/// Writes `dir/file` owned by the owner of `dir`, with `mode`.
fn write_owned_like(dir: &Path, file: &str, text: &str, mode: u32) {
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write a server file");
    let owner = std::fs::metadata(dir).expect("the data directory");
    nix::unistd::chown(
        &path,
        Some(nix::unistd::Uid::from_raw(owner.uid())),
        Some(nix::unistd::Gid::from_raw(owner.gid())),
    )
    .expect("hand the file to the PostgreSQL account");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
