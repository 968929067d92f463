//! NATS for the publication tests: a stream and subject prefix of the test's own on the shared
//! server (`NATS_URL`, else a private `nats-server -js` of the run), so that tests run in
//! parallel and leave nothing behind, and private `nats-server -js` processes a test may stop
//! and start again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use chrono::{DateTime, Utc};
use customers_api::configuration::Settings;
use futures_util::StreamExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::app::secret;
use super::binary::free_port;
use super::nats_server;

/// The NATS server with JetStream the tests publish to: `NATS_URL` when set and not empty, else
/// a private `nats-server -js` of this test process (one per run, shared by its tests, on a free
/// port; it stops when the process ends, even when the process is killed). Panics at once, with
/// the install step, when there is no `nats-server` program.
pub fn shared_nats_url() -> String {
    if let Some(url) = std::env::var("NATS_URL").ok().filter(|url| !url.is_empty()) {
        nats_server::record("url", &url);
        return url;
    }
    static PRIVATE: OnceLock<Result<String, String>> = OnceLock::new();
    let url = PRIVATE
        .get_or_init(nats_server::start_shared)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"));
    nats_server::record("private", &url);
    url
}

/// Streams of the tests are named `T_<ULID>`; ones older than this are left over by a failed
/// run and deleted.
const STALE: Duration = Duration::from_secs(15 * 60);

/// A message as a consumer received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub subject: String,
    pub msg_id: Option<String>,
    pub payload: Vec<u8>,
    /// The W3C trace context the message carries, if any.
    pub traceparent: Option<String>,
    pub stream_sequence: u64,
    /// When JetStream stored it.
    pub published: DateTime<Utc>,
}

/// A stream of the test's own and its subject prefix.
pub struct TestStream {
    pub name: String,
    pub prefix: String,
    js: jetstream::Context,
}

impl TestStream {
    /// Names a stream for the test on the server at `url` (the service creates it).
    pub async fn new(url: &str) -> Self {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(url)
            .await
            .expect("a NATS client");
        let js = jetstream::new(client);
        let id = ulid::Ulid::new();
        let stream = TestStream {
            name: format!("T_{id}"),
            prefix: format!("t_{}", id.to_string().to_lowercase()),
            js,
        };
        stream.delete_stale().await;
        stream
    }

    /// The service's settings for this stream, publishing to `nats_url`.
    pub fn configure(&self, settings: &mut Settings, nats_url: &str) {
        settings.events.nats_url = secret(nats_url);
        settings.events.stream = self.name.clone();
        settings.events.subject_prefix = self.prefix.clone();
    }

    /// The same, as the environment of a `customers-api` child process.
    pub fn env(&self, nats_url: &str) -> Vec<(String, String)> {
        vec![
            ("CUSTOMERS_API__EVENTS__NATS_URL".into(), nats_url.into()),
            ("CUSTOMERS_API__EVENTS__STREAM".into(), self.name.clone()),
            (
                "CUSTOMERS_API__EVENTS__SUBJECT_PREFIX".into(),
                self.prefix.clone(),
            ),
        ]
    }

    /// Streams of earlier runs that a failing test left behind.
    async fn delete_stale(&self) {
        let mut names = self.js.stream_names();
        let mut stale = Vec::new();
        while let Some(Ok(name)) = names.next().await {
            let old = name
                .strip_prefix("T_")
                .and_then(|id| ulid::Ulid::from_string(id).ok())
                .and_then(|id| id.datetime().elapsed().ok())
                .is_some_and(|age| age > STALE);
            if old {
                stale.push(name);
            }
        }
        for name in stale {
            let _ = self.js.delete_stream(&name).await;
        }
    }

