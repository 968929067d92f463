//! The `nats-server` program: where it is, the run's own server (when `NATS_URL` is not set), and
//! the watchdog that stops a server the tests started once the test process is gone.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::binary::free_port;
use super::nats::nats_server_program;

/// Which NATS the run used, in `target/test-nats.txt` (CI checks that it was a private one).
pub fn record(way: &str, url: &str) {
    let record = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-nats.txt");
    let _ = std::fs::write(record, format!("{way} {url}\n"));
}

pub fn start_shared() -> Result<String, String> {
    let program = installed()?;
    let dir = tempfile::Builder::new()
        .prefix("customers-api-nats-")
        .tempdir()
        .map_err(|e| format!("a temp dir for nats-server: {e}"))?
        .keep();
    let port = free_port();
    let log_path = dir.join("nats-server.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let child = Command::new(&program)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("store"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    // Never waited for: the watchdog stops it, and removes its store, when this process ends.
    watch(child.id(), Some(&dir));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("Server is ready") {
            return Ok(format!("nats://127.0.0.1:{port}"));
        }
        if Instant::now() > deadline {
            return Err(format!("the private nats-server did not start: {log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `nats-server` program, or what to do to have one.
pub fn installed() -> Result<PathBuf, String> {
    let program = nats_server_program();
    if program.is_file() {
        return Ok(program);
    }
    Err(format!(
        "the NATS tests need a NATS server with JetStream: NATS_URL is not set and there is no \
         nats-server program ({} not found). Install it (`apt-get install nats-server` on \
         Debian/Ubuntu, `brew install nats-server` on macOS), set NATS_SERVER to the program, or \
         set NATS_URL to a server started with -js.",
        program.display()
    ))
}

/// A watchdog (a shell loop, in the background) that stops nats-server `pid` once this test
/// process is gone (killed included) and then removes `dir`; it ends by itself when the server
/// stops first. The server is recognised by its process name, so a reused pid is never hit.
pub fn watch(pid: u32, dir: Option<&std::path::Path>) {
    const SCRIPT: &str = r#"
parent=$1 server=$2 dir=$3
name() { if [ -r "/proc/$1/comm" ]; then cat "/proc/$1/comm"; else ps -p "$1" -o comm= 2>/dev/null; fi; }
# An exited server that nobody reaped (a container whose first process reaps nothing) is a
# zombie that still bears the name: it is gone, and waiting for its name to go would be forever.
state() { if [ -r "/proc/$1/stat" ]; then sed 's/.*) //' "/proc/$1/stat" | cut -c1; else ps -p "$1" -o stat= 2>/dev/null | cut -c1; fi; }
is_server() { [ "$(state "$server")" != Z ] || return 1; case "$(name "$server")" in *nats-server*) return 0;; *) return 1;; esac; }
while kill -0 "$parent" 2>/dev/null && is_server; do sleep 1; done
kill -0 "$parent" 2>/dev/null && exit 0
is_server && kill "$server"
while is_server; do sleep 0.2; done
[ -n "$dir" ] && rm -rf "$dir"
"#;
    let spawned = Command::new("/bin/sh")
        .args(["-c", SCRIPT, "nats-watchdog"])
        .arg(std::process::id().to_string())
        .arg(pid.to_string())
        .arg(dir.map(|d| d.as_os_str().to_owned()).unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Ok(mut watchdog) = spawned {
        // Reaped in the background so that it leaves no zombie while the run goes on.
        std::thread::spawn(move || watchdog.wait());
    }
}
