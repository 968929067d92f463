//! A private PostgreSQL server for when no `DATABASE_URL` is given (docs/operations.md), and for the
//! test harness. It uses the server programs already installed on the machine and downloads
//! nothing; the maintained crates for this (postgresql_embedded, pg-embed) download their own
//! builds, which this service must not depend on.
//!
//! The server listens on a Unix socket only, in a directory only its owner can enter, so nothing
//! but this process (and root) can reach it. PostgreSQL refuses to run as root: when we are root
//! it runs as the `postgres` account (or `nobody`), and then its data directory must be one that
//! account can reach, so a directory under the system temp dir is used when the requested one is
//! not (a checkout under `/root`, say).

mod watchdog;

pub use watchdog::Watchdog;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;

const PORT: u16 = 5432;

/// How the server is tuned: durable for the service, fast for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Durable,
    /// fsync off: a test database may be lost in a power cut, and is made anew anyway.
    Ephemeral,
}

#[derive(Debug)]
pub struct PrivatePostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
    /// The server's port (also its Unix socket's name).
    port: u16,
    /// Server settings of the caller's, given after this module's own (so they win).
    settings: Vec<(String, String)>,
    /// Only a server this process started is stopped by it.
    started_here: bool,
}

impl PrivatePostgres {
    /// Starts (or reuses, when it already runs) the server whose data lives in `data_dir`,
    /// creating the cluster on first use.
    pub fn start(data_dir: &Path, durability: Durability) -> anyhow::Result<Self> {
        Self::start_with_settings(data_dir, durability, &[])
    }

    /// [`start`](Self::start) with server settings of the caller's (`name`, `value`), given
    /// after this module's own so that they win: a test's server that listens on TCP with
    /// `ssl = on`, say (`listen_addresses`, `port`). Applied only when it starts it here.
    pub fn start_with_settings(
        data_dir: &Path,
        durability: Durability,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let port = match settings.iter().rev().find(|(name, _)| *name == "port") {
            Some((_, port)) => port.parse().context("the port setting is not a port")?,
            None => PORT,
        };
        let bin_dir = find_bin_dir()?;
        let run_as = unprivileged_user()?;
        let data_dir = absolute(data_dir)?;
        let data_dir = match run_as {
            Some((uid, gid)) if !reachable_by(&data_dir, uid, gid) => {
                let fallback = std::env::temp_dir()
                    .join(format!("customers-api-{}", short_hash(&data_dir)))
                    .join("postgres");
                tracing::warn!(
                    requested = %data_dir.display(),
                    using = %fallback.display(),
                    "the PostgreSQL account cannot enter the requested data directory (or a folder above it); using one under the system temp dir instead"
                );
                fallback
            }
            _ => data_dir,
        };
        let parent = data_dir
            .parent()
            .context("the data directory has no parent")?
            .to_path_buf();
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;

        // One process at a time sets the server up (parallel test binaries race for it).
        let lock = std::fs::File::create(parent.join(".postgres.lock"))?;
        lock.lock().context("cannot lock the PostgreSQL set-up")?;

        let socket_dir = socket_dir_for(&parent);
        let mut server = Self {
            bin_dir,
            data_dir,
            socket_dir,
            run_as,
            port,
            settings: (settings.iter())
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            started_here: false,
        };
        server.prepare_dir(&server.socket_dir.clone())?;
        if !server.data_dir.join("PG_VERSION").exists() {
            server.initdb(durability)?;
        }
        if !server.is_running() {
            server.pg_ctl_start(durability)?;
            server.started_here = true;
        }
        drop(lock);
        Ok(server)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(self.port)
            // A Unix socket carries no TLS: no SSLRequest round trip on each connect.
            .ssl_mode(sqlx::postgres::PgSslMode::Disable)
            .username("postgres")
            .database("postgres")
    }

