//! Tokens that are too large, edited in place, with a header that is not a JWS header, or
//! wrapped in garbage and other schemes around an otherwise valid token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn an_oversized_token_is_401() {
    let app = spawn_app().await;
    let good = claims(ORG, "test", ADMIN);

    // Size: a validly signed 8 KiB token is refused before parsing; a 3 KiB one is fine.
    let mut big = good.clone();
    big["pad"] = json!("p".repeat(6 * 1024));
    let token = dev_token(&big);
    assert!(token.len() > 8 * 1024, "{}", token.len());
    assert_token_refused(&app, &token, "a validly signed 8 KiB token").await;
    let mut medium = good.clone();
    medium["pad"] = json!("p".repeat(2 * 1024));
    assert_token_accepted(&app, &dev_token(&medium), "a validly signed 3 KiB token").await;
    let garbage: String = (0..8 * 1024)
        .map(|i| char::from(b"abcXYZ019-_."[i % 12]))
        .collect();
    assert_token_refused(&app, &garbage, "8 KiB of token characters").await;
    assert_token_refused(
        &app,
        &format!(
            "eyJ{}.eyJ{}.{}",
            "A".repeat(3000),
            "B".repeat(3000),
            "C".repeat(2200)
        ),
        "an 8 KiB three-part token",
    )
    .await;
    assert_eq!(
        app.count_customers().await,
        1,
        "only the 3 KiB control wrote"
    );
}

/// A valid token of `good` edited in place, each way: (what, token).
fn edited_in_place(good: &Value) -> Vec<(&'static str, String)> {
    let valid = dev_token(good);
    let parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).expect("base64url");
    let payload = String::from_utf8(decode(&parts[1])).expect("UTF-8");
    let header = String::from_utf8(decode(&parts[0])).expect("UTF-8");
    let edit_payload = |from: &str, to: &str| {
        assert!(payload.contains(from), "{payload} has {from}");
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(payload.replacen(from, to, 1)),
            parts[2]
        )
    };
    let edit_header = |from: &str, to: &str| {
        assert!(header.contains(from), "{header} has {from}");
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.replacen(from, to, 1)),
            parts[1],
            parts[2]
        )
    };
    let far_future = (now() + 10 * 365 * 24 * 3600).to_string();
    let exp = good["exp"].to_string();
    vec![
        ("mode test → live", edit_payload("\"test\"", "\"live\"")),
        ("org changed", edit_payload(ORG, "org_b")),
        (
            "scope raised",
            edit_payload(ADMIN, "customers:admin customers:admin"),
        ),
        ("exp extended", edit_payload(&exp, &far_future)),
        ("a space added to the payload", edit_payload("{", "{ ")),
        (
            "alg HS256 → HS512 in the header",
            edit_header("HS256", "HS512"),
        ),
        (
            "alg HS256 → none in the header",
            edit_header("HS256", "none"),
        ),
        (
            "kid dev → rsa in the header",
            edit_header("\"dev\"", "\"rsa\""),
        ),
        (
            "the signature of another token",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                dev_token(&claims("org_b", "test", ADMIN))
                    .split('.')
                    .nth(2)
                    .expect("three parts")
            ),
        ),
        ("padding on the signature", format!("{valid}==")),
        (
            "standard base64 signature",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                parts[2].replace('-', "+").replace('_', "/") + "+/"
            ),
        ),
        ("a trailing dot", format!("{valid}.")),
        ("a leading dot", format!(".{valid}")),
        (
            "whitespace inside",
            format!("{}. {}.{}", parts[0], parts[1], parts[2]),
        ),
        (
            "the parts reversed",
            format!("{}.{}.{}", parts[2], parts[1], parts[0]),
        ),
        (
            "the header twice",
            format!("{}.{}.{}", parts[0], parts[0], parts[2]),
        ),
    ]
}

#[tokio::test]
async fn a_valid_token_edited_in_place_is_401() {
    let app = spawn_app().await;
    for (what, token) in edited_in_place(&claims(ORG, "test", ADMIN)) {
        assert_token_refused(&app, &token, &format!("tampered: {what}")).await;
    }
    assert_eq!(app.count_customers().await, 0);
}

#[tokio::test]
async fn a_header_that_is_not_a_jws_header_is_401() {
    let app = spawn_app().await;
    let good = claims(ORG, "test", ADMIN);
    for (what, header) in [
        ("header is an array", json!(["HS256"])),
        ("header without alg", json!({"typ": "JWT", "kid": DEV_KID})),
        ("alg lower case", json!({"alg": "hs256", "kid": DEV_KID})),
        ("alg a list", json!({"alg": ["HS256"], "kid": DEV_KID})),
        ("kid a number", json!({"alg": "HS256", "kid": 1})),
        (
            "an encrypted-token header",
            json!({"alg": "dir", "enc": "A256GCM", "kid": DEV_KID}),
        ),
    ] {
        let token = forge(
            &header,
            &good,
            &EncodingKey::from_secret(DEV_SECRET.as_bytes()),
            Algorithm::HS256,
        );
        assert_token_refused(&app, &token, what).await;
    }
    assert_eq!(app.count_customers().await, 0);
}

#[tokio::test]
async fn garbage_and_other_schemes_around_a_valid_token_are_401() {
    let app = spawn_app().await;
    let valid = dev_token(&claims(ORG, "test", ADMIN));
    let garbage = vec![
        format!("Token {valid}"),
        format!("JWT {valid}"),
        format!("Bearer:{valid}"),
        format!("Bearer: {valid}"),
        format!("Digest {valid}"),
        format!("Bearer\t{valid}"),
        format!("Bearer{valid}"),
        format!("Bearer {valid},{valid}"),
        format!("Bearer \"{valid}\""),
        format!("Bearer {}", URL_SAFE_NO_PAD.encode(&valid)),
        "Bearer eyJ".to_owned(),
        "Bearer eyJhbGciOiJIUzI1NiJ9".to_owned(),
        "Bearer eyJhbGciOiJIUzI1NiJ9..".to_owned(),
        "Bearer null".to_owned(),
        "Bearer undefined".to_owned(),
        "Bearer {}".to_owned(),
        format!("Bearer {}", ".".repeat(1000)),
        format!("Bearer {}", "%00".repeat(10)),
        "Bearer ' OR 1=1 --".to_owned(),
    ];
    for authorization in &garbage {
        assert_authorization_refused(
            &app,
            authorization,
            &format!(
                "garbage {:?}",
                &authorization[..authorization.len().min(60)]
            ),
        )
        .await;
    }
    // Bytes that are not even text.
    let response = app
        .client
        .get(app.url("/v1/customers"))
        .header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe\xfd").expect("obs-text"),
        )
        .send()
        .await
        .expect("sent");
    assert_401(response, "a Latin-1 token").await;
    assert_eq!(app.count_customers().await, 0);
}
