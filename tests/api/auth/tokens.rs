//! Which bearer tokens are accepted: the control (a token right in every respect), then
//! missing, malformed, expired, badly signed and unsigned tokens, unknown key ids and other
//! algorithms.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::json;

use super::*;

#[tokio::test]
async fn a_token_signed_with_the_development_key_is_accepted() {
    // The control for the refusals below: the hand-made tokens are right but for one thing.
    let app = spawn_app().await;
    let token = dev_token(&claims(ORG, "test", ADMIN));
    let id = create_as(&app, &token, json!({"email": "a@example.com"})).await;
    assert_eq!(stored(&app, &id).await.0, ORG);
    assert_eq!(list_ids(&app, &token, "").await, vec![id.clone()]);
    // The helper's tokens and hand-made ones name the same tenant.
    assert_eq!(app.get_json(&id).await["id"], id.as_str());
    // Without a kid, the only configured key is used.
    let no_kid = sign(
        &claims(ORG, "test", READ),
        None,
        Algorithm::HS256,
        DEV_SECRET,
    );
    assert_eq!(list_ids(&app, &no_kid, "").await, vec![id.clone()]);
    // The scheme is case-insensitive (RFC 9110 §11.1).
    for scheme in ["bearer", "BEARER"] {
        let response = app
            .client
            .get(app.url(&format!("/v1/customers/{id}")))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
}

#[tokio::test]
async fn a_missing_token_is_401_with_a_bearer_challenge() {
    let app = spawn_app().await;
    assert_refused_everywhere(&app, None, "no Authorization header").await;
}

#[tokio::test]
async fn a_malformed_token_is_401() {
    let app = spawn_app().await;
    let valid = token(ORG, "test", ADMIN);
    let basic = format!("Basic {}", URL_SAFE_NO_PAD.encode("user:pass"));
    let no_scheme = valid.clone();
    let two_tokens = format!("Bearer {valid} {valid}");
    let four_parts = format!("Bearer {valid}.abc");
    let not_json = format!(
        "Bearer {}.{}.{}",
        URL_SAFE_NO_PAD.encode("not json"),
        URL_SAFE_NO_PAD.encode("not json"),
        URL_SAFE_NO_PAD.encode("sig")
    );
    for header in [
        "",
        "Bearer",
        "Bearer ",
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer a.b",
        "Bearer ...",
        basic.as_str(),
        no_scheme.as_str(),
        two_tokens.as_str(),
        four_parts.as_str(),
        not_json.as_str(),
    ] {
        assert_refused_everywhere(&app, Some(header), &format!("Authorization: {header:?}")).await;
    }

    // Two Authorization headers are refused rather than guessed between.
    let response = app
        .client
        .get(app.url("/v1/customers"))
        .header("authorization", format!("Bearer {valid}"))
        .header("authorization", "Bearer garbage")
        .send()
        .await
        .unwrap();
    assert_401(response, "two Authorization headers").await;

    // Claims of the wrong shape, correctly signed.
    let mut bad_mode = claims(ORG, "test", ADMIN);
    bad_mode["mode"] = json!("staging");
    let mut no_org = claims(ORG, "test", ADMIN);
    no_org.as_object_mut().unwrap().remove("org");
    let mut empty_org = claims(ORG, "test", ADMIN);
    empty_org["org"] = json!("");
    for (what, claims) in [
        ("mode staging", bad_mode),
        ("no org", no_org),
        ("empty org", empty_org),
    ] {
        assert_token_refused(&app, &dev_token(&claims), what).await;
    }
}

#[tokio::test]
async fn an_expired_token_is_401_and_the_leeway_is_30_seconds() {
    let app = spawn_app().await;
    let mut expired = claims(ORG, "test", ADMIN);
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 7200);
    assert_token_refused(&app, &dev_token(&expired), "expired an hour ago").await;

    let mut just_past_leeway = claims(ORG, "test", ADMIN);
    just_past_leeway["exp"] = json!(now() - 90);
    assert_token_refused(&app, &dev_token(&just_past_leeway), "expired 90 s ago").await;

    let mut no_exp = claims(ORG, "test", ADMIN);
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_token_refused(&app, &dev_token(&no_exp), "no exp").await;

    // Within the default leeway of 30 s a just-expired token still works.
    let mut within_leeway = claims(ORG, "test", ADMIN);
    within_leeway["exp"] = json!(now() - 5);
    create_as(&app, &dev_token(&within_leeway), json!({})).await;
    assert_eq!(app.count_customers().await, 1);
}

#[tokio::test]
async fn a_badly_signed_token_is_401() {
    let app = spawn_app().await;
    let good = claims(ORG, "test", ADMIN);
    let other_secret = sign(
        &good,
        Some(DEV_KID),
        Algorithm::HS256,
        "another-secret-of-the-same-length-as-the-dev-one",
    );
    assert_token_refused(&app, &other_secret, "signed with another secret").await;

    // A valid token whose payload was swapped for another tenant's.
    let valid = dev_token(&good);
    let parts: Vec<&str> = valid.split('.').collect();
    let forged_payload = URL_SAFE_NO_PAD.encode(claims("org_b", "live", ADMIN).to_string());
    let swapped = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_token_refused(&app, &swapped, "payload swapped").await;

    let stripped = format!("{}.{}.", parts[0], parts[1]);
    assert_token_refused(&app, &stripped, "signature stripped").await;

    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[0] ^= 0x01;
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert_token_refused(&app, &flipped, "one signature bit flipped").await;
}

#[tokio::test]
async fn an_alg_none_token_is_401() {
    let app = spawn_app().await;
    let claims = claims(ORG, "test", ADMIN);
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "none", "typ": "JWT", "kid": DEV_KID}),
        json!({"alg": "None", "typ": "JWT", "kid": DEV_KID}),
        json!({"alg": "NONE", "typ": "JWT"}),
    ] {
        let token = unsigned(header.clone(), &claims);
        assert_token_refused(&app, &token, &format!("unsigned, header {header}")).await;
        // With the dev key's signature attached anyway.
        let signature = dev_token(&claims).rsplit('.').next().unwrap().to_owned();
        let token = format!("{token}{signature}");
        assert_token_refused(&app, &token, &format!("header {header}, signed")).await;
    }
}

#[tokio::test]
async fn an_unknown_kid_or_an_algorithm_other_than_the_keys_is_401() {
    let app = spawn_app().await;
    let claims = claims(ORG, "test", ADMIN);
    for kid in ["other", "", "DEV", "dev ", "../dev"] {
        let token = sign(&claims, Some(kid), Algorithm::HS256, DEV_SECRET);
        assert_token_refused(&app, &token, &format!("kid {kid:?}")).await;
    }
    // The key's algorithm is HS256; the token does not get to choose another one.
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = sign(&claims, Some(DEV_KID), alg, DEV_SECRET);
        assert_token_refused(&app, &token, &format!("alg {alg:?}")).await;
    }
}
