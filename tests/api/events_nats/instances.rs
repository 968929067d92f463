//! Two instances on one database: each event is published by one of them, once.

use std::time::Duration;

use super::{check_published, Writer};
use crate::support::{
    fresh_database, shared_nats_url, spawn_app_on, test_settings_with, TestStream, ORG,
};

#[tokio::test]
async fn with_two_instances_on_one_database_each_event_is_published_once() {
    let url = shared_nats_url();
    let stream = TestStream::new(&url).await;
    let db = fresh_database().await;
    let settings = test_settings_with(|settings| {
        stream.configure(settings, &url);
        settings.rate_limit.enabled = false;
    });
    let a = spawn_app_on(db.clone(), settings.clone()).await;
    let b = spawn_app_on(db, settings).await;
    let (to_a, to_b) = (Writer::new(&a.address, ORG), Writer::new(&b.address, ORG));
    tokio::join!(to_a.run(8, 250, 4), to_b.run(8, 250, 4));

    let received = stream.receive(500, Duration::from_secs(20)).await;
    // Both relays keep polling: give a late duplicate time to show.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(stream.count().await, 500, "a late duplicate");
    let feed = to_a.feed(500, Duration::from_secs(10)).await;
    check_published(&received, &[&feed], &stream.prefix);
    stream.delete().await;
}
