//! The `customers-api` binary as a child process: for what only a real process shows (its own
//! PostgreSQL, configuration errors, signals, several instances on one database).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::logs::test_log_dir;

pub const BIN: &str = env!("CARGO_BIN_EXE_customers-api");

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The binary with a clean environment (nothing of the caller's configuration leaks in),
/// listening on 127.0.0.1:`port`, run in `dir`.
pub fn command(dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

/// A running binary; killed when dropped so that a failing test leaves nothing running.
pub struct Service {
    child: Child,
    pub port: u16,
    log: Option<PathBuf>,
}

impl Service {
    /// The binary on an existing, migrated database, with two workers and no rate limit (a
    /// burst of retries must not turn into 429s). Its output goes to `target/test-logs`, with
    /// the rest of the run's logs, which are scanned for personal data and tokens.
    pub fn start(dir: &Path, database_url: &str, name: &str) -> Self {
        Self::start_with_env(dir, database_url, name, &[])
    }

    /// [`Service::start`] with more environment variables (settings as
    /// `CUSTOMERS_API__<SECTION>__<KEY>`).
    pub fn start_with_env(
        dir: &Path,
        database_url: &str,
        name: &str,
        env: &[(String, String)],
    ) -> Self {
        let port = free_port();
        let logs = test_log_dir();
        std::fs::create_dir_all(&logs).expect("create the test log directory");
        let log = logs.join(format!("binary-{name}-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("a log file");
        let mut command = command(dir, port);
        command
            .env("DATABASE_URL", database_url)
            .env("CUSTOMERS_API__DATABASE__MIGRATE_ON_START", "false")
            .env("CUSTOMERS_API__SERVER__WORKERS", "2")
            .env("CUSTOMERS_API__RATE_LIMIT__ENABLED", "false")
            .envs(env.iter().map(|(k, v)| (k, v)))
            // The service logs to stdout; both streams go to the scanned file.
            .stdout(
                log_file
                    .try_clone()
                    .expect("a second handle on the log file"),
            )
            .stderr(log_file);
        Self::spawn(command, port, Some(log))
    }

    /// Spawns a command made by [`command`] for `port`; `log` is where its output goes, if the
    /// test wants it shown when the binary fails.
    pub fn spawn(mut command: Command, port: u16, log: Option<PathBuf>) -> Self {
        let child = command.spawn().expect("spawn the service");
        Service { child, port, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its output so far (empty when it goes elsewhere).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default()
    }

    /// Waits (bounded) until `/readyz` answers 200; panics if the binary exits first.
    pub async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the service exited early with {status}: {}", self.log());
            }
            let ready = client
                .get(self.url("/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not become ready: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("the signal is sent");
    }

    /// Sends SIGTERM and returns at once.
    pub fn sigterm(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// Waits (bounded by `limit`) for the binary to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the service") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not exit within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM, then its exit status (it must stop within a minute).
    pub async fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit(Duration::from_secs(60)).await
    }

    /// SIGKILL, then waits until it is gone.
    pub async fn sigkill(&mut self) {
        self.signal(Signal::SIGKILL);
        let status = self.wait_exit(Duration::from_secs(10)).await;
        assert!(!status.success(), "killed, not exited: {status}");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
