//! An event JetStream refuses for good (larger than the server's `max_payload`) does not stop
//! publication: after a few rounds it is set aside (`event_undeliverable`), counted in /metrics
//! and /readyz, and the events after it, of every tenant, are published in order; the feed still
//! shows it.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::Writer;
use crate::support::{spawn_app_with, PrivateNats, TestStream, ORG};

const WAIT: Duration = Duration::from_secs(20);

/// Metadata of about 6 KB: a customer event over the 4 KB `max_payload` of the test's server.
fn large_metadata() -> Value {
    let mut metadata = Map::new();
    for k in 0..12 {
        metadata.insert(format!("k{k}"), json!("x".repeat(480)));
    }
    Value::Object(metadata)
}

#[tokio::test]
async fn an_event_jetstream_refuses_is_set_aside_and_the_others_are_published() {
    let nats = PrivateNats::start_with_config("max_payload: 4096\n").await;
    let url = nats.url();
    let stream = TestStream::new(&url).await;
    let app = spawn_app_with(|settings| {
        stream.configure(settings, &url);
        settings.rate_limit.enabled = false;
    })
    .await;
    let mine = Writer::new(&app.address, ORG);
    let theirs = Writer::new(&app.address, "org_neighbour");
    mine.wait_publishing("connected", WAIT).await;

    mine.create().await;
    stream.wait_count(1, WAIT).await;
    let large = mine.create().await;
    mine.patch(&large, json!({"metadata": large_metadata()}))
        .await;
    // Another tenant's event, behind the refused one.
    theirs.create().await;

    // The small ones are published (the refused one set aside after a few rounds).
    stream.wait_count(3, WAIT).await;
    let received = stream.receive(3, WAIT).await;
    let mine_feed = mine.feed(3, WAIT).await;
    let theirs_feed = theirs.feed(1, WAIT).await;
    let refused = &mine_feed[2];
    assert_eq!(refused.customer, large);
    assert_eq!(refused.version, 2, "the feed still shows the refused event");
    let ids: Vec<_> = received.iter().filter_map(|m| m.msg_id.clone()).collect();
    assert_eq!(
        ids,
        vec![
            mine_feed[0].id.clone(),
            mine_feed[1].id.clone(),
            theirs_feed[0].id.clone()
        ]
    );

    // Set aside with its reason; counted in /metrics and /readyz.
    let (id, reason): (String, String) =
        sqlx::query_as("SELECT id, reason FROM event_undeliverable")
            .fetch_one(&app.db)
            .await
            .expect("one event set aside");
    assert_eq!(id, refused.id);
    assert!(reason.contains("4096"), "{reason}");
    assert!(
        !reason.contains("xxxx"),
        "no content in the reason: {reason}"
    );
    mine.wait_metric("events_undeliverable", 1.0).await;
    mine.wait_metric("events_unpublished", 0.0).await;
    let ready: Value = mine.get("/readyz").await.json().await.expect("JSON");
    assert_eq!(ready["events"]["undeliverable"], 1, "{ready}");

    // Publication goes on (not with that customer's next change: its `previous` would hold the
    // large metadata).
    mine.create().await;
    stream.wait_count(4, WAIT).await;
    stream.delete().await;
}
