//! Destinations at attempt time: a name that resolves to a loopback address is refused in the
//! default configuration, and nothing is sent to it. (The address ranges themselves are checked
//! without any connection by the unit tests of `webhooks::destination`.)

use std::time::Duration;

use serde_json::json;

use super::receiver::Receiver;
use super::*;

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_and_nothing_is_sent() {
    // http is allowed (the receiver speaks plain HTTP); private networks are not, as by default.
    let app = spawn_app_with(|settings| {
        hooks_settings(settings);
        settings.webhooks.allow_private_networks = false;
        settings.webhooks.retry_schedule = vec![];
    })
    .await;
    let receiver = Receiver::start().await;
    let url = format!("http://localhost:{}/hooks", receiver.port);
    let webhook = create_webhook(&app, json!({"url": url})).await;
    app.create_id(customer()).await;
    let deliveries = deliveries_until(&app, webhook["id"].as_str().unwrap(), |d| {
        d.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    let attempt = &deliveries[0]["attempts"][0];
    assert_eq!(attempt["statusCode"], serde_json::Value::Null);
    let error = attempt["error"].as_str().unwrap();
    assert!(error.contains("destination refused"), "{error}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 0, "nothing reached the receiver");
}

#[tokio::test]
async fn the_same_name_is_delivered_to_when_private_networks_are_allowed() {
    // The counterpart of the test above: the refusal is the destination check, not the name.
    let app = spawn_hooks_app().await;
    let receiver = Receiver::start().await;
    let url = format!("http://localhost:{}/hooks", receiver.port);
    create_webhook(&app, json!({"url": url})).await;
    app.create_id(customer()).await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_is_not_followed() {
    let app = spawn_app_with(|settings| {
        hooks_settings(settings);
        settings.webhooks.retry_schedule = vec![];
    })
    .await;
    let elsewhere = Receiver::start().await;
    let redirecting = Receiver::start().await;
    redirecting.script([
        super::receiver::Answer::status(307).header("location", &elsewhere.url("/stolen"))
    ]);
    let webhook = create_webhook(&app, json!({"url": redirecting.url("/hooks")})).await;
    app.create_id(customer()).await;
    let deliveries = deliveries_until(&app, webhook["id"].as_str().unwrap(), |d| {
        d.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    assert_eq!(deliveries[0]["attempts"][0]["statusCode"], 307);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        elsewhere.received().len(),
        0,
        "the redirect was not followed"
    );
}
