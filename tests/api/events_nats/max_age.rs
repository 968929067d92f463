//! `events.retention` reaches the stream: its `max_age`, so that events (personal data) leave
//! NATS as they leave the database; an existing stream is brought in line.

use std::time::Duration;

use super::Writer;
use crate::support::{shared_nats_url, spawn_app_with, TestStream, ORG};

const WAIT: Duration = Duration::from_secs(15);

/// A service publishing to `stream` with `retention`, and one event published.
async fn publish_one(stream: &TestStream, url: &str, retention: Option<Duration>) {
    let app = spawn_app_with(|settings| {
        stream.configure(settings, url);
        settings.events.retention = retention;
    })
    .await;
    Writer::new(&app.address, ORG).create().await;
    stream.wait_count(1, WAIT).await;
}

#[tokio::test]
async fn the_stream_the_service_creates_expires_events_after_the_retention() {
    let url = shared_nats_url();
    let stream = TestStream::new(&url).await;
    // Shorter than the default duplicate window (5 minutes): the window is cut to it, as
    // JetStream requires.
    publish_one(&stream, &url, Some(Duration::from_secs(90))).await;
    let config = stream.config().await;
    assert_eq!(config.max_age, Duration::from_secs(90));
    assert_eq!(config.duplicate_window, Duration::from_secs(90));
    stream.delete().await;

    let stream = TestStream::new(&url).await;
    publish_one(&stream, &url, None).await;
    let config = stream.config().await;
    assert_eq!(config.max_age, Duration::ZERO, "no retention: no expiry");
    assert_eq!(config.duplicate_window, Duration::from_secs(300));
    assert_eq!(config.num_replicas, 1, "events.stream_replicas, default 1");
    stream.delete().await;
}

#[tokio::test]
async fn an_existing_streams_max_age_is_set_to_the_retention() {
    let url = shared_nats_url();
    // Made before a retention was set: no expiry.
    let stream = TestStream::new(&url).await;
    stream.create_with_max_age(Duration::ZERO).await;
    publish_one(&stream, &url, Some(Duration::from_secs(730 * 86_400))).await;
    assert_eq!(
        stream.config().await.max_age,
        Duration::from_secs(730 * 86_400)
    );
    stream.delete().await;

    // Made with an expiry, the retention since unset: events are kept for ever again.
    let stream = TestStream::new(&url).await;
    stream.create_with_max_age(Duration::from_secs(3600)).await;
    publish_one(&stream, &url, None).await;
    assert_eq!(stream.config().await.max_age, Duration::ZERO);
    stream.delete().await;
}
