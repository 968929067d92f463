//! Keys from an identity provider (docs/operations.md#keys-from-an-identity-provider):
//! `auth.jwks_url`, or the `jwks_uri` that `auth.oidc_issuer`'s discovery document names, fetched
//! at start-up, every `auth.jwks_refresh`, and at once (at most every 30 s) when a token names a
//! kid not held. A failed fetch keeps the last good keys; it is logged and counted.

use foldhash::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::checks::{Checks, VerifyKey};
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

mod document;
mod rules;

use document::parse_set;
use rules::check_url;
pub use rules::validate_remote_keys;

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
            keys: RwLock::new(Arc::new(KeyMap::default())),
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

    /// One fetch; true when the keys were loaded. `forget_verified` is called when the keys
    /// changed: a token verified with a key that is gone must not be served from memory.
    async fn fetch(&self, checks: &Checks, forget_verified: &impl Fn()) -> bool {
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
                let keys = parse_set(&body, checks)?;
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                *self.body.lock().unwrap_or_else(|e| e.into_inner()) = body;
                forget_verified();
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
pub(super) async fn run(
    remote: &RemoteKeys,
    checks: &Checks,
    forget_verified: impl Fn(),
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let ok = tokio::select! {
            _ = stop.cancelled() => return,
            ok = remote.fetch(checks, &forget_verified) => ok,
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
