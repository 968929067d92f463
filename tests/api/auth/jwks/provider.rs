//! The identity provider of the JWKS tests, on 127.0.0.1, and the fixed test keys it publishes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{claims, forge, ORG, READ};

/// A key pair of `tests/fixtures/keys`: the private PEM signs, the JWK goes into the JWKS.
pub struct TestKey {
    pub kid: &'static str,
    alg: Algorithm,
    signing: EncodingKey,
    /// The public JWK, without `kid` and `alg`.
    pub jwk: Value,
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn key(kid: &'static str, file: &str, alg: Algorithm) -> TestKey {
    let pem = fixture(&format!("{file}.pem"));
    let signing = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_ed_pem(&pem),
    }
    .expect("a test private key");
    let jwk = serde_json::from_slice(&fixture(&format!("{file}.jwk.json"))).expect("a JWK");
    TestKey {
        kid,
        alg,
        signing,
        jwk,
    }
}

pub fn key_a() -> TestKey {
    key("key-a", "ed25519-a", Algorithm::EdDSA)
}

pub fn key_b() -> TestKey {
    key("key-b", "ed25519-b", Algorithm::EdDSA)
}

impl TestKey {
    /// The JWK as a provider publishes it, with `alg` when asked.
    pub fn public(&self, with_alg: bool) -> Value {
        let mut jwk = self.jwk.clone();
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        if with_alg {
            jwk["alg"] = json!(match self.alg {
                Algorithm::RS256 => "RS256",
                Algorithm::ES256 => "ES256",
                _ => "EdDSA",
            });
        }
        jwk
    }

    /// A valid token of this key with these claims; each one differs (a `jti`), so that none
    /// is answered from the service's memory of verified tokens.
    pub fn sign(&self, mut claims: Value) -> String {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        claims["jti"] = json!(SERIAL.fetch_add(1, Ordering::Relaxed));
        let alg = match self.alg {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            _ => "EdDSA",
        };
        forge(
            &json!({"alg": alg, "typ": "JWT", "kid": self.kid}),
            &claims,
            &self.signing,
            self.alg,
        )
    }

    pub fn token(&self) -> String {
        self.sign(claims(ORG, "test", READ))
    }
}

pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.public(true)).collect::<Vec<_>>()})
}

#[derive(Default)]
pub struct ProviderState {
    jwks: Value,
    /// When set, the JWKS route answers this status and body instead.
    failure: Option<(u16, &'static str)>,
    /// The discovery document, served at `/.well-known/openid-configuration`.
    pub discovery: Option<Value>,
    jwks_fetches: usize,
    pub discovery_fetches: usize,
}

/// An identity provider on 127.0.0.1: HTTP/1.1 by hand, one request per connection.
#[derive(Clone)]
pub struct Provider {
    pub port: u16,
    pub state: Arc<Mutex<ProviderState>>,
}

impl Provider {
    pub async fn start(jwks: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        Self::serve(listener, jwks)
    }

    /// A provider on `port`, which was free (see [`free_port`]).
    pub async fn start_on(port: u16, jwks: Value) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("the reserved port is still free");
        Self::serve(listener, jwks)
    }

    fn serve(listener: TcpListener, jwks: Value) -> Self {
        let provider = Self {
            port: listener.local_addr().expect("an address").port(),
            state: Arc::new(Mutex::new(ProviderState {
                jwks,
                ..ProviderState::default()
            })),
        };
        let state = provider.state.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&request).into_owned();
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let (status, body) = {
                        let mut s = state.lock().unwrap();
                        match path.as_str() {
                            "/jwks.json" => {
                                s.jwks_fetches += 1;
                                match s.failure {
                                    Some((status, body)) => (status, body.to_owned()),
                                    None => (200, s.jwks.to_string()),
                                }
                            }
                            "/.well-known/openid-configuration" if s.discovery.is_some() => {
                                s.discovery_fetches += 1;
                                (200, s.discovery.as_ref().unwrap().to_string())
                            }
                            _ => (404, "{}".to_owned()),
                        }
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        provider
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("{}/jwks.json", self.origin())
    }

    pub fn set_jwks(&self, jwks: Value) {
        self.state.lock().unwrap().jwks = jwks;
    }

    pub fn fail_with(&self, failure: Option<(u16, &'static str)>) {
        self.state.lock().unwrap().failure = failure;
    }

    pub fn fetches(&self) -> usize {
        self.state.lock().unwrap().jwks_fetches
    }

    /// Waits until the JWKS has been fetched `n` times in all.
    pub async fn wait_for_fetches(&self, n: usize) {
        for _ in 0..200 {
            if self.fetches() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the JWKS was fetched {} times, not {n}", self.fetches());
    }
}

/// A loopback port nothing listens on (bound once and let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a port")
        .local_addr()
        .expect("an address")
        .port()
}
