//! The webhook routes: create, read, list, update, disable, secrets; validation; tenancy;
//! scopes; idempotency.

use reqwest::Method;
use serde_json::{json, Value};

use super::*;

#[tokio::test]
async fn a_webhook_is_created_read_updated_and_disabled_and_its_secret_shown_only_where_allowed() {
    let app = spawn_hooks_app().await;
    let response = call(
        &app,
        Method::POST,
        "/v1/webhooks",
        Some(
            json!({"url": "https://partner.example/hooks", "events": ["customer.updated"],
                    "description": "ledger", "metadata": {"team": "risk"}}),
        ),
    )
    .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["etag"], "\"1\"");
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("whk_") && id.len() == 30, "{id}");
    assert_eq!(location, format!("/v1/webhooks/{id}"));
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["disabledReason"], Value::Null);
    assert_eq!(created["events"], json!(["customer.updated"]));
    assert_eq!(created["metadata"], json!({"team": "risk"}));

    // Never in GET or lists; by the secret route.
    let got = get_json_as_manager(&app, &location).await;
    assert!(got.get("secret").is_none(), "{got}");
    let mut without_secret = created.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    assert_eq!(got, without_secret);
    let list = get_json_as_manager(&app, "/v1/webhooks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(list["data"][0].get("secret").is_none());
    assert_eq!(list["hasMore"], false);
    let shown = get_json_as_manager(&app, &format!("{location}/secret")).await;
    assert_eq!(shown, json!({"secret": secret}));

    // PATCH with If-Match: a stale one is 412, nothing changed.
    let stale = app
        .request_as(Method::PATCH, &location, &manage_token())
        .header("if-match", "\"7\"")
        .json(&json!({"description": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let patched = app
        .request_as(Method::PATCH, &location, &manage_token())
        .header("if-match", "\"1\"")
        .header("content-type", "application/merge-patch+json")
        .body(json!({"description": null, "metadata": {"team": null, "tier": "gold"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    assert_eq!(patched.headers()["etag"], "\"2\"");
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["description"], Value::Null);
    assert_eq!(patched["metadata"], json!({"tier": "gold"}));
    assert!(patched.get("secret").is_none());

    // POST with id: the members given replace, the others stay; no secret in the answer.
    let updated = call(
        &app,
        Method::POST,
        "/v1/webhooks",
        Some(json!({"id": id, "url": "https://partner.example/v2"})),
    )
    .await;
    assert_eq!(updated.status(), 200);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["url"], "https://partner.example/v2");
    assert_eq!(updated["events"], json!(["customer.updated"]));
    assert!(updated.get("secret").is_none());

    // DELETE disables (manual); enabling again clears the reason.
    let deleted = call(&app, Method::DELETE, &location, None).await;
    assert_eq!(deleted.status(), 200);
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(deleted["enabled"], false);
    assert_eq!(deleted["disabledReason"], "manual");
    let enabled = call(
        &app,
        Method::PATCH,
        &location,
        Some(json!({"enabled": true})),
    )
    .await;
    let enabled: Value = enabled.json().await.unwrap();
    assert_eq!(enabled["enabled"], true);
    assert_eq!(enabled["disabledReason"], Value::Null);

    // The secret is stored encrypted: its text is nowhere in the table.
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT sealed FROM webhook_secrets")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    let raw = base64_secret_bytes(secret);
    assert!(!stored[0].windows(raw.len()).any(|w| w == raw.as_slice()));
}

fn base64_secret_bytes(secret: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap()
}

#[tokio::test]
async fn bad_webhooks_are_refused_with_the_field_named_and_nothing_written() {
    // The default configuration: https only, no loopback or private literal addresses.
    let app = spawn_app().await;
    for (body, param, code) in [
        (json!({"events": []}), "url", "parameter_invalid"),
        (
            json!({"url": "http://partner.example/"}),
            "url",
            "parameter_invalid",
        ),
        (
            json!({"url": "https://127.0.0.1/hooks"}),
            "url",
            "parameter_invalid",
        ),
        (
            json!({"url": "https://[::ffff:10.0.0.1]/"}),
            "url",
            "parameter_invalid",
        ),
        (
            json!({"url": "https://169.254.169.254/"}),
            "url",
            "parameter_invalid",
        ),
        (
            json!({"url": "https://partner.example/", "events": ["customer.renamed"]}),
            "events.0",
            "parameter_invalid",
        ),
        (
            json!({"url": "https://partner.example/", "secret": "whsec_c2hvcnQ="}),
            "secret",
            "parameter_invalid",
        ),
        (
            json!({"url": "https://partner.example/", "colour": "red"}),
            "colour",
            "parameter_unknown",
        ),
        (
            json!({"url": "https://partner.example/", "createdAt": "2026-01-01T00:00:00Z"}),
            "createdAt",
            "parameter_not_updatable",
        ),
    ] {
        let response = call(&app, Method::POST, "/v1/webhooks", Some(body.clone())).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM webhooks")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 0);
    // A host name is not resolved at create: accepted.
    create_webhook(&app, json!({"url": "https://localhost/hooks"})).await;
}

#[tokio::test]
async fn another_tenants_webhook_delivery_and_secret_are_not_found() {
    let app = spawn_hooks_app().await;
    let webhook = create_webhook(&app, json!({"url": "https://partner.example/"})).await;
    let id = webhook["id"].as_str().unwrap();
    let other = token("org_b", "test", MANAGE);
    let live = token(ORG, "live", MANAGE);
    for tok in [&other, &live] {
        for (method, path) in [
            (Method::GET, format!("/v1/webhooks/{id}")),
            (Method::PATCH, format!("/v1/webhooks/{id}")),
            (Method::DELETE, format!("/v1/webhooks/{id}")),
            (Method::GET, format!("/v1/webhooks/{id}/secret")),
            (Method::POST, format!("/v1/webhooks/{id}/rotate-secret")),
            (Method::GET, format!("/v1/webhooks/{id}/deliveries")),
            (
                Method::POST,
                format!("/v1/webhooks/{id}/deliveries/dlv_01JD7Q4X2V6W8Y9Z0A1B2C3D4E/retry"),
            ),
            (Method::POST, format!("/v1/webhooks/{id}/recover")),
        ] {
            let mut request = app.request_as(method.clone(), &path, tok);
            if method != Method::GET && method != Method::DELETE {
                let body = if path.ends_with("recover") {
                    json!({"since": "2026-01-01T00:00:00Z"})
                } else {
                    json!({})
                };
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 404, "{method} {path}");
        }
        let list: Value = app
            .request_as(Method::GET, "/v1/webhooks", tok)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["data"], json!([]));
    }
    // POST with another tenant's id does not update it.
    let response = app
        .request_as(Method::POST, "/v1/webhooks", &other)
        .json(&json!({"id": id, "url": "https://evil.example/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let got = get_json_as_manager(&app, &format!("/v1/webhooks/{id}")).await;
    assert_eq!(got["url"], "https://partner.example/");
}

#[tokio::test]
async fn webhooks_need_their_own_scope() {
    let app = spawn_hooks_app().await;
    let admin = token(ORG, "test", ADMIN);
    let response = app
        .request_as(Method::GET, "/v1/webhooks", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "insufficient_scope");
    // webhooks:manage alone reads no customers; both scopes together do both.
    let customers = app
        .request_as(Method::GET, "/v1/customers", &manage_token())
        .send()
        .await
        .unwrap();
    assert_eq!(customers.status(), 403);
    let both = token(ORG, "test", &format!("{MANAGE} {READ}"));
    for path in ["/v1/customers", "/v1/webhooks"] {
        let response = app
            .request_as(Method::GET, path, &both)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_create_with_an_idempotency_key_is_made_once_and_replayed() {
    let app = spawn_hooks_app().await;
    let send = || async {
        app.request_as(Method::POST, "/v1/webhooks", &manage_token())
            .header("idempotency-key", "hook-1")
            .json(&json!({"url": "https://partner.example/"}))
            .send()
            .await
            .unwrap()
    };
    let first = send().await;
    assert_eq!(first.status(), 201);
    let first_body = first.text().await.unwrap();
    let second = send().await;
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.text().await.unwrap(), first_body);
    let list = get_json_as_manager(&app, "/v1/webhooks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn webhooks_are_listed_newest_first_with_cursors() {
    let app = spawn_hooks_app().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let w = create_webhook(&app, json!({"url": format!("https://partner.example/{i}")})).await;
        ids.push(w["id"].as_str().unwrap().to_owned());
    }
    let first = get_json_as_manager(&app, "/v1/webhooks?limit=2").await;
    assert_eq!(first["hasMore"], true);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = get_json_as_manager(&app, &format!("/v1/webhooks?limit=2&cursor={cursor}")).await;
    let listed: Vec<&str> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["data"].as_array().unwrap())
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    ids.reverse();
    assert_eq!(listed, ids);
    let response = call(&app, Method::GET, "/v1/webhooks?cursor=forged.AAAA", None).await;
    assert_eq!(response.status(), 400);
}
