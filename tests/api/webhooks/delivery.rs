//! Sending: the feed's bytes, signed (verified with the reference library); the filter; retries,
//! 410, Retry-After; rotation; recover.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::receiver::{Answer, Receiver};
use super::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_customer_change_is_delivered_with_the_feeds_bytes_and_a_valid_signature() {
    let app = spawn_hooks_app().await;
    let receiver = Receiver::start().await;
    let webhook = create_webhook(&app, json!({"url": receiver.url("/hooks")})).await;
    let secret = webhook["secret"].as_str().unwrap();
    let id = app.create_id(customer()).await;
    let response = app.patch(&id, json!({"metadata": {"plan": "gold"}})).await;
    assert_eq!(response.status(), 200);
    let received = receiver.wait_for(2, WAIT).await;
    let feed = feed_bytes(&app).await;
    assert_eq!(feed.len(), 2);
    let mut bodies: Vec<String> = received
        .iter()
        .map(|r| String::from_utf8(r.body.clone()).unwrap())
        .collect();
    bodies.sort();
    let mut expected = feed.clone();
    expected.sort();
    assert_eq!(bodies, expected, "the bodies are the feed's bytes");
    for r in &received {
        assert_eq!(r.path, "/hooks");
        verify(r, secret).expect("the reference library verifies the delivery");
        let event: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(header(r, "webhook-id"), event["id"].as_str().unwrap());
        assert_eq!(header(r, "content-type"), "application/json");
        assert!(header(r, "user-agent").starts_with("customers-api/"));
        // Another secret does not verify it.
        let other = customers_api::webhooks::secret::SigningSecret::generate().expose();
        assert!(verify(r, &other).is_err());
    }
    let deliveries = deliveries_until(&app, webhook["id"].as_str().unwrap(), |d| {
        d.len() == 2 && d.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    let attempt = &deliveries[0]["attempts"][0];
    assert_eq!(attempt["statusCode"], 200);
    assert_eq!(attempt["responseBody"], "ok");
    assert_eq!(deliveries[0]["nextAttemptAt"], Value::Null);
}

#[tokio::test]
async fn only_the_event_types_a_webhook_asks_for_are_delivered_to_it() {
    let app = spawn_hooks_app().await;
    let receiver = Receiver::start().await;
    let only_updates = create_webhook(
        &app,
        json!({"url": receiver.url("/updates"), "events": ["customer.updated"]}),
    )
    .await;
    let every = create_webhook(&app, json!({"url": receiver.url("/all")})).await;
    let id = app.create_id(customer()).await;
    app.patch(&id, json!({"metadata": {"a": "b"}})).await;
    app.delete(&id, None).await;
    // Both webhooks' deliveries of an event are made together: once the one that takes every
    // type has three, the filtered one has all it will have.
    deliveries_until(&app, every["id"].as_str().unwrap(), |d| d.len() == 3).await;
    let filtered = deliveries_until(&app, only_updates["id"].as_str().unwrap(), |d| {
        !d.is_empty()
    })
    .await;
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0]["eventType"], "customer.updated");
}

#[tokio::test]
async fn a_failed_attempt_is_retried_until_it_succeeds() {
    let app = spawn_hooks_app().await;
    let receiver = Receiver::start().await;
    receiver.script([Answer::status(500), Answer::status(503)]);
    let webhook = create_webhook(&app, json!({"url": receiver.url("/")})).await;
    let secret = webhook["secret"].as_str().unwrap();
    app.create_id(customer()).await;
    let received = receiver.wait_for(3, WAIT).await;
    let ids: Vec<&str> = received.iter().map(|r| header(r, "webhook-id")).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one event: {ids:?}");
    for r in &received {
        verify(r, secret).unwrap();
    }
    let deliveries = deliveries_until(&app, webhook["id"].as_str().unwrap(), |d| {
        d.first().is_some_and(|d| d["status"] == "succeeded")
    })
    .await;
    let codes: Vec<&Value> = deliveries[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["statusCode"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(503), &json!(200)]);
}