    /// Stops the server if this process started it.
    pub fn stop(&self) {
        if !self.started_here {
            return;
        }
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "-t", "30", "stop"])
            .stdout(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => tracing::info!("private PostgreSQL stopped"),
            other => tracing::warn!(?other, "stopping the private PostgreSQL failed"),
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        // The unprivileged account may not be able to enter our working directory.
        cmd.current_dir("/").env_remove("PGDATA");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        cmd
    }

    /// Creates a directory owned by the server's account that nobody else can enter.
    fn prepare_dir(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(dir, Some(uid), Some(gid)).with_context(|| {
                format!("cannot hand {} to the PostgreSQL account", dir.display())
            })?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(())
    }

    fn initdb(&self, durability: Durability) -> anyhow::Result<()> {
        tracing::info!(data_dir = %self.data_dir.display(), "creating a private PostgreSQL cluster");
        self.prepare_dir(&self.data_dir)?;
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(&self.data_dir).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ]);
        if durability == Durability::Ephemeral {
            cmd.arg("--no-sync");
        }
        run(cmd, "initdb")
    }

    fn is_running(&self) -> bool {
        self.command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn pg_ctl_start(&self, durability: Durability) -> anyhow::Result<()> {
        let mut options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -p {} -c max_connections=200",
            self.socket_dir.display(),
            self.port
        );
        if durability == Durability::Ephemeral {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        for (name, value) in &self.settings {
            // pg_ctl hands the options to a shell: each value is quoted.
            options.push_str(&format!(" -c {name}='{}'", value.replace('\'', "")));
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.data_dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        run(cmd, "pg_ctl start")?;
        tracing::info!(data_dir = %self.data_dir.display(), "private PostgreSQL started");
        Ok(())
    }
}

fn run(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Where the server programs are: on PATH, where `pg_config` says, or the newest
/// `/usr/lib/postgresql/*/bin` (Debian and Ubuntu keep them off PATH).
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let has_programs = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            // Follow symlinks: /usr/local/bin/initdb may point into the real bin dir.
            if let Ok(real) = std::fs::canonicalize(dir.join("initdb")) {
                if let Some(real_dir) = real.parent().filter(|d| has_programs(d)) {
                    return Ok(real_dir.to_path_buf());
                }
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_programs(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_programs(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    bail!(
        "DATABASE_URL is not set and no PostgreSQL server programs (initdb, pg_ctl, postgres) were \
         found on PATH, via pg_config, or under /usr/lib/postgresql/*/bin. Either set DATABASE_URL \
         to a PostgreSQL database, install PostgreSQL (e.g. `apt-get install postgresql`), or run \
         the stack with `docker compose up`."
    )
}

/// PostgreSQL refuses to run as root; as root we run it as `postgres`, or else `nobody`.
fn unprivileged_user() -> anyhow::Result<Option<(nix::unistd::Uid, nix::unistd::Gid)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Some(user) = nix::unistd::User::from_name(name)? {
            return Ok(Some((user.uid, user.gid)));
        }
    }
    bail!("running as root, and neither a `postgres` nor a `nobody` account exists to run PostgreSQL as")
}

/// Can `uid` enter `dir` and every folder above it (the parts that exist)?
fn reachable_by(dir: &Path, uid: nix::unistd::Uid, gid: nix::unistd::Gid) -> bool {
    dir.ancestors()
        .filter_map(|d| std::fs::metadata(d).ok())
        .all(|meta| {
            let mode = meta.mode();
            if meta.uid() == uid.as_raw() {
                mode & 0o100 != 0
            } else if meta.gid() == gid.as_raw() {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            }
        })
}

/// Unix socket paths are limited to about 100 bytes; a deep checkout would exceed that, so a
/// long path gets a short directory under the temp dir instead.
fn socket_dir_for(parent: &Path) -> PathBuf {
    let local = parent.join("sock");
    if local.as_os_str().len() <= 80 {
        local
    } else {
        std::env::temp_dir().join(format!("customers-api-sock-{}", short_hash(parent)))
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    })
}

fn short_hash(path: &Path) -> String {
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}
