//! NATS unreachable during writes: writes succeed, /readyz stays 200 and says so, /metrics
//! shows the backlog; once NATS is back every event arrives, in order.

use std::time::{Duration, Instant};

use super::{check_published, Writer};
use crate::support::{spawn_app_with, PrivateNats, TestStream, ORG};

#[tokio::test]
async fn events_wait_while_nats_is_down_and_arrive_in_order_when_it_is_back() {
    // A NATS server of this test's own, so that stopping it disturbs no other test.
    let mut nats = PrivateNats::start().await;
    let url = nats.url();
    let stream = TestStream::new(&url).await;
    let app = spawn_app_with(|settings| {
        stream.configure(settings, &url);
        settings.rate_limit.enabled = false;
    })
    .await;
    let writer = Writer::new(&app.address, ORG);
    writer
        .wait_publishing("connected", Duration::from_secs(10))
        .await;
    writer.run(5, 50, 5).await;
    stream.wait_count(50, Duration::from_secs(10)).await;
    writer.wait_metric("events_unpublished", 0.0).await;

    nats.stop().await;
    writer
        .wait_publishing("unreachable", Duration::from_secs(10))
        .await;
    // Writes go on; the backlog grows.
    // The figure is refreshed at most every couple of seconds (consumers::relay::figures::cache): waited for.
    writer.run(5, 100, 5).await;
    writer.wait_metric("events_unpublished", 100.0).await;
    writer.run(5, 100, 5).await;
    writer.wait_metric("events_unpublished", 200.0).await;
    let age = writer
        .metric("events_oldest_unpublished_age_seconds")
        .await
        .expect("the age of the oldest");
    assert!(age > 0.0, "age {age}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let older = writer
        .metric("events_oldest_unpublished_age_seconds")
        .await
        .expect("the age of the oldest");
    assert!(older >= age + 0.2, "the age grows: {age} then {older}");
    assert_eq!(writer.publishing().await, "unreachable");

    nats.restart().await;
    let back = Instant::now();
    let received = stream.receive(250, Duration::from_secs(20)).await;
    let caught_up = back.elapsed();
    writer
        .wait_publishing("connected", Duration::from_secs(5))
        .await;
    let feed = writer.feed(250, Duration::from_secs(10)).await;
    check_published(&received, &[&feed], &stream.prefix);
    // Once acknowledged, the position is recorded: nothing is left.
    writer.wait_metric("events_unpublished", 0.0).await;
    eprintln!(
        "200 events written during the outage, all delivered {caught_up:?} after NATS was back"
    );
    stream.delete().await;
}