#[tokio::test]
async fn a_delivery_fails_after_the_last_step_and_retry_makes_one_more_attempt() {
    let app = spawn_hooks_app().await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Answer::status(500));
    let webhook = create_webhook(&app, json!({"url": receiver.url("/")})).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    app.create_id(customer()).await;
    // One first attempt plus one per step of the schedule (3).
    let deliveries = deliveries_until(&app, webhook_id, |d| {
        d.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    assert_eq!(deliveries[0]["attempts"].as_array().unwrap().len(), 4);
    assert_eq!(receiver.received().len(), 4);
    receiver.otherwise(Answer::status(200));
    let delivery = deliveries[0]["id"].as_str().unwrap();
    let retried = call(
        &app,
        Method::POST,
        &format!("/v1/webhooks/{webhook_id}/deliveries/{delivery}/retry"),
        None,
    )
    .await;
    assert_eq!(retried.status(), 202);
    let deliveries = deliveries_until(&app, webhook_id, |d| d[0]["status"] == "succeeded").await;
    assert_eq!(deliveries[0]["attempts"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_410_disables_the_webhook_at_once() {
    let app = spawn_hooks_app().await;
    let receiver = Receiver::start().await;
    receiver.script([Answer::status(410)]);
    let webhook = create_webhook(&app, json!({"url": receiver.url("/")})).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    app.create_id(customer()).await;
    let deliveries = deliveries_until(&app, webhook_id, |d| {
        d.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    assert_eq!(deliveries[0]["attempts"].as_array().unwrap().len(), 1);
    let got = get_json_as_manager(&app, &format!("/v1/webhooks/{webhook_id}")).await;
    assert_eq!(got["enabled"], false);
    assert_eq!(got["disabledReason"], "gone");
    // Events committed while it is disabled are not delivered.
    app.create_id(customer()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 1);
    let deliveries =
        get_json_as_manager(&app, &format!("/v1/webhooks/{webhook_id}/deliveries")).await;
    assert_eq!(deliveries["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn retry_after_replaces_a_shorter_step() {
    let app = spawn_hooks_app().await;
    let receiver = Receiver::start().await;
    // The schedule's step is 0.5 s; the endpoint asks for 3 s.
    receiver.script([Answer::status(429).header("retry-after", "3")]);
    create_webhook(&app, json!({"url": receiver.url("/")})).await;
    app.create_id(customer()).await;
    let received = receiver.wait_for(2, WAIT).await;
    let gap = received[1].at - received[0].at;
    assert!(gap >= Duration::from_millis(2900), "{gap:?}");
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured_too() {
    let app = spawn_hooks_app().await;
    let receiver = Receiver::start().await;
    // The schedule's step is 0.5 s (at most 0.6 with jitter); the endpoint names a moment 4 to
    // 5 s away (an HTTP-date has whole seconds).
    let at = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(5));
    receiver.script([Answer::status(503).header("retry-after", &at)]);
    let webhook = create_webhook(&app, json!({"url": receiver.url("/")})).await;
    app.create_id(customer()).await;
    let received = receiver.wait_for(2, WAIT).await;
    let gap = received[1].at - received[0].at;
    assert!(gap >= Duration::from_millis(2500), "{gap:?}");
    let deliveries = deliveries_until(&app, webhook["id"].as_str().unwrap(), |d| {
        d.len() == 1 && d[0]["status"] == "succeeded"
    })
    .await;
    let attempts = deliveries[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["statusCode"], 503);
    assert_eq!(attempts[1]["statusCode"], 200);
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_after_it_only_the_new_one() {
    let app = spawn_hooks_app().await;
    let receiver = Receiver::start().await;
    let webhook = create_webhook(&app, json!({"url": receiver.url("/")})).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    let old = webhook["secret"].as_str().unwrap().to_owned();
    let rotated = call(
        &app,
        Method::POST,
        &format!("/v1/webhooks/{webhook_id}/rotate-secret"),
        Some(json!({})),
    )
    .await;
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let shown = get_json_as_manager(&app, &format!("/v1/webhooks/{webhook_id}/secret")).await;
    assert_eq!(shown["secret"], new.as_str());
    app.create_id(customer()).await;
    let received = receiver.wait_for(1, WAIT).await;
    let signature = header(&received[0], "webhook-signature");
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    verify(&received[0], &old).expect("the old secret verifies during the grace period");
    verify(&received[0], &new).expect("the new secret verifies");
    // A rotation with no grace period: only the newest secret signs.
    let newest = customers_api::webhooks::secret::SigningSecret::generate().expose();
    let rotated = call(
        &app,
        Method::POST,
        &format!("/v1/webhooks/{webhook_id}/rotate-secret"),
        Some(json!({"secret": newest, "gracePeriod": 0})),
    )
    .await;
    assert_eq!(rotated.status(), 200);
    app.create_id(customer()).await;
    let received = receiver.wait_for(2, WAIT).await;
    let last = &received[1];
    assert_eq!(header(last, "webhook-signature").split(' ').count(), 1);
    verify(last, &newest).unwrap();
    assert!(verify(last, &new).is_err());
    assert!(verify(last, &old).is_err());
    // Out of range grace periods are refused, naming the field.
    let bad = call(
        &app,
        Method::POST,
        &format!("/v1/webhooks/{webhook_id}/rotate-secret"),
        Some(json!({"gracePeriod": 604801})),
    )
    .await;
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["error"]["param"], "gracePeriod");
}

#[tokio::test]
async fn recover_delivers_again_the_events_since_an_instant() {
    let app = spawn_hooks_app().await;
    let receiver = Receiver::start().await;
    let webhook = create_webhook(&app, json!({"url": receiver.url("/")})).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    let secret = webhook["secret"].as_str().unwrap();
    app.create_id(customer()).await;
    receiver.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let since = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let later = app.create_id(customer()).await;
    let received = receiver.wait_for(2, WAIT).await;
    let recovered = call(
        &app,
        Method::POST,
        &format!("/v1/webhooks/{webhook_id}/recover"),
        Some(json!({"since": since.to_rfc3339()})),
    )
    .await;
    assert_eq!(recovered.status(), 202);
    let recovered: Value = recovered.json().await.unwrap();
    assert_eq!(recovered, json!({"deliveries": 1}));
    let again = receiver.wait_for(3, WAIT).await;
    let redelivered = &again[2];
    assert_eq!(redelivered.body, received[1].body);
    assert_eq!(
        header(redelivered, "webhook-id"),
        header(&received[1], "webhook-id")
    );
    let event: Value = serde_json::from_slice(&redelivered.body).unwrap();
    assert_eq!(event["customerId"], later.as_str());
    verify(redelivered, secret).unwrap();
    let missing = call(
        &app,
        Method::POST,
        &format!("/v1/webhooks/{webhook_id}/recover"),
        Some(json!({})),
    )
    .await;
    assert_eq!(missing.status(), 400);
}

#[tokio::test]
async fn a_webhook_failing_longer_than_disable_after_is_disabled() {
    let app = spawn_app_with(|settings| {
        hooks_settings(settings);
        settings.webhooks.disable_after = Duration::from_secs(1);
        settings.webhooks.retry_schedule = vec![Duration::from_millis(600); 5];
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Answer::status(500));
    let webhook = create_webhook(&app, json!({"url": receiver.url("/")})).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    app.create_id(customer()).await;
    // The first failure starts the clock; the first failed attempt a second later disables it,
    // and its delivery ends failed before the schedule is used up.
    let deliveries = deliveries_until(&app, webhook_id, |d| {
        d.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    let attempts = deliveries[0]["attempts"].as_array().unwrap().len();
    assert!((2..=4).contains(&attempts), "{attempts} attempts");
    let got = get_json_as_manager(&app, &format!("/v1/webhooks/{webhook_id}")).await;
    assert_eq!(got["enabled"], false);
    assert_eq!(got["disabledReason"], "failing");
    // Enabling again clears the reason.
    let enabled = call(
        &app,
        Method::PATCH,
        &format!("/v1/webhooks/{webhook_id}"),
        Some(json!({"enabled": true})),
    )
    .await;
    let enabled: Value = enabled.json().await.unwrap();
    assert_eq!(enabled["disabledReason"], Value::Null);
}

#[tokio::test]
async fn attempts_and_the_time_to_the_first_one_are_in_the_metrics() {
    let app = spawn_hooks_app().await;
    let receiver = Receiver::start().await;
    create_webhook(&app, json!({"url": receiver.url("/")})).await;
    app.create_id(customer()).await;
    receiver.wait_for(1, WAIT).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = app.get_anonymous("/metrics").await.text().await.unwrap();
        if text.contains("webhook_attempts_total{outcome=\"succeeded\"}")
            && text.contains("webhook_commit_to_first_attempt_seconds_count")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
