//! Security (issue 6): token attacks and tenant isolation under a randomized workload.
//!
//! tests/api/auth.rs already covers, and this file does not repeat: no Authorization header;
//! malformed headers ("", "Bearer", "Bearer ", "Bearer garbage", "a.b.c", "a.b", "...", Basic
//! credentials, a token without a scheme, two tokens, four parts, non-JSON parts); two
//! Authorization headers; correctly signed claims of the wrong shape (mode, missing or empty
//! org); expiry (an hour ago, 90 s ago, no exp) and the 30 s leeway; a token signed with another
//! secret; a payload swapped for another tenant's; a stripped and a bit-flipped signature;
//! `alg: none` in four spellings, with and without a signature; unknown kids (other, "", DEV,
//! "dev ", ../dev); HS384/HS512 tokens for the HS256 key; scopes; cross-org and cross-mode 404s
//! of one customer.
//!
//! Added here: algorithm confusion (HS256 signed with the RSA public key, in several encodings);
//! an RS256 token presented for the HS256 key; a kid-less token when several keys exist; an
//! attacker's key embedded in the header (jwk, jku, x5u); `nbf` in the future; wrong or missing
//! `iss` and `aud` when configured; an 8 KiB token, validly signed or not; payload and header
//! edits in place; more garbage and wrong schemes with an otherwise valid token. Then tenant
//! isolation as a randomized, seeded workload of four tenants.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use customers_api::configuration::{KeySettings, Secret};
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::*;

const DEV_KID: &str = "dev";
const DEV_SECRET: &str = "dev-signing-secret-do-not-use-in-production-0000";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(org: &str, mode: &str) -> Value {
    json!({
        "sub": "security-tests",
        "org": org,
        "mode": mode,
        "scope": ADMIN,
        "exp": now() + 3600,
        "iat": now(),
    })
}

/// A JWS with exactly this header JSON, signed over what is sent (so only the property under
/// test is wrong).
fn forge(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("the token signs");
    format!("{message}.{signature}")
}

fn hs256(kid: Option<&str>, claims: &Value, secret: &[u8]) -> String {
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

fn dev(claims: &Value) -> String {
    hs256(Some(DEV_KID), claims, DEV_SECRET.as_bytes())
}

/// A 401 in the §7 envelope with `WWW-Authenticate: Bearer`.
async fn assert_401(response: Response, what: &str) {
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(status, 401, "{what}: {:?}", response.text().await);
    let challenge = challenge.unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
    assert!(
        challenge == "Bearer" || challenge.starts_with("Bearer "),
        "{what}: WWW-Authenticate: {challenge}"
    );
    let error = error_body(response, 401, "unauthorized").await;
    assert_eq!(error["type"], "authentication_error", "{what}");
    assert!(error.get("param").is_none(), "{what}: {error}");
}

/// The Authorization value is refused on a read and on a write, and nothing is written.
async fn assert_refused(app: &TestApp, authorization: &str, what: &str) {
    let before = app.count_customers().await;
    let response = app
        .client
        .get(app.url("/v1/customers"))
        .header("authorization", authorization)
        .send()
        .await
        .expect("sent");
    assert_401(response, &format!("{what} (GET)")).await;
    let response = app
        .client
        .post(app.url("/v1/customers"))
        .header("authorization", authorization)
        .json(&json!({"email": "attacker@example.com"}))
        .send()
        .await
        .expect("sent");
    assert_401(response, &format!("{what} (POST)")).await;
    assert_eq!(
        app.count_customers().await,
        before,
        "{what}: a write got in"
    );
}

async fn assert_token_refused(app: &TestApp, token: &str, what: &str) {
    assert_refused(app, &format!("Bearer {token}"), what).await;
}

/// The control for each refusal: the same kind of token, right in every respect, works.
async fn assert_accepted(app: &TestApp, token: &str, what: &str) {
    let response = app
        .client
        .post(app.url("/v1/customers"))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response.status(),
        201,
        "{what}: {:?}",
        response.text().await
    );
}

// ---------------------------------------------------------------------------------------------
// Token attacks
// ---------------------------------------------------------------------------------------------

struct RsaKeys {
    _dir: tempfile::TempDir,
    private_pem: Vec<u8>,
    public_pem: Vec<u8>,
    public_file: String,
    /// The same public key as DER and as PKCS#1 PEM: attackers try every encoding.
    public_der: Vec<u8>,
    public_pkcs1_pem: Vec<u8>,
}

fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rsa_keys() -> RsaKeys {
    let dir = tempfile::tempdir().expect("a temp dir");
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (private, public, der, pkcs1) = (
        p("rsa.pem"),
        p("rsa.pub.pem"),
        p("rsa.pub.der"),
        p("rsa.pub.pkcs1.pem"),
    );
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &private,
    ]);
    openssl(&["pkey", "-in", &private, "-pubout", "-out", &public]);
    openssl(&[
        "pkey", "-in", &private, "-pubout", "-outform", "DER", "-out", &der,
    ]);
    openssl(&["rsa", "-in", &private, "-RSAPublicKey_out", "-out", &pkcs1]);
    let read = |path: &str| std::fs::read(Path::new(path)).expect("read a key file");
    RsaKeys {
        private_pem: read(&private),
        public_pem: read(&public),
        public_der: read(&der),
        public_pkcs1_pem: read(&pkcs1),
        public_file: public,
        _dir: dir,
    }
}

/// A server whose key ring holds the development HS256 key and an RS256 public key.
async fn app_with_rsa_key(keys: &RsaKeys) -> TestApp {
    let public_file = keys.public_file.clone();
    spawn_app_with(move |settings| {
        settings.auth.keys.push(KeySettings {
            kid: "rsa".into(),
            alg: "RS256".into(),
            secret: Secret::new(""),
            public_key_file: public_file,
            private_key_file: String::new(),
        });
    })
    .await
}

fn rs256(header: &Value, claims: &Value, private_pem: &[u8]) -> String {
    forge(
        header,
        claims,
        &EncodingKey::from_rsa_pem(private_pem).expect("an RSA private key"),
        Algorithm::RS256,
    )
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_401() {
    let keys = rsa_keys();
    let app = app_with_rsa_key(&keys).await;
    let good = claims(ORG, "test");

    // Controls: the RSA key works, and so does the HMAC key next to it.
    let valid = rs256(
        &json!({"alg": "RS256", "typ": "JWT", "kid": "rsa"}),
        &good,
        &keys.private_pem,
    );
    assert_accepted(&app, &valid, "a valid RS256 token").await;
    assert_accepted(&app, &dev(&good), "a valid HS256 token").await;

    // Algorithm confusion: the public key is public, so an HMAC "signed" with it proves nothing.
    let mut trimmed = keys.public_pem.clone();
    while trimmed.last() == Some(&b'\n') {
        trimmed.pop();
    }
    for (encoding, secret) in [
        ("PEM", keys.public_pem.as_slice()),
        ("PEM without the final newline", trimmed.as_slice()),
        ("DER", keys.public_der.as_slice()),
        ("PKCS#1 PEM", keys.public_pkcs1_pem.as_slice()),
    ] {
        for kid in [Some("rsa"), None] {
            let token = hs256(kid, &good, secret);
            assert_token_refused(
                &app,
                &token,
                &format!("HS256 with the {encoding} public key as secret, kid {kid:?}"),
            )
            .await;
        }
    }
    // The other direction: an RS256 token presented for the HMAC key.
    let token = rs256(
        &json!({"alg": "RS256", "kid": DEV_KID}),
        &good,
        &keys.private_pem,
    );
    assert_token_refused(&app, &token, "RS256 token with the HS256 key's kid").await;
    // With two keys, a kid-less token names no key, even if correctly signed by one of them.
    let token = rs256(&json!({"alg": "RS256"}), &good, &keys.private_pem);
    assert_token_refused(&app, &token, "kid-less RS256 with two keys configured").await;
    let token = hs256(None, &good, DEV_SECRET.as_bytes());
    assert_token_refused(&app, &token, "kid-less HS256 with two keys configured").await;
    // Other RSA-family algorithms are not the key's algorithm.
    for alg in ["RS384", "RS512", "PS256"] {
        let a = match alg {
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            _ => Algorithm::PS256,
        };
        let token = forge(
            &json!({"alg": alg, "kid": "rsa"}),
            &good,
            &EncodingKey::from_rsa_pem(&keys.private_pem).expect("an RSA key"),
            a,
        );
        assert_token_refused(&app, &token, &format!("{alg} for the RS256 key")).await;
    }
    assert_eq!(
        app.count_customers().await,
        2,
        "only the two controls wrote"
    );
}

#[tokio::test]
async fn a_key_embedded_in_the_token_is_not_trusted() {
    let keys = rsa_keys();
    let attacker = rsa_keys();
    let app = app_with_rsa_key(&keys).await;
    let good = claims(ORG, "test");
    let attacker_key = EncodingKey::from_rsa_pem(&attacker.private_pem).expect("an RSA key");
    let jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&attacker_key, Algorithm::RS256)
            .expect("a JWK of the attacker's key"),
    )
    .expect("a JWK serialises");
    let mut jwk_with_kid = jwk.clone();
    jwk_with_kid["kid"] = json!("rsa");
    for (what, header) in [
        (
            "jwk header",
            json!({"alg": "RS256", "kid": "rsa", "jwk": jwk}),
        ),
        (
            "jwk header with the kid",
            json!({"alg": "RS256", "kid": "rsa", "jwk": jwk_with_kid}),
        ),
        ("jwk header, no kid", json!({"alg": "RS256", "jwk": jwk})),
        (
            "jku header",
            json!({"alg": "RS256", "kid": "rsa", "jku": "http://127.0.0.1:1/jwks.json"}),
        ),
        (
            "x5u header",
            json!({"alg": "RS256", "kid": "rsa", "x5u": "http://127.0.0.1:1/cert.pem"}),
        ),
        (
            "kid naming a file",
            json!({"alg": "RS256", "kid": attacker.public_file}),
        ),
        (
            "kid with SQL",
            json!({"alg": "RS256", "kid": "rsa' OR '1'='1"}),
        ),
    ] {
        let token = rs256(&header, &good, &attacker.private_pem);
        assert_token_refused(&app, &token, &format!("signed by the attacker, {what}")).await;
    }
    // HS256 with the kid of a file whose content the attacker knows (an empty one).
    let token = hs256(Some("/dev/null"), &good, b"");
    assert_token_refused(&app, &token, "kid /dev/null, empty secret").await;
    assert_eq!(app.count_customers().await, 0);
}

