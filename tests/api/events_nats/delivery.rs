//! Every event of 1,000 concurrent writes reaches a JetStream consumer, byte for byte as the
//! feed serves it.

use std::time::{Duration, Instant};

use super::{check_published, lag_ms, recorded_at, Writer, ODD_ORG, ODD_ORG_TOKEN};
use crate::support::{shared_nats_url, spawn_app_with, TestStream, ORG};

#[tokio::test]
async fn a_consumer_receives_every_event_of_1000_concurrent_writes_as_the_feed_shows_it() {
    let url = shared_nats_url();
    let stream = TestStream::new(&url).await;
    let app = spawn_app_with(|settings| {
        stream.configure(settings, &url);
        settings.rate_limit.enabled = false;
        // Longer than the test: every event must be published because its commit woke the
        // relay (or the relay looked again soon after finding events held back), not because a
        // poll came round.
        settings.events.poll_interval = Duration::from_secs(60);
    })
    .await;
    let main = Writer::new(&app.address, ORG);
    // A second tenant whose org id needs the subject encoding.
    let odd = Writer::new(&app.address, ODD_ORG);

    let started = Instant::now();
    let (_, _) = tokio::join!(main.run(16, 800, 8), odd.run(4, 200, 2));
    let written = started.elapsed();
    let received = stream.receive(1000, Duration::from_secs(25)).await;
    let delivered = started.elapsed();

    let main_feed = main.feed(800, Duration::from_secs(10)).await;
    let odd_feed = odd.feed(200, Duration::from_secs(10)).await;
    check_published(&received, &[&main_feed, &odd_feed], &stream.prefix);
    // The subject, spelled out as the documentation has it.
    let odd_created = received
        .iter()
        .find(|m| m.msg_id.as_deref() == Some(odd_feed[0].id.as_str()))
        .expect("the odd tenant's first event");
    assert_eq!(
        odd_created.subject,
        format!("{}.test.{ODD_ORG_TOKEN}.customer.created", stream.prefix)
    );
    assert_eq!(
        customers_api::consumers::relay::subject::decode_org(ODD_ORG_TOKEN).as_deref(),
        Ok(ODD_ORG)
    );

    let (p50, p99, max) = lag_ms(&received, &recorded_at(&app.db).await);
    eprintln!(
        "1000 writes in {written:?}, all delivered after {delivered:?}; \
         publication lag p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    );
    stream.delete().await;
}
