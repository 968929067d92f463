//! Keys from an identity provider (docs/operations.md#keys-from-an-identity-provider):
//! `auth.jwks_url`, or the `jwks_uri` that `auth.oidc_issuer`'s discovery document names, fetched
//! at start-up, every `auth.jwks_refresh`, and at once (at most every 30 s) when a token names a
//! kid not held. A failed fetch keeps the last good keys; it is logged and counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::keys::{Checks, KeyRing, VerifyKey};
use crate::configuration::{AuthSettings, ConfigError};

/// At most one fetch for unknown kids in this time: a stream of made-up kids costs the identity
/// provider one request per 30 s, not one per token.
const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(30);
/// A whole fetch (connect, headers, body); a request waiting on an unknown kid waits this long
/// at most.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Real JWKS documents are a few kilobytes.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A failed fetch is retried after 1 s, 2 s, 4 s… up to this (or `auth.jwks_refresh` when
/// shorter), so that a service started while the provider is unreachable becomes ready soon
/// after it is back.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

pub(super) type KeyMap = HashMap<String, VerifyKey>;

/// `http` is accepted only to a loopback address (development and tests); everything else is
/// `https`, so that nobody on the path can hand the service keys of their own.
fn check_url(setting: &str, text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{setting}: not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        _ => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(format!(
            "{setting}: http is accepted only to a loopback address (127.0.0.1, ::1); use https"
        )),
        other => Err(format!("{setting}: the scheme must be https, not {other}")),
    }
}

/// The rules of `auth.jwks_url`, `auth.jwks_refresh` and `auth.oidc_issuer`.
///
/// ```
/// use customers_api::auth::validate_remote_keys;
/// use customers_api::configuration::Settings;
///
/// let mut auth = Settings::load()?.auth;
/// auth.jwks_url = "http://127.0.0.1:8081/jwks.json".into();
/// assert!(validate_remote_keys(&auth).is_ok());
/// // Keys fetched in clear text from another machine could be anybody's.
/// auth.jwks_url = "http://idp.example/jwks.json".into();
/// assert_eq!(validate_remote_keys(&auth).unwrap_err().setting, "auth.jwks_url");
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn validate_remote_keys(auth: &AuthSettings) -> Result<(), ConfigError> {
    if !auth.jwks_url.is_empty() && !auth.oidc_issuer.is_empty() {
        return Err(ConfigError::invalid(
            "auth.jwks_url",
            "set auth.jwks_url or auth.oidc_issuer, not both (the issuer names its own JWKS)",
        ));
    }
    if !auth.jwks_url.is_empty() {
        check_url("auth.jwks_url", &auth.jwks_url)
            .map_err(|e| ConfigError::invalid("auth.jwks_url", e))?;
    }
    if !auth.oidc_issuer.is_empty() {
        check_url("auth.oidc_issuer", &auth.oidc_issuer)
            .map_err(|e| ConfigError::invalid("auth.oidc_issuer", e))?;
        if !auth.issuer.is_empty() && auth.issuer != auth.oidc_issuer {
            return Err(ConfigError::invalid(
                "auth.issuer",
                "must be empty or equal to auth.oidc_issuer (the issuer tokens must carry)",
            ));
        }
    }
    if auth.jwks_refresh < Duration::from_secs(1) {
        return Err(ConfigError::invalid(
            "auth.jwks_refresh",
            "must be at least 1s",
        ));
    }
    Ok(())
}

enum Source {
    Url(Url),
    /// The issuer as configured; `jwks_uri` is found once through its discovery document.
    Issuer {
        issuer: String,
        jwks_uri: Mutex<Option<Url>>,
    },
}

#[derive(Default)]
struct Demand {
    /// Fetches begun so far (the refresher numbers them 1, 2, …).
    started: u64,
    /// The fetch that serves the latest unknown-kid request.
    needed: u64,
    /// When an unknown kid last asked for a fetch.
    last: Option<Instant>,
}

