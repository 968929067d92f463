//! SIGKILL in the middle of publishing: after a restart every event is in the stream once.

use std::time::{Duration, Instant};

use super::{check_published, recorded_at, relay_position, Writer};
use crate::support::{
    free_port, fresh_database_for_binaries, shared_nats_url, Service, TestStream, ORG,
};

#[tokio::test]
async fn a_relay_killed_while_publishing_a_backlog_resumes_without_loss_or_duplicate() {
    let url = shared_nats_url();
    let stream = TestStream::new(&url).await;
    let (db, database_url) = fresh_database_for_binaries().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let client = reqwest::Client::new();
    const EVENTS: u64 = 800;

    // 1. A backlog: written while the relay's NATS is a port where nothing listens.
    let closed = format!("nats://127.0.0.1:{}", free_port());
    let mut writer_service = Service::start_with_env(
        dir.path(),
        &database_url,
        "relay-backlog",
        &stream.env(&closed),
    );
    writer_service.wait_ready(&client).await;
    let writer = Writer::new(&writer_service.url(""), ORG);
    assert_eq!(writer.publishing().await, "unreachable");
    writer.run(16, EVENTS as usize, 8).await;
    assert!(writer_service.terminate().await.success());

    // 2. A relay publishing it in batches of 20, killed between publishing a batch and
    //    recording its position: once a fair part is published, the test holds the
    //    `event_relay` row, so that the relay's next position update waits after its batch was
    //    acknowledged; that is when the SIGKILL comes.
    let mut env = stream.env(&url);
    env.push(("CUSTOMERS_API__EVENTS__BATCH_SIZE".into(), "20".into()));
    let mut victim = Service::start_with_env(dir.path(), &database_url, "relay-victim", &env);
    let deadline = Instant::now() + Duration::from_secs(20);
    while stream.count().await < 100 {
        assert!(
            Instant::now() < deadline,
            "the relay did not start publishing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut hold = db.begin().await.expect("a transaction");
    sqlx::query("SELECT 1 FROM event_relay WHERE id = 1 FOR UPDATE")
        .execute(&mut *hold)
        .await
        .expect("the relay's row held");
    loop {
        let (_, _, recorded) = relay_position(&db).await;
        if stream.count().await as i64 > recorded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not publish another batch"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    victim.sigkill().await;
    hold.rollback().await.expect("the row released");
    let in_stream = stream.count().await;
    let (_, _, recorded) = relay_position(&db).await;
    assert!(in_stream < EVENTS, "the relay had published everything");
    // Published but not recorded: what the next run would publish again.
    let unrecorded = in_stream as i64 - recorded;
    assert!(unrecorded > 0);

    // 3. Restarted: it resumes where the position says.
    let mut restarted = Service::start_with_env(
        dir.path(),
        &database_url,
        "relay-restarted",
        &stream.env(&url),
    );
    restarted.wait_ready(&client).await;
    let started = Instant::now();
    let received = stream
        .receive(EVENTS as usize, Duration::from_secs(20))
        .await;
    let resumed = started.elapsed();
    let reader = Writer::new(&restarted.url(""), ORG);
    let feed = reader.feed(EVENTS as usize, Duration::from_secs(10)).await;
    check_published(&received, &[&feed], &stream.prefix);
    // Every id once in the stream, and the position at the last event.
    assert!(TestStream::count_ids(&received).values().all(|&n| n == 1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay_position(&db).await.2 != EVENTS as i64 {
        assert!(
            Instant::now() < deadline,
            "the relay position did not reach the end"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(recorded_at(&db).await.len(), EVENTS as usize);
    eprintln!(
        "killed with {in_stream} of {EVENTS} events in the stream, {recorded} recorded as published \
         ({unrecorded} published but unrecorded); the restarted relay published the rest in \
         {resumed:?}, {} messages in the stream, none twice",
        stream.count().await
    );
    // It found them in the stream (its last message was one of them) and skipped them.
    let skipped = reader.metric("events_published_duplicates_total").await;
    assert_eq!(skipped, Some(unrecorded as f64));
    assert!(restarted.terminate().await.success());
    stream.delete().await;
}
