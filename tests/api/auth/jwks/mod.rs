//! Keys from an identity provider (`auth.jwks_url`, `auth.oidc_issuer`): a provider the test
//! runs on 127.0.0.1 serves a JWKS the test changes and counts its fetches; the service rotates
//! keys with no restart, limits fetches for unknown kids, keeps its keys through failed fetches,
//! and is not ready before a first JWKS is loaded.

mod provider;

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::support::*;
use provider::{free_port, jwks, key, key_a, key_b, Provider, TestKey};

async fn app_with_jwks(url: String, refresh: Duration) -> TestApp {
    spawn_app_with(move |settings| {
        settings.auth.jwks_url = url;
        settings.auth.jwks_refresh = refresh;
    })
    .await
}

/// `GET /v1/customers` with this token: 200, or 401 with the error envelope.
async fn status_with(app: &TestApp, token: &str) -> u16 {
    let response = app
        .client
        .get(app.url("/v1/customers"))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    if status == 401 {
        assert_401(response, "a refused token").await;
    }
    status
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let response = app.get_anonymous("/readyz").await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn wait_until_ready(app: &TestApp) -> Value {
    for _ in 0..200 {
        let (status, body) = readyz(app).await;
        if status == 200 {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/readyz never became 200: {:?}", readyz(app).await);
}

/// This service's `auth_jwks_fetches_total{outcome="…"}`.
async fn fetches_metric(app: &TestApp, outcome: &str) -> u64 {
    let text = app.get_anonymous("/metrics").await.text().await.unwrap();
    let prefix = format!("auth_jwks_fetches_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
        .trim()
        .parse()
        .expect("a count")
}

#[tokio::test]
async fn a_new_key_verifies_at_once_with_no_restart() {
    let (a, b) = (key_a(), key_b());
    let provider = Provider::start(jwks(&[&a])).await;
    // No refresh during the test: only the start-up fetch and the unknown kid's.
    let app = app_with_jwks(provider.url(), Duration::from_secs(3600)).await;
    let body = wait_until_ready(&app).await;
    assert_eq!(body["keys"], json!({"jwks": "loaded", "count": 1}));
    assert_eq!(status_with(&app, &a.token()).await, 200);
    // The development key of the configuration keeps working beside the fetched ones.
    assert_eq!(status_with(&app, &token(ORG, "test", READ)).await, 200);
    assert_eq!(provider.fetches(), 1);

    // The provider rotates: a token of the new key is accepted on its first use.
    provider.set_jwks(jwks(&[&a, &b]));
    assert_eq!(status_with(&app, &b.token()).await, 200);
    assert_eq!(provider.fetches(), 2, "one fetch for the unknown kid");
    assert_eq!(status_with(&app, &b.token()).await, 200);
    assert_eq!(status_with(&app, &a.token()).await, 200);
    assert_eq!(provider.fetches(), 2, "a kid held asks for no fetch");
}

#[tokio::test]
async fn a_removed_key_stops_verifying_after_the_next_refresh() {
    let (a, b) = (key_a(), key_b());
    let provider = Provider::start(jwks(&[&a, &b])).await;
    let app = app_with_jwks(provider.url(), Duration::from_secs(1)).await;
    wait_until_ready(&app).await;
    // The same token twice: the second is answered from memory, which must be forgotten too.
    let remembered = a.token();
    assert_eq!(status_with(&app, &remembered).await, 200);
    assert_eq!(status_with(&app, &remembered).await, 200);

    provider.set_jwks(jwks(&[&b]));
    // Two more fetches: the first of them began after the change and has been applied.
    let seen = provider.fetches();
    provider.wait_for_fetches(seen + 2).await;
    assert_eq!(status_with(&app, &remembered).await, 401);
    assert_eq!(status_with(&app, &a.token()).await, 401);
    assert_eq!(status_with(&app, &b.token()).await, 200);
    assert_eq!(readyz(&app).await.1["keys"]["count"], 1);
}

#[tokio::test]
async fn a_burst_of_unknown_kids_makes_one_fetch() {
    let a = key_a();
    let provider = Provider::start(jwks(&[&a])).await;
    let app = app_with_jwks(provider.url(), Duration::from_secs(3600)).await;
    wait_until_ready(&app).await;
    assert_eq!(provider.fetches(), 1, "the start-up fetch");

    // Twenty tokens at once, each naming a kid the provider never published.
    let strangers: Vec<TestKey> = (0..20)
        .map(|i| {
            let kid: &'static str = Box::leak(format!("unknown-{i}").into_boxed_str());
            key(kid, "ed25519-b", Algorithm::EdDSA)
        })
        .collect();
    let tokens: Vec<String> = strangers.iter().map(TestKey::token).collect();
    let statuses =
        futures_util::future::join_all(tokens.iter().map(|t| status_with(&app, t))).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(provider.fetches(), 2, "one fetch for the whole burst");

    // Within 30 s of it, another unknown kid is refused without a fetch, even one the provider
    // has published since (the price of the limit; the next refresh brings it).
    provider.set_jwks(jwks(&[&a, &strangers[0]]));
    assert_eq!(status_with(&app, &strangers[0].token()).await, 401);
    assert_eq!(provider.fetches(), 2, "the limit holds");
    assert_eq!(status_with(&app, &a.token()).await, 200);
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_last_good_keys_and_is_counted() {
    let a = key_a();
    let provider = Provider::start(jwks(&[&a])).await;
    let app = app_with_jwks(provider.url(), Duration::from_secs(1)).await;
    wait_until_ready(&app).await;
    assert_eq!(fetches_metric(&app, "failed").await, 0);
    let loaded = fetches_metric(&app, "ok").await;
    assert!(loaded >= 1);

    for (failure, what) in [
        ((500, "{}"), "a server error"),
        (
            (200, "<html>not a JWKS</html>"),
            "a body that is not a JWKS",
        ),
        ((200, r#"{"keys": []}"#), "a JWKS without a usable key"),
    ] {
        let failed = fetches_metric(&app, "failed").await;
        provider.fail_with(Some(failure));
        let seen = provider.fetches();
        provider.wait_for_fetches(seen + 2).await;
        assert!(
            fetches_metric(&app, "failed").await > failed,
            "{what}: counted"
        );
        // A fresh token (never verified before) of the last good key is still accepted.
        assert_eq!(status_with(&app, &a.token()).await, 200, "{what}");
        let (status, body) = readyz(&app).await;
        assert_eq!(status, 200, "{what}: still ready");
        assert_eq!(body["keys"], json!({"jwks": "stale", "count": 1}), "{what}");
    }

    provider.fail_with(None);
    let seen = provider.fetches();
    provider.wait_for_fetches(seen + 2).await;
    assert_eq!(
        readyz(&app).await.1["keys"],
        json!({"jwks": "loaded", "count": 1})
    );
    assert!(fetches_metric(&app, "ok").await > loaded);
}

#[tokio::test]
async fn a_jwk_without_alg_takes_its_key_types() {
    let keys = [
        key("rsa", "rsa", Algorithm::RS256),
        key("ec", "ec-p256", Algorithm::ES256),
        key("okp", "ed25519-a", Algorithm::EdDSA),
    ];
    let provider = Provider::start(json!({
        "keys": keys.iter().map(|k| k.public(false)).collect::<Vec<_>>()
    }))
    .await;
    let app = app_with_jwks(provider.url(), Duration::from_secs(3600)).await;
    assert_eq!(wait_until_ready(&app).await["keys"]["count"], 3);
    for k in &keys {
        assert_eq!(status_with(&app, &k.token()).await, 200, "{}", k.kid);
    }
    // The key type fixes the algorithm: an HS256 token naming the RSA key, "signed" with its
    // public JWK as the secret, is refused.
    let confused = hs256(
        Some("rsa"),
        &claims(ORG, "test", READ),
        keys[0].jwk.to_string().as_bytes(),
    );
    assert_eq!(status_with(&app, &confused).await, 401);
}

#[tokio::test]
async fn unreachable_at_start_up_the_service_starts_and_is_ready_once_keys_load() {
    let a = key_a();
    let port = free_port();
    let app = app_with_jwks(
        format!("http://127.0.0.1:{port}/jwks.json"),
        Duration::from_secs(3600),
    )
    .await;
    for _ in 0..5 {
        assert_eq!(readyz(&app).await.0, 503, "no JWKS loaded yet");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status_with(&app, &a.token()).await, 401);
    // Configured keys are usable at once.
    assert_eq!(status_with(&app, &token(ORG, "test", READ)).await, 200);

    let provider = Provider::start_on(port, jwks(&[&a])).await;
    let body = wait_until_ready(&app).await;
    assert_eq!(body["keys"], json!({"jwks": "loaded", "count": 1}));
    assert!(provider.fetches() >= 1);
    assert_eq!(status_with(&app, &a.token()).await, 200);
}

#[tokio::test]
async fn an_oidc_issuer_names_the_jwks_and_the_issuer_tokens_must_carry() {
    let a = key_a();
    let provider = Provider::start(jwks(&[&a])).await;
    let issuer = provider.origin();
    provider.state.lock().unwrap().discovery = Some(json!({
        "issuer": issuer,
        "jwks_uri": provider.url(),
        "id_token_signing_alg_values_supported": ["EdDSA"],
    }));
    let configured = issuer.clone();
    let app = spawn_app_with(move |settings| {
        settings.auth.oidc_issuer = configured;
        settings.auth.jwks_refresh = Duration::from_secs(3600);
    })
    .await;
    wait_until_ready(&app).await;
    assert_eq!(provider.state.lock().unwrap().discovery_fetches, 1);
    assert_eq!(provider.fetches(), 1);

    let mut good = claims(ORG, "test", READ);
    good["iss"] = json!(issuer);
    assert_eq!(status_with(&app, &a.sign(good.clone())).await, 200);
    let mut other = good.clone();
    other["iss"] = json!("https://another-issuer.example");
    assert_eq!(status_with(&app, &a.sign(other)).await, 401);
    let mut none = good;
    none.as_object_mut().unwrap().remove("iss");
    assert_eq!(status_with(&app, &a.sign(none)).await, 401);
}
