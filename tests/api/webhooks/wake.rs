//! When no webhook is enabled, a write does not wake the dispatcher (its round would find
//! nothing to deliver); a webhook written on this instance makes the next write wake it again.
//! With `poll_interval` at an hour, only a wake-up (or the round at start) makes a round here.

use std::time::Duration;

use serde_json::json;

use super::receiver::Receiver;
use super::*;

/// Whether the dispatcher's position is past every committed event.
async fn dispatched_everything(app: &TestApp) -> bool {
    sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM customer_events e, webhook_dispatch d
                             WHERE (e.feed_xid, e.seq) > (d.feed_xid, d.seq))",
    )
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn until_dispatched(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !dispatched_everything(app).await {
        assert!(tokio::time::Instant::now() < deadline, "never dispatched");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn writes_wake_the_dispatcher_only_while_a_webhook_may_take_their_events() {
    let app = spawn_app_with(|settings| {
        hooks_settings(settings);
        settings.webhooks.poll_interval = Duration::from_secs(3600);
    })
    .await;
    // Every dispatcher makes a round as it starts (a few statements): this one finds no
    // webhook. The only wait on timing in this test, and a generous one.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // No webhook: the write is not followed by a round, so its event stays ahead of the
    // dispatcher's position.
    let id = app.create_id(customer()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !dispatched_everything(&app).await,
        "a write woke the dispatcher although no webhook is enabled"
    );

    // A webhook written here: the next write wakes it, and its event is delivered (the
    // creation's event came before the webhook and is passed over).
    let receiver = Receiver::start().await;
    let webhook = create_webhook(&app, json!({"url": receiver.url("/")})).await;
    let patched = app.patch(&id, json!({"metadata": {"n": "2"}})).await;
    assert_eq!(patched.status(), 200);
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;
    verify(&received[0], webhook["secret"].as_str().unwrap()).unwrap();
    let feed = feed_bytes(&app).await;
    assert_eq!(feed.len(), 2, "{feed:?}");
    let patch_event = feed.iter().find(|e| e.contains(r#""n":"2""#)).unwrap();
    assert_eq!(received[0].body, patch_event.as_bytes());
    until_dispatched(&app).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "only the PATCH's event is delivered"
    );
}
