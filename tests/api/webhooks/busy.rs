//! Yielding to writes (docs/webhooks.md#yielding-to-writes): while the instance is busy with
//! writes, its senders keep to `webhooks.busy_deliveries_per_second`, and every delivery still
//! completes. With `busy_writes_per_second = 0` it is always busy, so nothing here waits on the
//! writes' rate; the budget of one attempt a second (a claim of one at a time) is counted as
//! the attempts the receiver sees at once, each answered in 300 ms.

use std::time::Duration;

use serde_json::json;

use super::receiver::{Answer, Receiver};
use super::*;

#[tokio::test]
async fn while_busy_with_writes_the_senders_keep_to_their_budget_and_every_delivery_completes() {
    let app = spawn_app_with(|settings| {
        hooks_settings(settings);
        settings.webhooks.busy_writes_per_second = 0;
        settings.webhooks.busy_deliveries_per_second = 1;
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Answer::status(200).delayed(Duration::from_millis(300)));
    let webhook = create_webhook(&app, json!({"url": receiver.url("/")})).await;
    let secret = webhook["secret"].as_str().unwrap();
    for _ in 0..5 {
        app.create_id(customer()).await;
    }
    // Without the budget the five are attempted together (up to 4 at once, the per-webhook
    // bound); with it, one a second.
    let received = receiver.wait_for(5, Duration::from_secs(60)).await;
    for delivery in &received {
        verify(delivery, secret).unwrap();
    }
    assert_eq!(
        receiver.most_at_once(),
        1,
        "attempts at once under a budget of one a second"
    );
    // Their outcomes are recorded as they would be without the budget.
    let path = format!(
        "/v1/webhooks/{}/deliveries",
        webhook["id"].as_str().unwrap()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = get_json_as_manager(&app, &path).await;
        let deliveries = log["data"].as_array().unwrap();
        assert_eq!(deliveries.len(), 5, "{log:#}");
        if deliveries.iter().all(|d| d["status"] == "succeeded") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{log:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
