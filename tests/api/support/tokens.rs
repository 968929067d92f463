//! Bearer tokens: minted by the service's own code with the development key (as
//! `customers-api token` prints them), and made by hand, right in every respect but the one
//! under test.

use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use customers_api::auth::{mint_token, KeyRing, Mode, TokenRequest};
use customers_api::configuration::{AuthSettings, KeySettings, Secret};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::app::test_settings;

pub const ORG: &str = "org_a";
pub const ADMIN: &str = "customers:admin";
pub const WRITE: &str = "customers:write";
pub const READ: &str = "customers:read";

/// The development HS256 key of `config/default.toml`.
pub const DEV_KID: &str = "dev";
pub const DEV_SECRET: &str = "dev-signing-secret-do-not-use-in-production-0000";

/// The key ring of the default configuration, loaded once.
fn dev_ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| KeyRing::from_settings(&test_settings().auth).expect("keys load"))
}

fn mode(mode: &str) -> Mode {
    if mode == "live" {
        Mode::Live
    } else {
        Mode::Test
    }
}

fn mint_with(ring: &KeyRing, org: &str, mode_name: &str, scope: &str, ttl: Duration) -> String {
    mint_token(
        ring,
        &TokenRequest {
            org: org.into(),
            mode: mode(mode_name),
            scope: scope.into(),
            ttl,
            sub: "tests".into(),
        },
    )
    .expect("a token")
}

/// A token from the development key, valid for an hour, as `customers-api token` would print it.
pub fn token(org: &str, mode: &str, scope: &str) -> String {
    mint_with(dev_ring(), org, mode, scope, Duration::from_secs(3600))
}

/// A token minted by the service's own code with these settings (issuer and audience included).
pub fn mint(auth: &AuthSettings, org: &str, mode: &str, scope: &str, ttl: Duration) -> String {
    let ring = KeyRing::from_settings(auth).expect("keys");
    mint_with(&ring, org, mode, scope, ttl)
}

/// What the development key ring reads from a token: (org, mode, scope).
pub fn verify(token: &str) -> (String, &'static str, String) {
    let claims = dev_ring().verify(token).expect("the token verifies");
    (
        claims.org.clone(),
        claims.mode.as_str(),
        claims.scope.clone(),
    )
}

/// The settings of an RS256 key whose public key is in `public_key_file`.
pub fn rs256_key_settings(kid: &str, public_key_file: &str) -> KeySettings {
    KeySettings {
        kid: kid.into(),
        alg: "RS256".into(),
        secret: Secret::new(""),
        public_key_file: public_key_file.into(),
        private_key_file: String::new(),
    }
}

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Valid claims for an hour.
pub fn claims(org: &str, mode: &str, scope: &str) -> Value {
    json!({
        "sub": "tests",
        "org": org,
        "mode": mode,
        "scope": scope,
        "exp": now() + 3600,
        "iat": now(),
    })
}

/// A JWS with exactly this header JSON, signed over what is sent (so only the property under
/// test is wrong).
pub fn forge(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("the token signs");
    format!("{message}.{signature}")
}

/// An HS256 token with the header `{"alg":"HS256","typ":"JWT"}` and `kid` when given.
pub fn hs256(kid: Option<&str>, claims: &Value, secret: &[u8]) -> String {
    let mut header = json!({"alg": "HS256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    forge(
        &header,
        claims,
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
}

/// A token signed by jsonwebtoken with an HMAC algorithm and secret of choice.
pub fn sign(claims: &Value, kid: Option<&str>, alg: Algorithm, secret: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a token")
}

/// Signed with the development key, as the service's own tokens are.
pub fn dev_token(claims: &Value) -> String {
    hs256(Some(DEV_KID), claims, DEV_SECRET.as_bytes())
}

/// An unsigned token: `alg: none`, an empty signature.
pub fn unsigned(header: Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}