/// The fetched half of a [`KeyRing`]: the keys, the fetch state and what `/readyz` and
/// `/metrics` show.
pub(super) struct RemoteKeys {
    source: Source,
    refresh: Duration,
    client: reqwest::Client,
    keys: RwLock<Arc<KeyMap>>,
    /// The body the keys came from: a fetch of the same bytes changes nothing.
    body: Mutex<Vec<u8>>,
    loaded: AtomicBool,
    last_failed: AtomicBool,
    demand: Mutex<Demand>,
    fetch_now: Notify,
    /// The number of the last fetch finished (well or not).
    finished: watch::Sender<u64>,
    fetches_ok: AtomicU64,
    fetches_failed: AtomicU64,
}

impl RemoteKeys {
    pub(super) fn from_settings(auth: &AuthSettings) -> Result<Option<Self>, ConfigError> {
        validate_remote_keys(auth)?;
        let source = if !auth.jwks_url.is_empty() {
            Source::Url(
                check_url("auth.jwks_url", &auth.jwks_url)
                    .map_err(|e| ConfigError::invalid("auth.jwks_url", e))?,
            )
        } else if !auth.oidc_issuer.is_empty() {
            Source::Issuer {
                issuer: auth.oidc_issuer.clone(),
                jwks_uri: Mutex::new(None),
            }
        } else {
            return Ok(None);
        };
        // Redirects are followed (providers move documents) but each hop obeys the same rule.
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 3 {
                attempt.error("more than 3 redirects")
            } else if let Err(e) = check_url("a redirect", attempt.url().as_str()) {
                attempt.error(e)
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(redirects)
            .user_agent(concat!("customers-api/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ConfigError::invalid("auth.jwks_url", format!("no HTTP client for it: {e}"))
            })?;
        Ok(Some(Self {
            source,
            refresh: auth.jwks_refresh,
            client,
            keys: RwLock::new(Arc::new(KeyMap::new())),
            body: Mutex::new(Vec::new()),
            loaded: AtomicBool::new(false),
            last_failed: AtomicBool::new(false),
            demand: Mutex::new(Demand::default()),
            fetch_now: Notify::new(),
            finished: watch::Sender::new(0),
            fetches_ok: AtomicU64::new(0),
            fetches_failed: AtomicU64::new(0),
        }))
    }

    pub(super) fn keys(&self) -> Arc<KeyMap> {
        Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub(super) fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// What `/readyz` shows of the fetched keys.
    pub(super) fn status(&self) -> serde_json::Value {
        let state = match (self.is_loaded(), self.last_failed.load(Ordering::Relaxed)) {
            (false, _) => "not_loaded",
            // Serving with the last good keys; the log says why the last fetch failed.
            (true, true) => "stale",
            (true, false) => "loaded",
        };
        serde_json::json!({"jwks": state, "count": self.keys().len()})
    }

    /// A token named a kid not held: asks the refresher for a fetch, unless one was asked for
    /// less than 30 s ago and has finished (then the answer stands). Returns the number of the
    /// fetch to wait for.
    fn demand(&self) -> Option<u64> {
        let mut demand = self.demand.lock().unwrap_or_else(|e| e.into_inner());
        if demand.needed > *self.finished.borrow() {
            return Some(demand.needed);
        }
        if demand
            .last
            .is_some_and(|t| t.elapsed() < UNKNOWN_KID_INTERVAL)
        {
            return None;
        }
        demand.last = Some(Instant::now());
        demand.needed = demand.started + 1;
        self.fetch_now.notify_one();
        Some(demand.needed)
    }

    /// Waits (at most a fetch's timeout) for a fetch of the keys after an unknown kid, or returns
    /// at once when the rate limit allows none.
    pub(super) async fn fetch_for_unknown_kid(&self) {
        let Some(needed) = self.demand() else {
            return;
        };
        let mut finished = self.finished.subscribe();
        let _ = tokio::time::timeout(
            FETCH_TIMEOUT + Duration::from_secs(1),
            finished.wait_for(|done| *done >= needed),
        )
        .await;
    }

    /// The Prometheus lines of this service's fetches (per service, not per process: tests run
    /// several services in one process).
    pub(super) fn metric_families(&self) -> Vec<prometheus::proto::MetricFamily> {
        let registry = prometheus::Registry::new();
        let fetches = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "auth_jwks_fetches_total",
                "Fetches of the identity provider's JWKS by outcome (ok, failed); a failure keeps the last good keys",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        fetches
            .with_label_values(&["ok"])
            .inc_by(self.fetches_ok.load(Ordering::Relaxed));
        fetches
            .with_label_values(&["failed"])
            .inc_by(self.fetches_failed.load(Ordering::Relaxed));
        let held = prometheus::IntGauge::new(
            "auth_jwks_keys",
            "Verification keys held from the identity provider's JWKS",
        )
        .expect("valid metric");
        held.set(i64::try_from(self.keys().len()).unwrap_or(i64::MAX));
        let _ = registry.register(Box::new(fetches));
        let _ = registry.register(Box::new(held));
        registry.gather()
    }

    async fn get(&self, url: &Url) -> anyhow::Result<Vec<u8>> {
        let mut response = self
            .client
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("{url} answered {}", response.status());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY_BYTES {
                bail!("{url} answered more than {MAX_BODY_BYTES} bytes");
            }
        }
        Ok(body)
    }

    /// The JWKS URL: configured, or found (once) in the issuer's discovery document, whose
    /// `issuer` must be the configured one exactly (OpenID Connect Discovery §4.3).
    async fn jwks_url(&self) -> anyhow::Result<Url> {
        let (issuer, cached) = match &self.source {
            Source::Url(url) => return Ok(url.clone()),
            Source::Issuer { issuer, jwks_uri } => (issuer, jwks_uri),
        };
        if let Some(url) = cached.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(url);
        }
        let discovery = Url::parse(&format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ))?;
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let doc: Discovery = serde_json::from_slice(&self.get(&discovery).await?)
            .with_context(|| format!("{discovery} is not a discovery document"))?;
        if doc.issuer != *issuer {
            bail!("{discovery} names another issuer ({:?})", doc.issuer);
        }
        let url = check_url("jwks_uri", &doc.jwks_uri).map_err(anyhow::Error::msg)?;
        *cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(url.clone());
        Ok(url)
    }

    /// One fetch; true when the keys were loaded.
    async fn fetch(&self, ring: &KeyRing) -> bool {
        let number = {
            let mut demand = self.demand.lock().unwrap_or_else(|e| e.into_inner());
            demand.started += 1;
            demand.started
        };
        let outcome = async {
            let url = self.jwks_url().await?;
            let body = self.get(&url).await?;
            let unchanged =
                self.is_loaded() && *self.body.lock().unwrap_or_else(|e| e.into_inner()) == body;
            if !unchanged {
                let keys = parse_set(&body, ring.checks())?;
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                *self.body.lock().unwrap_or_else(|e| e.into_inner()) = body;
                // A token verified with a key that is gone must not be served from memory.
                ring.forget_verified();
            }
            anyhow::Ok(unchanged)
        }
        .await;
        let ok = match outcome {
            Ok(unchanged) => {
                if !unchanged {
                    tracing::info!(keys = self.keys().len(), "JWKS loaded");
                }
                self.fetches_ok.fetch_add(1, Ordering::Relaxed);
                self.last_failed.store(false, Ordering::Relaxed);
                self.loaded.store(true, Ordering::Release);
                true
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "JWKS fetch failed; the last good keys stay");
                self.fetches_failed.fetch_add(1, Ordering::Relaxed);
                self.last_failed.store(true, Ordering::Relaxed);
                false
            }
        };
        self.finished.send_replace(number);
        ok
    }
}

