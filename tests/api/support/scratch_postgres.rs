//! A PostgreSQL of a test's own, which the test stops and starts again (the fault tests).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use customers_api::private_postgres::{Durability, PrivatePostgres, Watchdog};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

/// A PostgreSQL of a test's own, in a temp dir, that the test stops and starts again. It is
/// stopped when dropped (before its directory goes), so a failing test leaves no server behind.
pub struct ScratchPostgres {
    server: Option<PrivatePostgres>,
    data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl ScratchPostgres {
    /// Blocking (initdb, pg_ctl -w): call it from `spawn_blocking`.
    pub fn start() -> Self {
        Self::start_with_settings(&[])
    }

    /// [`ScratchPostgres::start`] with server settings of the test's (`listen_addresses`,
    /// `port`, ...), which win over the private server's own.
    pub fn start_with_settings(settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        // As root, PostgreSQL runs as an unprivileged account, which must be able to enter it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("open the temp dir to the PostgreSQL account");
        let data_dir = dir.path().join("postgres");
        let server =
            PrivatePostgres::start_with_settings(&data_dir, Durability::Ephemeral, settings)
                .expect("a private PostgreSQL starts");
        watch_scratch(&server);
        ScratchPostgres {
            server: Some(server),
            data_dir,
            _dir: dir,
        }
    }

    /// Its data directory (owned by the account the server runs as).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Connect options for its Unix socket, as the superuser `postgres`.
    pub fn options(&self) -> PgConnectOptions {
        self.server
            .as_ref()
            .expect("the scratch PostgreSQL is running")
            .connect_options()
    }

    /// Blocking: a fast shutdown, which ends every session of the service.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }

    /// Blocking: starts it again on the same data.
    pub fn restart(&mut self) {
        assert!(self.server.is_none(), "restart of a running server");
        let server = PrivatePostgres::start(&self.data_dir, Durability::Ephemeral)
            .expect("the private PostgreSQL starts again");
        watch_scratch(&server);
        self.server = Some(server);
    }

    /// Creates a migrated database on this server.
    pub async fn create_database(&self, name: &str) -> PgConnectOptions {
        let admin_options = self.options();
        let mut admin = PgConnection::connect_with(&admin_options)
            .await
            .expect("connect to the scratch PostgreSQL");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create the database");
        admin.close().await.ok();
        let options = admin_options.database(name);
        // The migrator itself, as the harness does: it runs as the owner of the schema.
        let mut conn = PgConnection::connect_with(&options)
            .await
            .expect("connect to the new database");
        customers_api::db::MIGRATOR
            .run(&mut conn)
            .await
            .expect("the migrations apply");
        conn.close().await.ok();
        options
    }
}

/// A scratch server stops when the test process ends, even when it is killed.
fn watch_scratch(server: &PrivatePostgres) {
    server
        .watch(&Watchdog {
            owned: true,
            ..Watchdog::default()
        })
        .expect("a watchdog for the scratch PostgreSQL");
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}
