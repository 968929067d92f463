//! A private PostgreSQL must not outlive what it serves: a watchdog (a small `/bin/sh` loop in a
//! process group of its own, so that it also outlives a killed parent) stops it with a fast
//! shutdown (SIGINT to the postmaster) when the process that owns it is gone, when an anchor
//! (the checkout) is gone, or when it has not been used for a while. It ends by itself when the
//! server stops.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use super::PrivatePostgres;

/// When a private server stops by itself (any condition that is set).
#[derive(Debug, Clone, Default)]
pub struct Watchdog {
    /// Stop when the process that last claimed the server (this one, by [`PrivatePostgres::watch`])
    /// has ended. For the service's own server: a killed service leaves no server behind.
    pub owned: bool,
    /// Stop when this path is gone (a checkout deleted), and then remove the server's directory.
    pub anchor: Option<PathBuf>,
    /// Stop when the server has not been used (see [`PrivatePostgres::mark_used`]) for this long;
    /// counted in whole minutes, at least one.
    pub idle: Option<Duration>,
}

const SCRIPT: &str = r#"
pm=$1 dir=$2 owned=$3 anchor=$4 idle=$5
me="$$ $pm"
if [ -f "$dir/watchdog.pid" ] && [ "$(cut -d' ' -f2 "$dir/watchdog.pid")" = "$pm" ] \
   && kill -0 "$(cut -d' ' -f1 "$dir/watchdog.pid")" 2>/dev/null; then exit 0; fi
echo "$me" > "$dir/watchdog.pid"
name() { if [ -r "/proc/$1/comm" ]; then cat "/proc/$1/comm"; else ps -p "$1" -o comm= 2>/dev/null; fi; }
# A server that exited but was not reaped yet (a container whose first process reaps nothing)
# is a zombie that still bears the name: dead.
state() { if [ -r "/proc/$1/stat" ]; then sed 's/.*) //' "/proc/$1/stat" | cut -c1; else ps -p "$1" -o stat= 2>/dev/null | cut -c1; fi; }
alive() { [ "$(state "$pm")" != Z ] || return 1; case "$(name "$pm")" in *postgres*|*postmaster*) return 0;; *) return 1;; esac; }
while alive; do
  why=
  if [ "$owned" = 1 ] && ! kill -0 "$(cat "$dir/owner.pid" 2>/dev/null)" 2>/dev/null; then
    why="the process that owned it ended"
  fi
  if [ -n "$idle" ] && [ -n "$(find "$dir/last-used" -mmin +"$idle" 2>/dev/null)" ]; then
    why="unused for $idle minutes"
  fi
  gone=0
  if [ -n "$anchor" ] && [ ! -e "$anchor" ]; then why="$anchor is gone"; gone=1; fi
  if [ -n "$why" ]; then
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) stopping the private PostgreSQL: $why" >> "$dir/watchdog.log" 2>/dev/null
    kill -INT "$pm"
    while alive; do sleep 0.2; done
    if [ "$gone" = 1 ]; then rm -rf "$dir"; fi
    exit 0
  fi
  sleep 5
done
"#;

impl PrivatePostgres {
    /// The directory of the server's state (its data directory's parent).
    fn state_dir(&self) -> &Path {
        self.data_dir.parent().unwrap_or(&self.data_dir)
    }

    /// Records a use of the server, for [`Watchdog::idle`].
    pub fn mark_used(&self) {
        let marker = self.state_dir().join("last-used");
        if let Ok(file) = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(marker)
        {
            let _ = file.set_modified(SystemTime::now());
        }
    }