#[tokio::test]
async fn a_token_not_valid_yet_is_401() {
    let app = spawn_app().await;
    for (what, nbf) in [
        ("nbf in an hour", now() + 3600),
        ("nbf in two minutes (past the 30 s leeway)", now() + 120),
        ("nbf in a year", now() + 365 * 24 * 3600),
    ] {
        let mut c = claims(ORG, "test");
        c["nbf"] = json!(nbf);
        assert_token_refused(&app, &dev(&c), what).await;
    }
    let mut c = claims(ORG, "test");
    c["nbf"] = json!(now().to_string());
    assert_token_refused(&app, &dev(&c), "nbf as a string").await;
    // Controls: a past nbf is fine.
    let mut c = claims(ORG, "test");
    c["nbf"] = json!(now() - 60);
    assert_accepted(&app, &dev(&c), "nbf a minute ago").await;
}

#[tokio::test]
async fn a_wrong_or_missing_issuer_or_audience_is_401_when_configured() {
    const ISS: &str = "https://auth.example.test/";
    const AUD: &str = "customers-api";
    let app = spawn_app_with(|settings| {
        settings.auth.issuer = ISS.into();
        settings.auth.audience = AUD.into();
    })
    .await;
    let with = |iss: Option<Value>, aud: Option<Value>| {
        let mut c = claims(ORG, "test");
        if let Some(iss) = iss {
            c["iss"] = iss;
        }
        if let Some(aud) = aud {
            c["aud"] = aud;
        }
        dev(&c)
    };
    assert_accepted(
        &app,
        &with(Some(json!(ISS)), Some(json!(AUD))),
        "right iss and aud",
    )
    .await;
    // The service's own minting puts the configured iss and aud in.
    let ring = customers_api::auth::KeyRing::from_settings(&app.settings.auth).expect("keys");
    let minted = customers_api::auth::mint_token(
        &ring,
        &customers_api::auth::TokenRequest {
            org: ORG.into(),
            mode: customers_api::auth::Mode::Test,
            scope: ADMIN.into(),
            ttl: std::time::Duration::from_secs(600),
            sub: "tests".into(),
        },
    )
    .expect("a token");
    assert_accepted(&app, &minted, "a token minted with iss and aud").await;

    for (what, iss, aud) in [
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
    ] {
        assert_token_refused(&app, &with(iss, aud), what).await;
    }
    assert_eq!(app.count_customers().await, 2);
}