/// Keeps the fetched keys fresh until `stop`: a fetch now, then every `auth.jwks_refresh`, sooner
/// after a failure, and at once when an unknown kid asks for one.
pub(super) async fn run(ring: &KeyRing, stop: CancellationToken) {
    let Some(remote) = ring.remote() else {
        return;
    };
    let mut failures = 0u32;
    loop {
        let ok = tokio::select! {
            _ = stop.cancelled() => return,
            ok = remote.fetch(ring) => ok,
        };
        let wait = if ok {
            failures = 0;
            remote.refresh
        } else {
            failures = failures.saturating_add(1);
            let backoff = Duration::from_secs(1 << failures.min(6).saturating_sub(1));
            backoff.min(MAX_RETRY_WAIT).min(remote.refresh)
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = remote.fetch_now.notified() => {}
        }
    }
}

/// The signing keys of a JWKS document. Keys this service cannot use (encryption keys, other
/// algorithms, no `kid`) are skipped, not fatal: providers publish such keys beside the ones
/// that sign. A document with no usable key at all is refused (the last good keys stay).
fn parse_set(body: &[u8], checks: &Checks) -> anyhow::Result<KeyMap> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).context("the answer is not a JWKS document")?;
    let mut keys = KeyMap::new();
    let mut skipped = 0usize;
    for value in document.keys {
        match serde_json::from_value::<Jwk>(value)
            .ok()
            .and_then(|jwk| usable(&jwk))
        {
            Some((kid, alg, key)) if !keys.contains_key(&kid) => {
                let validation = checks.validation(alg);
                keys.insert(kid, VerifyKey { key, validation });
            }
            _ => skipped += 1,
        }
    }
    if keys.is_empty() {
        bail!("the JWKS holds no usable signing key ({skipped} skipped)");
    }
    if skipped > 0 {
        tracing::info!(
            skipped,
            "JWKS keys skipped (no kid, not for signing, or another algorithm)"
        );
    }
    Ok(keys)
}

