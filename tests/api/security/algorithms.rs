//! Keys and algorithms: algorithm confusion (HS256 signed with the RSA public key, in several
//! encodings), an RS256 token presented for the HS256 key, a kid-less token when several keys
//! exist, other RSA-family algorithms, and an attacker's key embedded in the header (jwk, jku,
//! x5u, a kid naming a file).

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use crate::support::*;

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
    let key = rs256_key_settings("rsa", &keys.public_file);
    spawn_app_with(move |settings| settings.auth.keys.push(key)).await
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
    let good = claims(ORG, "test", ADMIN);

    // Controls: the RSA key works, and so does the HMAC key next to it.
    let valid = rs256(
        &json!({"alg": "RS256", "typ": "JWT", "kid": "rsa"}),
        &good,
        &keys.private_pem,
    );
    assert_token_accepted(&app, &valid, "a valid RS256 token").await;
    assert_token_accepted(&app, &dev_token(&good), "a valid HS256 token").await;

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
    let good = claims(ORG, "test", ADMIN);
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