#[tokio::test]
async fn oversized_tampered_and_garbage_tokens_are_401() {
    let app = spawn_app().await;
    let good = claims(ORG, "test");

    // Size: a validly signed 8 KiB token is refused before parsing; a 3 KiB one is fine.
    let mut big = good.clone();
    big["pad"] = json!("p".repeat(6 * 1024));
    let token = dev(&big);
    assert!(token.len() > 8 * 1024, "{}", token.len());
    assert_token_refused(&app, &token, "a validly signed 8 KiB token").await;
    let mut medium = good.clone();
    medium["pad"] = json!("p".repeat(2 * 1024));
    assert_accepted(&app, &dev(&medium), "a validly signed 3 KiB token").await;
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

    // In-place edits of a valid token.
    let valid = dev(&good);
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
    for (what, token) in [
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
                dev(&claims("org_b", "test"))
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
    ] {
        assert_token_refused(&app, &token, &format!("tampered: {what}")).await;
    }

    // Claims that are wrong though correctly signed.
    for (what, patch) in [
        ("exp as a string", json!({"exp": far_future})),
        ("exp negative", json!({"exp": -1})),
        ("exp a float in the past", json!({"exp": 1.5})),
        ("mode LIVE", json!({"mode": "LIVE"})),
        ("org null", json!({"org": null})),
        ("org a number", json!({"org": 7})),
        ("org with a NUL", json!({"org": "org\u{0}a"})),
        ("org of 256 characters", json!({"org": "o".repeat(256)})),
        ("sub missing", json!({"sub": null})),
    ] {
        let mut c = good.clone();
        for (k, v) in patch.as_object().expect("an object") {
            if v.is_null() {
                c.as_object_mut().expect("claims").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        assert_token_refused(&app, &dev(&c), &format!("claims: {what}")).await;
    }

    // Header JSON that is not a JWS header.
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

    // Garbage and schemes around an otherwise valid token.
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
        assert_refused(
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
    assert_eq!(
        app.count_customers().await,
        1,
        "only the 3 KiB control wrote"
    );
}

// ---------------------------------------------------------------------------------------------
// Tenant isolation, randomized
// ---------------------------------------------------------------------------------------------

/// xorshift64: reproducible without a dependency; the seed is printed and can be given back
/// with ISOLATION_SEED.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn hex(&mut self) -> String {
        format!("{:016x}", self.next())
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

/// Org ids with quotes, backslashes and dollar signs: the tenant travels into SQL, and an org id
/// that is mangled on the way could collide with another.
const ORGS: [&str; 2] = ["org_o'hare--", "org_$$blue\\"];
const MODES: [&str; 2] = ["test", "live"];
const SHARED_EMAIL: &str = "shared.iso@example.com";

#[derive(Clone, Debug)]
struct Model {
    id: String,
    email: Option<String>,
    marker: String,
    note: Option<String>,
    status: &'static str,
    version: i64,
}

/// A write sent with an Idempotency-Key, kept for replays.
#[derive(Clone, Debug)]
struct Keyed {
    key: String,
    method: Method,
    path: String,
    body: Option<Value>,
    status: u16,
    text: String,
}

/// What tenants publish for the others to attack, and every string that belongs to one tenant.
#[derive(Default)]
struct Shared {
    ids: Vec<Vec<String>>,
    keyed: Vec<Vec<Keyed>>,
    cursors: Vec<Vec<String>>,
    secrets: Vec<BTreeSet<String>>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    text: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    /// The error object without its request id, to compare two answers.
    fn error_shape(&self) -> Value {
        let mut error = self.json()["error"].clone();
        error.as_object_mut().map(|o| o.remove("requestId"));
        error
    }
}

struct Worker<'a> {
    app: &'a TestApp,
    me: usize,
    token: String,
    rng: Rng,
    shared: &'a Mutex<Shared>,
    customers: Vec<Model>,
    keyed: Vec<Keyed>,
    used_keys: BTreeSet<String>,
    /// Every answer this tenant got, headers included, for the final cross-tenant check.
    transcript: Vec<(String, String)>,
    ops: BTreeMap<&'static str, usize>,
    requests: usize,
}

const MISSING_ID: &str = "cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E";

impl<'a> Worker<'a> {
    async fn send(
        &mut self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Reply {
        let mut request = self.app.request_as(method.clone(), path, &self.token);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let text = response.text().await.expect("a body");
        assert!(
            status < 500,
            "tenant {}: {what}: {method} {path} → {status}: {text}",
            self.me
        );
        let mut record = format!("{status}\n");
        for (n, v) in &headers {
            record.push_str(&format!("{n}: {v}\n"));
        }
        record.push_str(&text);
        self.transcript
            .push((format!("{what}: {method} {path}"), record));
        self.requests += 1;
        Reply {
            status,
            headers,
            text,
        }
    }

    fn secret(&self, s: &str) {
        self.shared.lock().expect("lock").secrets[self.me].insert(s.to_owned());
    }

    fn count(&mut self, op: &'static str) {
        *self.ops.entry(op).or_default() += 1;
    }

    fn what(&self, op: &str) -> String {
        format!(
            "tenant {} ({}/{}) {op}",
            self.me,
            ORGS[self.me / 2],
            MODES[self.me % 2]
        )
    }

    /// The customer as answered must be the model's, ETag included.
    fn check_customer(&self, reply: &Reply, model: &Model, what: &str) {
        let body = reply.json();
        assert_eq!(body["id"], model.id.as_str(), "{what}");
        assert_eq!(body["status"], model.status, "{what}");
        assert_eq!(body["metadata"]["marker"], model.marker.as_str(), "{what}");
        assert_eq!(
            body["metadata"].get("note").and_then(Value::as_str),
            model.note.as_deref(),
            "{what}"
        );
        assert_eq!(body["email"].as_str(), model.email.as_deref(), "{what}");
        assert_eq!(
            reply.header("etag"),
            Some(format!("\"{}\"", model.version).as_str()),
            "{what}: ETag"
        );
    }

    fn keyed_header(&mut self) -> Option<String> {
        self.rng
            .chance(50)
            .then(|| format!("iso-{}-{}", self.me, self.rng.hex()))
    }

    fn remember(
        &mut self,
        key: Option<String>,
        method: Method,
        path: &str,
        body: Option<Value>,
        reply: &Reply,
    ) {
        if let Some(key) = key {
            self.used_keys.insert(key.clone());
            let keyed = Keyed {
                key,
                method,
                path: path.to_owned(),
                body,
                status: reply.status,
                text: reply.text.clone(),
            };
            self.shared.lock().expect("lock").keyed[self.me].push(keyed.clone());
            self.keyed.push(keyed);
        }
    }

    fn key_headers(key: &Option<String>) -> Vec<(&'static str, String)> {
        key.iter().map(|k| ("idempotency-key", k.clone())).collect()
    }

    async fn create(&mut self, key: Option<String>) {
        let what = self.what("create");
        let n = self.customers.len();
        let marker = format!("mk-t{}-{n}-{}", self.me, self.rng.hex());
        let email = match self.rng.below(10) {
            0 => None,
            1 => Some(SHARED_EMAIL.to_owned()),
            _ => Some(format!(
                "iso-t{}-{n}-{}@example.com",
                self.me,
                self.rng.hex()
            )),
        };
        self.secret(&marker);
        if let Some(email) = email.as_ref().filter(|e| *e != SHARED_EMAIL) {
            self.secret(email);
        }
        let body = json!({
            "email": email,
            "name": {"first": "Iso", "last": format!("T{}", self.me)},
            "metadata": {"marker": marker, "tenant": self.me}
        });
        let reply = self
            .send(
                &what,
                Method::POST,
                "/v1/customers",
                Some(&body),
                &Self::key_headers(&key),
            )
            .await;
        assert_eq!(reply.status, 201, "{what}: {}", reply.text);
        assert!(
            reply.header("idempotent-replayed").is_none(),
            "{what}: a fresh key is not a replay"
        );
        let created = reply.json();
        let id = created["id"].as_str().expect("an id").to_owned();
        self.secret(&id);
        assert_eq!(
            reply.header("location"),
            Some(format!("/v1/customers/{id}").as_str()),
            "{what}"
        );
        let model = Model {
            id: id.clone(),
            email: body["email"].as_str().map(str::to_owned),
            marker: body["metadata"]["marker"]
                .as_str()
                .expect("a marker")
                .to_owned(),
            note: None,
            status: "pending",
            version: 1,
        };
        self.check_customer(&reply, &model, &what);
        self.customers.push(model);
        self.shared.lock().expect("lock").ids[self.me].push(id);
        self.remember(key, Method::POST, "/v1/customers", Some(body), &reply);
    }

    async fn step(&mut self) {
        let roll = self.rng.below(100);
        if self.customers.is_empty() || roll < 18 {
            self.count("create");
            let key = self.keyed_header();
            return self.create(key).await;
        }
        let i = self.rng.below(self.customers.len());
        let model = self.customers[i].clone();
        let path = format!("/v1/customers/{}", model.id);
        match roll {
            18..=29 => {
                self.count("get");
                let what = self.what("get");
                let reply = self.send(&what, Method::GET, &path, None, &[]).await;
                assert_eq!(reply.status, 200, "{what}");
                self.check_customer(&reply, &model, &what);
            }
            30..=44 => {
                self.count("patch");
                let what = self.what("patch");
                let note = format!("nt-t{}-{}", self.me, self.rng.hex());
                self.secret(&note);
                let mut body = json!({"metadata": {"note": note}});
                let mut new_email = None;
                if self.rng.chance(30) {
                    let email = format!("iso-t{}-p-{}@example.com", self.me, self.rng.hex());
                    self.secret(&email);
                    body["email"] = json!(email);
                    new_email = Some(email);
                }
                let key = self.keyed_header();
                let mut headers = Self::key_headers(&key);
                let stale = self.rng.chance(10);
                if stale {
                    headers.push(("if-match", format!("\"{}\"", model.version + 7)));
                } else if self.rng.chance(30) {
                    headers.push(("if-match", format!("\"{}\"", model.version)));
                }
                let reply = self
                    .send(&what, Method::PATCH, &path, Some(&body), &headers)
                    .await;
                if stale {
                    assert_eq!(reply.status, 412, "{what}: {}", reply.text);
                } else if model.status == "deleted" {
                    assert_eq!(reply.status, 409, "{what}: {}", reply.text);
                } else {
                    assert_eq!(reply.status, 200, "{what}: {}", reply.text);
                    let m = &mut self.customers[i];
                    m.note = Some(note);
                    if new_email.is_some() {
                        m.email = new_email;
                    }
                    m.version += 1;
                    let m = m.clone();
                    self.check_customer(&reply, &m, &what);
                }
                self.remember(key, Method::PATCH, &path, Some(body), &reply);
            }
            45..=49 => {
                self.count("delete");
                let what = self.what("delete");
                let key = self.keyed_header();
                let reply = self
                    .send(&what, Method::DELETE, &path, None, &Self::key_headers(&key))
                    .await;
                assert_eq!(reply.status, 200, "{what}: {}", reply.text);
                let m = &mut self.customers[i];
                if m.status != "deleted" {
                    m.status = "deleted";
                    m.version += 1;
                }
                let m = m.clone();
                self.check_customer(&reply, &m, &what);
                self.remember(key, Method::DELETE, &path, None, &reply);
            }
            50..=55 => {
                self.count("activate");
                let what = self.what("activate");
                let key = self.keyed_header();
                let activate = format!("{path}/activate");
                let reply = self
                    .send(
                        &what,
                        Method::POST,
                        &activate,
                        None,
                        &Self::key_headers(&key),
                    )
                    .await;
                if model.status == "deleted" {
                    assert_eq!(reply.status, 409, "{what}: {}", reply.text);
                } else {
                    assert_eq!(reply.status, 200, "{what}: {}", reply.text);
                    let m = &mut self.customers[i];
                    if m.status == "pending" {
                        m.status = "active";
                        m.version += 1;
                    }
                    let m = m.clone();
                    self.check_customer(&reply, &m, &what);
                }
                self.remember(key, Method::POST, &activate, None, &reply);
            }
            56..=63 => {
                self.count("list pages");
                let status = *self
                    .rng
                    .pick(&[None, Some("deleted"), Some("active"), Some("pending")])
                    .expect("a filter");
                self.walk(status).await;
            }
            64..=67 => {
                self.count("list by email");
                let what = self.what("list by email");
                let email = model
                    .email
                    .clone()
                    .unwrap_or_else(|| SHARED_EMAIL.to_owned());
                let query = format!(
                    "/v1/customers?email={}",
                    email.replace('@', "%40").replace('+', "%2B")
                );
                let reply = self.send(&what, Method::GET, &query, None, &[]).await;
                assert_eq!(reply.status, 200, "{what}");
                let mut expected: Vec<String> = self
                    .customers
                    .iter()
                    .filter(|c| {
                        c.status != "deleted"
                            && c.email.as_deref().map(str::to_lowercase)
                                == Some(email.to_lowercase())
                    })
                    .map(|c| c.id.clone())
                    .collect();
                expected.sort_by(|a, b| b.cmp(a));
                expected.truncate(50);
                let got: Vec<String> = reply.json()["data"]
                    .as_array()
                    .expect("data")
                    .iter()
                    .map(|c| c["id"].as_str().expect("an id").to_owned())
                    .collect();
                assert_eq!(got, expected, "{what}");
            }
            68..=74 => {
                self.count("replay");
                let Some(keyed) = self.rng.pick(&self.keyed).cloned() else {
                    return;
                };
                let what = self.what("replay");
                let reply = self
                    .send(
                        &what,
                        keyed.method.clone(),
                        &keyed.path,
                        keyed.body.as_ref(),
                        &[("idempotency-key", keyed.key.clone())],
                    )
                    .await;
                assert_eq!(reply.status, keyed.status, "{what}");
                assert_eq!(
                    reply.text, keyed.text,
                    "{what}: the stored body, byte for byte"
                );
                assert_eq!(reply.header("idempotent-replayed"), Some("true"), "{what}");
            }
            75..=89 => {
                self.count("foreign id");
                self.probe_foreign().await;
            }
            90..=94 => {
                self.count("foreign key");
                self.reuse_foreign_key().await;
            }
            95..=96 => {
                self.count("foreign cursor");
                let other = self.other_tenant();
                let cursor = {
                    let shared = self.shared.lock().expect("lock");
                    self.rng.pick(&shared.cursors[other]).cloned()
                };
                if let Some(cursor) = cursor {
                    let what = self.what("foreign cursor");
                    let reply = self
                        .send(
                            &what,
                            Method::GET,
                            &format!("/v1/customers?limit=2&cursor={cursor}"),
                            None,
                            &[],
                        )
                        .await;
                    assert_eq!(reply.status, 400, "{what}: {}", reply.text);
                    assert_eq!(reply.json()["error"]["code"], "invalid_cursor", "{what}");
                }
            }
            _ => {
                self.count("errors");
                let what = self.what("errors");
                let reply = self
                    .send(
                        &what,
                        Method::GET,
                        &format!("/v1/customers/{MISSING_ID}"),
                        None,
                        &[],
                    )
                    .await;
                assert_eq!(reply.status, 404, "{what}");
                let reply = self
                    .send(
                        &what,
                        Method::PATCH,
                        &path,
                        Some(&json!({"email": "not an email"})),
                        &[],
                    )
                    .await;
                if model.status == "deleted" {
                    assert!(matches!(reply.status, 400 | 409), "{what}: {}", reply.text);
                } else {
                    assert_eq!(reply.status, 400, "{what}: {}", reply.text);
                }
                let reply = self
                    .send(
                        &what,
                        Method::POST,
                        "/v1/customers",
                        Some(&json!({"org": ORGS[1 - self.me / 2]})),
                        &[],
                    )
                    .await;
                assert_eq!(reply.status, 400, "{what}: {}", reply.text);
            }
        }
    }

    fn other_tenant(&mut self) -> usize {
        (self.me + 1 + self.rng.below(3)) % 4
    }

    /// Pages through the list; the ids must be exactly the model's, newest first.
    async fn walk(&mut self, status: Option<&'static str>) {
        let what = self.what(&format!("list status={status:?}"));
        let limit = 1 + self.rng.below(7);
        let mut query = format!("limit={limit}");
        if let Some(s) = status {
            query.push_str(&format!("&status={s}"));
        }
        let mut got = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("/v1/customers?{query}&cursor={c}"),
                None => format!("/v1/customers?{query}"),
            };
            let reply = self.send(&what, Method::GET, &q, None, &[]).await;
            assert_eq!(reply.status, 200, "{what}: {}", reply.text);
            let page = reply.json();
            for c in page["data"].as_array().expect("data") {
                got.push(c["id"].as_str().expect("an id").to_owned());
            }
            match page["nextCursor"].as_str() {
                Some(next) => {
                    self.shared.lock().expect("lock").cursors[self.me].push(next.to_owned());
                    cursor = Some(next.to_owned());
                }
                None => break,
            }
            assert!(
                got.len() <= self.customers.len(),
                "{what}: more customers than were made"
            );
        }
        let mut expected: Vec<String> = self
            .customers
            .iter()
            .filter(|c| match status {
                None => c.status != "deleted",
                Some(s) => c.status == s,
            })
            .map(|c| c.id.clone())
            .collect();
        expected.sort_by(|a, b| b.cmp(a));
        assert_eq!(got, expected, "{what}");
    }

    /// Another tenant's id is a 404 identical to a missing id's, on every route.
    async fn probe_foreign(&mut self) {
        let other = self.other_tenant();
        let id = {
            let shared = self.shared.lock().expect("lock");
            self.rng.pick(&shared.ids[other]).cloned()
        };
        let Some(id) = id else { return };
        let what = self.what(&format!("foreign id of tenant {other}"));
        let body = json!({"metadata": {"note": "stolen"}});
        let (method, suffix, body) = match self.rng.below(4) {
            0 => (Method::GET, "", None),
            1 => (Method::PATCH, "", Some(&body)),
            2 => (Method::DELETE, "", None),
            _ => (Method::POST, "/activate", None),
        };
        let mut headers = Vec::new();
        if self.rng.chance(30) {
            headers.push(("if-match", "*".to_owned()));
        }
        let theirs = self
            .send(
                &what,
                method.clone(),
                &format!("/v1/customers/{id}{suffix}"),
                body,
                &headers,
            )
            .await;
        let missing = self
            .send(
                &what,
                method.clone(),
                &format!("/v1/customers/{MISSING_ID}{suffix}"),
                body,
                &headers,
            )
            .await;
        assert_eq!(theirs.status, 404, "{what}: {method}: {}", theirs.text);
        assert_eq!(
            theirs.error_shape(),
            missing.error_shape(),
            "{what}: {method}"
        );
        assert!(
            theirs.header("etag").is_none() && theirs.header("location").is_none(),
            "{what}"
        );
    }

    /// Keys are per tenant: another tenant's key is free here, never replayed nor refused as
    /// reused.
    async fn reuse_foreign_key(&mut self) {
        let other = self.other_tenant();
        let keyed = {
            let shared = self.shared.lock().expect("lock");
            self.rng.pick(&shared.keyed[other]).cloned()
        };
        // A key this tenant already used is its own now; reusing it again is a replay.
        let Some(keyed) = keyed.filter(|k| !self.used_keys.contains(&k.key)) else {
            return;
        };
        let what = self.what(&format!("key of tenant {other}"));
        if keyed.path == "/v1/customers" {
            // The same key with this tenant's own body: a fresh create.
            return self.create(Some(keyed.key)).await;
        }
        // The very same request: the path names their customer, which does not exist here.
        let reply = self
            .send(
                &what,
                keyed.method.clone(),
                &keyed.path,
                keyed.body.as_ref(),
                &[("idempotency-key", keyed.key.clone())],
            )
            .await;
        assert_eq!(reply.status, 404, "{what}: {}", reply.text);
        assert!(reply.header("idempotent-replayed").is_none(), "{what}");
        assert_ne!(reply.text, keyed.text, "{what}");
        self.remember(
            Some(keyed.key),
            keyed.method,
            &keyed.path,
            keyed.body,
            &reply,
        );
    }
}

/// (id, org, status, version, email, metadata.marker, metadata.note) as stored.
type StoredRow = (
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_others_data_under_a_random_workload() {
    let seed: u64 = std::env::var("ISOLATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1507_a7e5_eed0_0001);
    let steps: usize = std::env::var("ISOLATION_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let app = spawn_app_with(|settings| settings.rate_limit.enabled = false).await;
    let shared = Mutex::new(Shared {
        ids: vec![Vec::new(); 4],
        keyed: vec![Vec::new(); 4],
        cursors: vec![Vec::new(); 4],
        secrets: vec![BTreeSet::new(); 4],
    });
    {
        // The org ids themselves are another org's secret.
        let mut s = shared.lock().expect("lock");
        for t in 0..4 {
            s.secrets[t].insert(ORGS[t / 2].to_owned());
        }
    }
    let mut workers: Vec<Worker> = (0..4)
        .map(|me| Worker {
            app: &app,
            me,
            token: token(ORGS[me / 2], MODES[me % 2], ADMIN),
            rng: Rng::new(seed ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(me as u64 + 1))),
            shared: &shared,
            customers: Vec::new(),
            keyed: Vec::new(),
            used_keys: BTreeSet::new(),
            transcript: Vec::new(),
            ops: BTreeMap::new(),
            requests: 0,
        })
        .collect();
    // The tenants run at once, so their requests interleave on the server.
    futures_util::future::join_all(workers.iter_mut().map(|w| async move {
        for _ in 0..steps {
            w.step().await;
        }
        w.walk(None).await;
        w.walk(Some("deleted")).await;
    }))
    .await;

    // No answer to one tenant holds another's id, email, marker, note or org.
    let secrets = shared.lock().expect("lock").secrets.clone();
    for w in &workers {
        let own = &secrets[w.me];
        let foreign: BTreeSet<&String> = secrets
            .iter()
            .enumerate()
            .filter(|(t, _)| *t != w.me)
            .flat_map(|(_, s)| s.iter())
            .filter(|s| !own.contains(*s))
            .collect();
        for (what, record) in &w.transcript {
            for secret in &foreign {
                assert!(
                    !record.contains(secret.as_str()),
                    "{what}: the answer contains another tenant's {secret}: {record}"
                );
            }
        }
    }

    // The database agrees with every tenant's model: nothing was written across tenants.
    let mut total = 0;
    for w in &workers {
        let rows: Vec<StoredRow> = sqlx::query_as(
            "SELECT id, org_id, status, version, email, metadata->>'marker', metadata->>'note' \
                 FROM customers WHERE org_id = $1 AND mode = $2 ORDER BY id",
        )
        .bind(ORGS[w.me / 2])
        .bind(MODES[w.me % 2])
        .fetch_all(&app.db)
        .await
        .expect("rows");
        let mut expected: Vec<_> = w
            .customers
            .iter()
            .map(|c| {
                (
                    c.id.clone(),
                    ORGS[w.me / 2].to_owned(),
                    c.status.to_owned(),
                    c.version,
                    c.email.clone(),
                    Some(c.marker.clone()),
                    c.note.clone(),
                )
            })
            .collect();
        expected.sort();
        assert_eq!(rows, expected, "tenant {}: stored rows", w.me);
        total += rows.len();
    }
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(all as usize, total, "no customer outside the four tenants");
    let stolen: i64 =
        sqlx::query_scalar("SELECT count(*) FROM customers WHERE metadata->>'note' = 'stolen'")
            .fetch_one(&app.db)
            .await
            .expect("count");
    assert_eq!(stolen, 0, "a foreign PATCH got through");

    let requests: usize = workers.iter().map(|w| w.requests).sum();
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &workers {
        for (op, n) in &w.ops {
            *ops.entry(op).or_default() += n;
        }
    }
    println!(
        "tenant isolation: seed {seed:#x}, 4 tenants x {steps} steps, {requests} requests, \
         {total} customers, {} tenant-owned strings checked against every other tenant's answers; \
         ops {ops:?}",
        secrets.iter().map(BTreeSet::len).sum::<usize>()
    );
}
