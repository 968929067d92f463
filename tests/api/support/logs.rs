//! Where the logs of the whole test run go, for `scripts/scan-test-logs` to check that no token,
//! email, phone or name is ever logged. `.ci/run` empties the directory before `cargo test`.

use std::path::PathBuf;
use std::sync::Once;

/// `target/test-logs`: binaries that tests start may write their logs here too (any file under
/// it is scanned).
pub fn test_log_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-logs")
}

static TEST_LOGS: Once = Once::new();

/// Installs, once per test process, a global subscriber for the in-process servers: the
/// service's JSON format (`telemetry::init` can only write to stdout, which the test harness
/// swallows) at info level, into `target/test-logs/api-<pid>.jsonl`.
pub fn init_test_logs() {
    TEST_LOGS.call_once(|| {
        let dir = test_log_dir();
        std::fs::create_dir_all(&dir).expect("create target/test-logs");
        let path = dir.join(format!("api-{}.jsonl", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open the test log file");
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::sync::Mutex::new(file))
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .finish();
        // A test that installed its own subscriber first keeps it; its lines are not scanned.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}
