//! The optional `events.retention`: events older than it are deleted by a background sweep —
//! only once published when publishing is on — and a customer's history then starts at its
//! oldest event left (docs/events.md#retention).

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use super::{get_ok, stored_events};
use crate::support::*;

const RETENTION: Duration = Duration::from_secs(2);

fn with_retention(settings: &mut customers_api::configuration::Settings) {
    settings.events.retention = Some(RETENTION);
    settings.idempotency.sweep_interval = Duration::from_millis(100);
    settings.idempotency.sweep_batch = 2; // several batches per sweep
}

#[tokio::test]
async fn events_past_the_retention_are_deleted_and_history_starts_after_them() {
    let app = spawn_app_with(with_retention).await;
    let id = app.create_id(json!({"metadata": {"v": 1}})).await;
    for v in 2..=4 {
        assert_eq!(
            app.patch(&id, json!({"metadata": {"v": v}})).await.status(),
            200
        );
    }
    let third = app.get_json(&id).await; // version 4
    tokio::time::sleep(RETENTION + Duration::from_millis(200)).await;
    let fresh = app.create_id(json!({})).await;
    let fifth = app.patch(&id, json!({"metadata": {"v": 5}})).await;
    assert_eq!(fifth.status(), 200);

    eventually(
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || match stored_events(&app, &id).await {
            1 => Ok(()),
            n => Err(format!("{n} events of the old customer left, expected 1")),
        },
    )
    .await;
    assert_eq!(stored_events(&app, &fresh).await, 1, "recent events stay");

    let history = get_ok(&app, &format!("/v1/customers/{id}/events")).await;
    let versions: Vec<_> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![5]);

    // Version 4 is still known (the previous of the oldest event left); version 3 is not.
    let at = |value: &serde_json::Value| {
        value
            .as_str()
            .unwrap()
            .replace('+', "%2B")
            .replace(':', "%3A")
    };
    let path = format!("/v1/customers/{id}?asOf={}", at(&third["updatedAt"]));
    let reply = send(app.request(Method::GET, &path)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["metadata"], json!({"v": 4}));
    assert_eq!(reply.header("etag"), Some("\"4\""));
    let path = format!("/v1/customers/{id}?asOf={}", at(&third["createdAt"]));
    send(app.request(Method::GET, &path))
        .await
        .error(422, "history_unavailable");
}

#[tokio::test]
async fn unpublished_events_outlive_the_retention() {
    // Publishing on, NATS unreachable: nothing is published, so nothing may be deleted.
    let app = spawn_app_with(|settings| {
        with_retention(settings);
        settings.events.nats_url = secret("nats://127.0.0.1:1");
    })
    .await;
    let id = app.create_id(json!({})).await;
    assert_eq!(
        app.patch(&id, json!({"metadata": {"a": 1}})).await.status(),
        200
    );
    // Several sweeps past the retention.
    tokio::time::sleep(RETENTION + Duration::from_millis(1500)).await;
    assert_eq!(stored_events(&app, &id).await, 2);
}
