//! `/metrics`: the database's figures are cached (a scrape does not count the backlog every
//! time), and `server.metrics_address` moves `/metrics` to a listener of its own.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// A gauge's value in a scrape (`None`: absent).
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.expect("/metrics answered");
    assert_eq!(response.status(), 200);
    response.text().await.expect("a body")
}

#[tokio::test]
async fn metrics_on_their_own_listener_and_not_on_the_public_one() {
    let metrics_port = free_port();
    let app = spawn_app_with(|settings| {
        settings.server.metrics_address = format!("127.0.0.1:{metrics_port}");
    })
    .await;
    app.create_id(json!({})).await;

    let public = app.get_anonymous("/metrics").await;
    assert_eq!(public.status(), 404);
    let body: serde_json::Value = public.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "not_found", "{body}");

    let text = scrape(
        &app.client,
        &format!("http://127.0.0.1:{metrics_port}/metrics"),
    )
    .await;
    assert!(
        text.contains(r#"http_requests_total{method="POST",route="/v1/customers",status="201"}"#),
        "{text}"
    );
    assert!(
        gauge(&text, "events_feed_held_back_seconds").is_some(),
        "{text}"
    );
    // Only /metrics there: not the API, not the probes.
    for path in ["/v1/customers", "/healthz", "/openapi.json"] {
        let response = app
            .client
            .get(format!("http://127.0.0.1:{metrics_port}{path}"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 404, "{path}");
    }
    // The probes stay on the main listener.
    assert_eq!(app.get_anonymous("/healthz").await.status(), 200);
    assert_eq!(app.get_anonymous("/readyz").await.status(), 200);
}

#[tokio::test]
async fn the_backlog_is_counted_at_most_every_couple_of_seconds() {
    // Publishing on, NATS unreachable: events wait and the backlog grows.
    let unreachable = format!("nats://127.0.0.1:{}", free_port());
    let app = spawn_app_with(|settings| {
        settings.events.nats_url = secret(&unreachable);
    })
    .await;
    for _ in 0..3 {
        app.create_id(json!({})).await;
    }
    let url = app.url("/metrics");
    let counted = Instant::now();
    let first = scrape(&app.client, &url).await;
    assert_eq!(gauge(&first, "events_unpublished"), Some(3.0), "{first}");
    app.create_id(json!({})).await;
    let second = scrape(&app.client, &url).await;
    let age_first = gauge(&first, "events_oldest_unpublished_age_seconds").expect("an age");
    let age_second = gauge(&second, "events_oldest_unpublished_age_seconds").expect("an age");
    assert!(age_second >= age_first, "{age_first} then {age_second}");
    if counted.elapsed() < Duration::from_millis(1900) {
        assert_eq!(
            gauge(&second, "events_unpublished"),
            Some(3.0),
            "the figure of the first scrape, not counted again"
        );
    } else {
        eprintln!("the second scrape came too late to show the cached figure");
    }
    // Refreshed after a while.
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(200),
        async || match gauge(&scrape(&app.client, &url).await, "events_unpublished") {
            Some(4.0) => Ok(()),
            other => Err(format!("events_unpublished {other:?}")),
        },
    )
    .await;
}