    /// The stream, once the service has created it.
    pub async fn wait_created(&self, limit: Duration) -> stream::Stream {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(stream) = self.js.get_stream(&self.name).await {
                return stream;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not create the stream {} within {limit:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many messages the stream holds (0 before it exists).
    pub async fn count(&self) -> u64 {
        match self.js.get_stream(&self.name).await {
            Ok(mut stream) => stream
                .info()
                .await
                .map(|info| info.state.messages)
                .unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Waits (bounded) until the stream holds `expected` messages; panics on more.
    pub async fn wait_count(&self, expected: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let count = self.count().await;
            assert!(count <= expected, "{count} messages, more than {expected}");
            if count == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{count} of {expected} messages within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every message of the stream, from the first, read by an ephemeral JetStream consumer
    /// until it has `expected` of them and the stream holds no more.
    pub async fn receive(&self, expected: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        let stream = self.wait_created(limit).await;
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .expect("an ephemeral consumer");
        let mut messages = consumer.messages().await.expect("a message stream");
        let mut received = Vec::with_capacity(expected);
        while received.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, messages.next()).await;
            let Ok(Some(message)) = next else {
                panic!(
                    "the consumer received {} of {expected} messages within {limit:?}",
                    received.len()
                );
            };
            let message = message.expect("a message");
            let info = message.info().expect("JetStream metadata");
            received.push(Received {
                subject: message.subject.to_string(),
                msg_id: message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_owned()),
                payload: message.payload.to_vec(),
                traceparent: message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("traceparent"))
                    .map(|v| v.as_str().to_owned()),
                stream_sequence: info.stream_sequence,
                published: info.published,
            });
        }
        assert_eq!(
            self.count().await,
            expected as u64,
            "the stream holds more messages than expected"
        );
        received
    }

    /// How many messages of the stream carry each `Nats-Msg-Id`.
    pub fn count_ids(messages: &[Received]) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for m in messages {
            *counts
                .entry(m.msg_id.clone().unwrap_or_default())
                .or_insert(0) += 1;
        }
        counts
    }

    /// The stream's configuration as JetStream holds it (the stream must exist).
    pub async fn config(&self) -> stream::Config {
        let mut stream = self.js.get_stream(&self.name).await.expect("the stream");
        stream
            .info()
            .await
            .expect("the stream's info")
            .config
            .clone()
    }

    /// Creates the stream as an operator might have before the service ran: the service's
    /// subjects and `max_age`.
    pub async fn create_with_max_age(&self, max_age: Duration) {
        self.js
            .create_stream(stream::Config {
                name: self.name.clone(),
                subjects: vec![format!("{}.>", self.prefix)],
                max_age,
                duplicate_window: max_age.min(Duration::from_secs(120)),
                ..Default::default()
            })
            .await
            .expect("the stream created");
    }

    pub async fn delete(self) {
        let _ = self.js.delete_stream(&self.name).await;
    }
}

/// `nats-server`: `NATS_SERVER` when set, else from `PATH`, else Debian's /usr/sbin/nats-server.
pub fn nats_server_program() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"))
}

/// A `nats-server -js` of the test's own, on a free port with its store in a temp dir; stopped
/// when dropped. It can be stopped and started again on the same port and store.
pub struct PrivateNats {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Lines of a nats-server configuration file (`max_payload: 4096`), if any.
    config: Option<String>,
}

impl PrivateNats {
    pub async fn start() -> Self {
        Self::start_with_config("").await
    }

    /// With these lines of nats-server configuration (`max_payload: 4096`, say); empty: none.
    pub async fn start_with_config(config: &str) -> Self {
        let mut nats = PrivateNats {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("a temp dir"),
            config: (!config.trim().is_empty()).then(|| config.to_owned()),
        };
        nats.spawn().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("nats-server.log"))
            .expect("a log file for nats-server");
        let program = nats_server::installed().unwrap_or_else(|e| panic!("{e}"));
        let mut command = Command::new(&program);
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(config) = &self.config {
            let path = self.write_config(config);
            command.arg("-c").arg(path);
        } else {
            command
                .arg("-js")
                .arg("-sd")
                .arg(self.dir.path().join("store"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        nats_server::watch(child.id(), None);
        self.child = Some(child);
        // Ready when JetStream answers.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // Any answer of the JetStream API will do (async-nats cannot parse 2.9's account
            // info, so not `query_account`).
            let ready = async {
                let client = async_nats::connect(self.url()).await.ok()?;
                client.request("$JS.API.INFO", "".into()).await.ok()
            };
            if tokio::time::timeout(Duration::from_secs(2), ready)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private nats-server did not start: {}",
                std::fs::read_to_string(self.dir.path().join("nats-server.log"))
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops it (SIGTERM, then waits until it is gone).
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The configuration file: `config` with JetStream and its store (in the file, not as
    /// flags: a reload would otherwise turn JetStream off, and the flags and a store in the file
    /// conflict).
    fn write_config(&self, config: &str) -> PathBuf {
        let path = self.dir.path().join("nats-server.conf");
        let store = self.dir.path().join("store");
        let text = format!("{config}\njetstream {{ store_dir: {:?} }}\n", store);
        std::fs::write(&path, text).expect("the nats-server configuration written");
        path
    }

    /// Replaces its configuration and has it reloaded (SIGHUP); returns once it says so. Changed
    /// permissions apply to the connections already open.
    pub async fn reload(&mut self, config: &str) {
        let child = self.child.as_ref().expect("a running nats-server");
        let log = self.dir.path().join("nats-server.log");
        let reloaded = |log: &std::path::Path| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .matches("Reloaded server configuration")
                .count()
        };
        let before = reloaded(&log);
        self.write_config(config);
        self.config = Some(config.to_owned());
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(10);
        while reloaded(&log) == before {
            assert!(
                Instant::now() < deadline,
                "nats-server did not reload its configuration: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running nats-server");
        self.spawn().await;
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
