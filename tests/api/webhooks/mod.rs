//! Webhooks (docs/webhooks.md): the routes, and deliveries to receivers the tests run on
//! 127.0.0.1. Every delivery is verified with the Standard Webhooks reference library
//! (`standardwebhooks`), never with our own code.

mod busy;
mod crash;
mod crud;
mod db_down;
mod delivery;
mod destinations;
mod disabled;
mod instances;
mod receiver;
mod retention;
mod secrets_key;
mod settings;
mod wake;

use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::support::*;
use receiver::Received;

pub const MANAGE: &str = "webhooks:manage";

/// Settings for delivery tests: http and loopback destinations allowed (the receivers are
/// local), a short retry schedule, quick polling, no rate limit.
pub fn hooks_settings(settings: &mut customers_api::configuration::Settings) {
    settings.webhooks.allow_http = true;
    settings.webhooks.allow_private_networks = true;
    settings.webhooks.retry_schedule = vec![Duration::from_millis(500); 3];
    settings.webhooks.poll_interval = Duration::from_millis(50);
    settings.webhooks.timeout = Duration::from_secs(10);
    settings.rate_limit.enabled = false;
}

pub async fn spawn_hooks_app() -> TestApp {
    spawn_app_with(hooks_settings).await
}

pub fn manage_token() -> String {
    token(ORG, "test", MANAGE)
}

/// `method path` with a `webhooks:manage` token of `ORG`, with a JSON body when given.
pub async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Response {
    let mut request = app.request_as(method, path, &manage_token());
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request sent")
}

/// Creates a webhook; panics unless 201. Returns its JSON (with `secret`).
pub async fn create_webhook(app: &TestApp, body: Value) -> Value {
    let response = call(app, Method::POST, "/v1/webhooks", Some(body)).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    response.json().await.unwrap()
}

pub async fn get_json_as_manager(app: &TestApp, path: &str) -> Value {
    let response = call(app, Method::GET, path, None).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// Verifies a received delivery with the reference library.
pub fn verify(received: &Received, secret: &str) -> Result<(), standardwebhooks::WebhookError> {
    standardwebhooks::Webhook::new(secret)
        .expect("a whsec_ secret")
        .verify(&received.body, &received.headers)
}

pub fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The feed's events (ORG, test mode), each exactly as its bytes stand in the page.
pub async fn feed_bytes(app: &TestApp) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Page {
        data: Vec<Box<serde_json::value::RawValue>>,
    }
    let text = app
        .request(Method::GET, "/v1/events?limit=100")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let page: Page = serde_json::from_str(&text).unwrap();
    page.data.into_iter().map(|e| e.get().to_owned()).collect()
}

/// The webhook's deliveries (newest first), once `until` holds for them (panics after 20 s).
pub async fn deliveries_until(
    app: &TestApp,
    webhook: &str,
    until: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = get_json_as_manager(app, &format!("/v1/webhooks/{webhook}/deliveries")).await;
        let data = page["data"].as_array().unwrap().clone();
        if until(&data) {
            return data;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries never got there: {data:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A customer body of the fixtures.
pub fn customer() -> Value {
    json!({"type": "consumer", "email": "hooks@example.com"})
}