/// A JWK's kid, algorithm and key, when it is a signing key of RS256, ES256 or EdDSA. Without
/// `alg`, the key type's algorithm: RSA → RS256, EC P-256 → ES256, OKP Ed25519 → EdDSA.
fn usable(jwk: &Jwk) -> Option<(String, Algorithm, DecodingKey)> {
    let kid = jwk.common.key_id.clone()?;
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        // Shared secrets (oct) have no place in a published document, and other curves are not
        // among the algorithms this service accepts.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => by_type,
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
        Some(_) => return None,
    };
    if alg != by_type {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, alg, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_accepted_only_to_a_loopback_address() {
        for ok in [
            "https://idp.example/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks.json",
            "http://127.1.2.3/jwks",
            "http://[::1]:9000/jwks",
        ] {
            assert!(check_url("auth.jwks_url", ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://idp.example/jwks.json",
            "http://localhost/jwks.json",
            "http://10.0.0.1/jwks.json",
            "ftp://127.0.0.1/jwks.json",
            "/jwks.json",
        ] {
            assert!(check_url("auth.jwks_url", refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn settings_are_refused_by_name() {
        let mut auth = crate::configuration::Settings::load()
            .expect("the default settings load")
            .auth;
        auth.jwks_refresh = Duration::from_millis(500);
        assert_eq!(
            validate_remote_keys(&auth).unwrap_err().setting,
            "auth.jwks_refresh"
        );
        auth.jwks_refresh = Duration::from_secs(1);
        auth.jwks_url = "https://idp.example/jwks.json".into();
        auth.oidc_issuer = "https://idp.example/".into();
        assert_eq!(
            validate_remote_keys(&auth).unwrap_err().setting,
            "auth.jwks_url"
        );
        auth.jwks_url.clear();
        auth.issuer = "https://other.example/".into();
        assert_eq!(
            validate_remote_keys(&auth).unwrap_err().setting,
            "auth.issuer"
        );
        auth.issuer.clear();
        assert!(validate_remote_keys(&auth).is_ok());
    }
}
