//! Claims that make a correctly signed token invalid: `nbf` in the future, a wrong or missing
//! `iss` or `aud` when the service is configured with them, and claims of the wrong type.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn a_token_not_valid_yet_is_401() {
    let app = spawn_app().await;
    for (what, nbf) in [
        ("nbf in an hour", now() + 3600),
        ("nbf in two minutes (past the 30 s leeway)", now() + 120),
        ("nbf in a year", now() + 365 * 24 * 3600),
    ] {
        let mut c = claims(ORG, "test", ADMIN);
        c["nbf"] = json!(nbf);
        assert_token_refused(&app, &dev_token(&c), what).await;
    }
    let mut c = claims(ORG, "test", ADMIN);
    c["nbf"] = json!(now().to_string());
    assert_token_refused(&app, &dev_token(&c), "nbf as a string").await;
    // Controls: a past nbf is fine.
    let mut c = claims(ORG, "test", ADMIN);
    c["nbf"] = json!(now() - 60);
    assert_token_accepted(&app, &dev_token(&c), "nbf a minute ago").await;
}

const ISS: &str = "https://auth.example.test/";
const AUD: &str = "customers-api";

/// Development-key claims with `iss` and `aud` as given (None: left out).
fn with_iss_and_aud(iss: Option<Value>, aud: Option<Value>) -> String {
    let mut c = claims(ORG, "test", ADMIN);
    if let Some(iss) = iss {
        c["iss"] = iss;
    }
    if let Some(aud) = aud {
        c["aud"] = aud;
    }
    dev_token(&c)
}

/// (what, iss, aud) that a service with `ISS` and `AUD` configured must refuse.
fn wrong_issuers_and_audiences() -> Vec<(&'static str, Option<Value>, Option<Value>)> {
    vec![
        ("no iss", None, Some(json!(AUD))),
        (
            "wrong iss",
            Some(json!("https://evil.example.test/")),
            Some(json!(AUD)),
        ),
        (
            "iss without the slash",
            Some(json!("https://auth.example.test")),
            Some(json!(AUD)),
        ),
        (
            "iss with a suffix",
            Some(json!(format!("{ISS}x"))),
            Some(json!(AUD)),
        ),
        (
            "iss in upper case",
            Some(json!(ISS.to_uppercase())),
            Some(json!(AUD)),
        ),
        ("empty iss", Some(json!("")), Some(json!(AUD))),
        ("iss a number", Some(json!(1)), Some(json!(AUD))),
        ("no aud", Some(json!(ISS)), None),
        ("wrong aud", Some(json!(ISS)), Some(json!("payments-api"))),
        (
            "aud with a prefix",
            Some(json!(ISS)),
            Some(json!(format!("x{AUD}"))),
        ),
        ("empty aud", Some(json!(ISS)), Some(json!(""))),
        (
            "aud a list of others",
            Some(json!(ISS)),
            Some(json!(["payments-api", "cards-api"])),
        ),
        ("aud an empty list", Some(json!(ISS)), Some(json!([]))),
        ("neither", None, None),
    ]
}

#[tokio::test]
async fn a_wrong_or_missing_issuer_or_audience_is_401_when_configured() {
    let app = spawn_app_with(|settings| {
        settings.auth.issuer = ISS.into();
        settings.auth.audience = AUD.into();
    })
    .await;
    assert_token_accepted(
        &app,
        &with_iss_and_aud(Some(json!(ISS)), Some(json!(AUD))),
        "right iss and aud",
    )
    .await;
    // The service's own minting puts the configured iss and aud in.
    let minted = mint(
        &app.settings.auth,
        ORG,
        "test",
        ADMIN,
        Duration::from_secs(600),
    );
    assert_token_accepted(&app, &minted, "a token minted with iss and aud").await;
    for (what, iss, aud) in wrong_issuers_and_audiences() {
        assert_token_refused(&app, &with_iss_and_aud(iss, aud), what).await;
    }
    assert_eq!(app.count_customers().await, 2);
}

#[tokio::test]
async fn correctly_signed_claims_of_the_wrong_kind_are_401() {
    let app = spawn_app().await;
    let good = claims(ORG, "test", ADMIN);
    let far_future = (now() + 10 * 365 * 24 * 3600).to_string();
    for (what, patch) in [
        ("exp as a string", json!({"exp": far_future})),
        ("exp negative", json!({"exp": -1})),
        ("exp a float in the past", json!({"exp": 1.5})),
        ("mode LIVE", json!({"mode": "LIVE"})),
        ("org null", json!({"org": null})),
        ("org a number", json!({"org": 7})),
        ("org with a NUL", json!({"org": "org\u{0}a"})),
        ("org of 256 characters", json!({"org": "o".repeat(256)})),
        ("sub a number", json!({"sub": 7})),
    ] {
        let mut c = good.clone();
        for (k, v) in patch.as_object().expect("an object") {
            if v.is_null() {
                c.as_object_mut().expect("claims").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        assert_token_refused(&app, &dev_token(&c), &format!("claims: {what}")).await;
    }
    assert_eq!(app.count_customers().await, 0);
}
