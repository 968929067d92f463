//! A database host that stops answering in the middle of a publishing round (a frozen primary,
//! a network that drops packets) never ends the round's statement, and `statement_timeout`,
//! enforced by that server, cannot. The relay bounds its rounds itself: past the bound it closes
//! the connection and goes on with a new one, instead of waiting as long as the host stays
//! frozen.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::Writer;
use crate::support::{fresh_database_for_binaries, shared_nats_url, Service, TestStream, ORG};

/// Sends SIGCONT when dropped, so that a failing test leaves no stopped backend behind.
struct Stopped(Pid);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

#[tokio::test]
async fn a_round_stalled_on_a_frozen_backend_is_cut_off_at_its_bound() {
    let url = shared_nats_url();
    let stream = TestStream::new(&url).await;
    let (db, database_url) = fresh_database_for_binaries().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut env = stream.env(&url);
    // A round's bound: acquire_timeout + 2 × statement_timeout + publish_timeout = 3.5 s.
    for (key, value) in [
        ("DATABASE__ACQUIRE_TIMEOUT", "500ms"),
        ("DATABASE__STATEMENT_TIMEOUT", "1s"),
        ("EVENTS__PUBLISH_TIMEOUT", "1s"),
    ] {
        env.push((format!("CUSTOMERS_API__{key}"), value.into()));
    }
    let mut service = Service::start_with_env(dir.path(), &database_url, "relay-stalled", &env);
    service.wait_ready(&reqwest::Client::new()).await;
    let writer = Writer::new(&service.url(""), ORG);

    // The relay's position update waits on the test's lock on its row, after the event was
    // published; then its backend is stopped, and the lock released: the statement can never
    // answer.
    // (A table lock, which takes no transaction id: a row lock would take one, and hold the
    // event back behind the feed's gate.)
    let mut hold = db.begin().await.expect("a transaction");
    sqlx::query("LOCK TABLE event_relay IN EXCLUSIVE MODE")
        .execute(&mut *hold)
        .await
        .expect("the relay's row held");
    writer.create().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let relay_backend: i32 = loop {
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
              AND application_name = 'customers-api' AND wait_event_type = 'Lock' \
              AND query LIKE '%event_relay%'",
        )
        .fetch_optional(&db)
        .await
        .expect("pg_stat_activity");
        if let Some(pid) = waiting {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the relay never waited on its row"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let stopped = Stopped(Pid::from_raw(relay_backend));
    if kill(stopped.0, Signal::SIGSTOP).is_err() {
        println!("relay-stalled: cannot signal the test server's backends (not on this machine?)");
        return;
    }
    let frozen = Instant::now();
    hold.rollback().await.expect("the row released");

    let deadline = frozen + Duration::from_secs(15);
    while !service.log().contains("did not finish within 3500 ms") {
        assert!(
            Instant::now() < deadline,
            "the stalled round was not cut off: {}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cut_off = frozen.elapsed();
    // The round began before the freeze, so it ends no later than its bound after it; 2 s more
    // for a busy test machine.
    assert!(
        cut_off < Duration::from_millis(5500),
        "cut off {cut_off:?} after the freeze"
    );
    drop(stopped);
    // The stopped backend reads its closed connection and ends, releasing the publisher lock;
    // the next event is published along with the first (republished, dropped by JetStream).
    writer.create().await;
    let received = stream.receive(2, Duration::from_secs(20)).await;
    assert_ne!(received[0].msg_id, received[1].msg_id);
    writer.wait_metric("events_unpublished", 0.0).await;
    assert_eq!(
        stream.count().await,
        2,
        "both events in the stream, once each"
    );
    println!(
        "relay-stalled: round cut off {} ms after the freeze",
        cut_off.as_millis()
    );
    assert!(service.terminate().await.success());
    stream.delete().await;
}
