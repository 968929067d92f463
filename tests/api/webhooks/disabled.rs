//! A disabled webhook: its deliveries still pending (the one in flight when it was disabled, a
//! retry asked for meanwhile) are not attempted until it is enabled again.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::receiver::{Answer, Receiver};
use super::*;

const WAIT: Duration = Duration::from_secs(20);
/// Longer than the tests' retry step (500 ms ± 20 %) plus a few polls (50 ms): a delivery that
/// a claim would take has been attempted by then.
const QUIET: Duration = Duration::from_millis(2000);

async fn set_enabled(app: &TestApp, webhook_id: &str, enabled: bool) {
    let response = call(
        app,
        Method::PATCH,
        &format!("/v1/webhooks/{webhook_id}"),
        Some(json!({"enabled": enabled})),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["enabled"], enabled);
}

/// (status, attempts, next_attempt_at set) of the delivery, as stored.
async fn stored(app: &TestApp, delivery_id: &str) -> (String, i32, bool) {
    sqlx::query_as(
        "SELECT status, attempts, next_attempt_at IS NOT NULL FROM webhook_deliveries WHERE id = $1",
    )
    .bind(delivery_id)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_delivery_in_flight_when_its_webhook_is_disabled_waits_until_it_is_enabled_again() {
    let app = spawn_hooks_app().await;
    let receiver = Receiver::start().await;
    // The first attempt is still in flight when the webhook is disabled, and fails: its retry
    // is due 500 ms later.
    receiver.script([Answer::status(500).delayed(Duration::from_millis(1000))]);
    let webhook = create_webhook(&app, json!({"url": receiver.url("/")})).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    let secret = webhook["secret"].as_str().unwrap();
    app.create_id(customer()).await;
    receiver.wait_for(1, WAIT).await;
    set_enabled(&app, webhook_id, false).await;
    let deliveries = deliveries_until(&app, webhook_id, |d| {
        d.first()
            .is_some_and(|d| d["attempts"].as_array().unwrap().len() == 1)
    })
    .await;
    let delivery_id = deliveries[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(deliveries[0]["status"], "pending");
    assert_eq!(deliveries[0]["attempts"][0]["statusCode"], 500);
    // Disabled: its retry falls due and is not attempted.
    tokio::time::sleep(QUIET).await;
    assert_eq!(receiver.received().len(), 1, "no attempt while disabled");
    assert_eq!(
        stored(&app, &delivery_id).await,
        ("pending".into(), 1, true)
    );

    // Enabled again: it is attempted, and succeeds.
    set_enabled(&app, webhook_id, true).await;
    let received = receiver.wait_for(2, WAIT).await;
    verify(&received[1], secret).expect("the reference library verifies the delivery");
    let deliveries = deliveries_until(&app, webhook_id, |d| d[0]["status"] == "succeeded").await;
    assert_eq!(deliveries[0]["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(
        stored(&app, &delivery_id).await,
        ("succeeded".into(), 2, false)
    );
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn a_retry_asked_for_while_the_webhook_is_disabled_is_made_once_it_is_enabled() {
    let app = spawn_hooks_app().await;
    let receiver = Receiver::start().await;
    let webhook = create_webhook(&app, json!({"url": receiver.url("/")})).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    app.create_id(customer()).await;
    let deliveries = deliveries_until(&app, webhook_id, |d| {
        d.first().is_some_and(|d| d["status"] == "succeeded")
    })
    .await;
    let delivery_id = deliveries[0]["id"].as_str().unwrap().to_owned();
    set_enabled(&app, webhook_id, false).await;
    let retried = call(
        &app,
        Method::POST,
        &format!("/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"),
        None,
    )
    .await;
    assert_eq!(retried.status(), 202);
    tokio::time::sleep(QUIET).await;
    assert_eq!(receiver.received().len(), 1, "no attempt while disabled");
    assert_eq!(
        stored(&app, &delivery_id).await,
        ("pending".into(), 1, true)
    );

    set_enabled(&app, webhook_id, true).await;
    receiver.wait_for(2, WAIT).await;
    deliveries_until(&app, webhook_id, |d| {
        d[0]["status"] == "succeeded" && d[0]["attempts"].as_array().unwrap().len() == 2
    })
    .await;
    assert_eq!(
        stored(&app, &delivery_id).await,
        ("succeeded".into(), 2, false)
    );
}