    /// Starts a watchdog for this server, unless one already watches it; with `owned`, this
    /// process becomes the owner whose end stops the server.
    pub fn watch(&self, watchdog: &Watchdog) -> anyhow::Result<()> {
        let dir = self.state_dir();
        let pid_file = self.data_dir.join("postmaster.pid");
        let pm = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("cannot read {}", pid_file.display()))?;
        let pm = pm.lines().next().unwrap_or_default().trim().to_owned();
        if watchdog.owned {
            std::fs::write(dir.join("owner.pid"), std::process::id().to_string())?;
        }
        self.mark_used();
        let idle = watchdog
            .idle
            .map(|d| d.as_secs().div_ceil(60).max(1).to_string())
            .unwrap_or_default();
        let mut watcher = Command::new("/bin/sh")
            .args(["-c", SCRIPT, "postgres-watchdog", &pm])
            .arg(dir)
            .arg(if watchdog.owned { "1" } else { "0" })
            .arg(watchdog.anchor.as_deref().unwrap_or(Path::new("")))
            .arg(idle)
            // Its own process group: a Ctrl-C of the run does not end it before it has done its job.
            .process_group(0)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the private PostgreSQL's watchdog")?;
        // Reaped in the background, so that it leaves no zombie while this process runs.
        std::thread::spawn(move || watcher.wait());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    use super::*;
    use crate::private_postgres::Durability;

    /// A server in a temp dir that the PostgreSQL account can enter.
    fn scratch() -> (tempfile::TempDir, Scratch) {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let server =
            PrivatePostgres::start(&dir.path().join("state/postgres"), Durability::Ephemeral)
                .expect("a private PostgreSQL starts");
        (dir, Scratch(server))
    }

    /// Stopped when dropped, so that a failing test leaves no server behind.
    struct Scratch(PrivatePostgres);

    impl std::ops::Deref for Scratch {
        type Target = PrivatePostgres;
        fn deref(&self) -> &PrivatePostgres {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            if self.0.is_running() {
                self.0.stop();
            }
        }
    }

    /// Whether the server's postmaster still runs, after waiting up to 15 s for it to stop.
    fn still_running_after_a_while(server: &PrivatePostgres) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !server.is_running() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        true
    }

    #[test]
    fn the_watchdog_stops_a_server_whose_owner_ended_whose_anchor_went_or_that_sat_idle() {
        // The three cases side by side, as each waits a watchdog round or two.
        std::thread::scope(|s| {
            s.spawn(owner_ended);
            s.spawn(anchor_gone);
            s.spawn(idle);
        });
    }

    fn owner_ended() {
        // Owned: the owner is a child process, which then ends.
        let (_dir, server) = scratch();
        server
            .watch(&Watchdog {
                owned: true,
                ..Watchdog::default()
            })
            .expect("a watchdog");
        let mut owner = Command::new("sleep").arg("30").spawn().expect("sleep runs");
        std::fs::write(server.state_dir().join("owner.pid"), owner.id().to_string()).unwrap();
        std::thread::sleep(Duration::from_secs(6));
        assert!(server.is_running(), "kept while its owner runs");
        owner.kill().unwrap();
        owner.wait().unwrap();
        assert!(
            !still_running_after_a_while(&server),
            "stopped after its owner ended"
        );
    }

    fn anchor_gone() {
        // Anchored: the checkout is deleted; the server's directory goes too.
        let (dir, server) = scratch();
        let anchor = dir.path().join("Cargo.toml");
        std::fs::write(&anchor, "").unwrap();
        let watchdog = Watchdog {
            anchor: Some(anchor.clone()),
            ..Watchdog::default()
        };
        server.watch(&watchdog).expect("a watchdog");
        std::fs::remove_file(&anchor).unwrap();
        assert!(
            !still_running_after_a_while(&server),
            "stopped once the anchor is gone"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.state_dir().exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!server.state_dir().exists(), "its directory removed");
    }

    fn idle() {
        // Idle: last used longer ago than the limit.
        let (_dir, server) = scratch();
        let watchdog = Watchdog {
            idle: Some(Duration::from_secs(60)),
            ..Watchdog::default()
        };
        server.watch(&watchdog).expect("a watchdog");
        std::thread::sleep(Duration::from_secs(6));
        assert!(server.is_running(), "kept while used lately");
        let two_minutes_ago = SystemTime::now() - Duration::from_secs(120);
        std::fs::File::options()
            .write(true)
            .open(server.state_dir().join("last-used"))
            .unwrap()
            .set_modified(two_minutes_ago)
            .unwrap();
        assert!(!still_running_after_a_while(&server), "stopped when idle");
    }
}
