//! Verification keys chosen by `kid` (so keys rotate without downtime) and token minting.

use foldhash::HashMap;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use super::checks::{Checks, VerifyKey};
use super::jwks::RemoteKeys;
use super::pem::{decoding_key, encoding_key, parse_alg, read_file};
use super::Claims;
use crate::configuration::{AuthSettings, ConfigError};
use crate::error::ApiError;

/// Longer tokens are refused before any parsing: real ones are a few hundred bytes.
const MAX_TOKEN_BYTES: usize = 4096;

/// How many verified tokens are remembered. A caller sends the same short-lived token with
/// every request, and verifying it (base64, JSON, HMAC or RSA) was a third of a GET's CPU.
const VERIFIED_TOKENS: usize = 10_000;

/// Why a token was not verified: refused, or signed with a kid that a fetch of the identity
/// provider's keys might bring.
pub(super) enum Unverified {
    Refused(ApiError),
    UnknownKid,
}

impl From<ApiError> for Unverified {
    fn from(e: ApiError) -> Self {
        Unverified::Refused(e)
    }
}

pub struct KeyRing {
    /// Keys of the configuration (`auth.keys`, `auth.jwks_file`); they win over fetched keys of
    /// the same kid.
    keys: HashMap<String, VerifyKey>,
    /// Keys fetched from `auth.jwks_url` / `auth.oidc_issuer`.
    remote: Option<RemoteKeys>,
    checks: Checks,
    pub(super) signing: Option<(String, Algorithm, EncodingKey)>,
    /// Put into minted tokens so that they pass this service's own checks.
    pub(super) issuer: Option<String>,
    pub(super) audience: Option<String>,
    /// Tokens whose signature, algorithm, issuer and audience passed, keyed by the whole token
    /// text: the same bytes against the same keys always verify the same way. Only the time
    /// claims can change their verdict, so those are checked again on every use. Failures are
    /// never remembered, so the cache holds only tokens signed by a configured key.
    verified: quick_cache::sync::Cache<String, Arc<Claims>>,
    leeway: u64,
}

impl KeyRing {
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, ConfigError> {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let checks = Checks {
            leeway: settings.leeway.as_secs(),
            // An OIDC issuer is the issuer tokens must carry when none is configured apart.
            issuer: non_empty(&settings.issuer).or_else(|| non_empty(&settings.oidc_issuer)),
            audience: non_empty(&settings.audience),
        };
        let validation_for = |alg: Algorithm| checks.validation(alg);
        let mut keys = HashMap::default();
        let mut signing = None;
        for (i, k) in settings.keys.iter().enumerate() {
            let setting = format!("auth.keys[{i}]");
            let alg = parse_alg(&k.alg)
                .ok_or_else(|| ConfigError::invalid(format!("{setting}.alg"), "unsupported"))?;
            let key = decoding_key(&setting, alg, k)?;
            if k.kid == settings.signing_kid {
                signing = Some((k.kid.clone(), alg, encoding_key(&setting, alg, k)?));
            }
            keys.insert(
                k.kid.clone(),
                VerifyKey {
                    key,
                    validation: validation_for(alg),
                },
            );
        }
        if !settings.jwks_file.is_empty() {
            let text = read_file("auth.jwks_file", &settings.jwks_file)?;
            let set: JwkSet = serde_json::from_slice(&text)
                .map_err(|e| ConfigError::invalid("auth.jwks_file", e.to_string()))?;
            for jwk in set.keys {
                let bad = |why: &str| ConfigError::invalid("auth.jwks_file", why.to_owned());
                let kid = jwk
                    .common
                    .key_id
                    .clone()
                    .ok_or_else(|| bad("a key has no kid"))?;
                let alg = jwk
                    .common
                    .key_algorithm
                    .and_then(|a| parse_alg(&a.to_string()))
                    .ok_or_else(|| bad("a key has no supported alg (RS256, ES256, EdDSA)"))?;
                let key = DecodingKey::from_jwk(&jwk).map_err(|e| bad(&e.to_string()))?;
                if keys.contains_key(&kid) {
                    return Err(bad("a kid is configured twice"));
                }
                keys.insert(
                    kid,
                    VerifyKey {
                        key,
                        validation: validation_for(alg),
                    },
                );
            }
        }
        Ok(Self {
            keys,
            remote: RemoteKeys::from_settings(settings)?,
            issuer: checks.issuer.clone(),
            audience: checks.audience.clone(),
            checks,
            signing,
            verified: quick_cache::sync::Cache::new(VERIFIED_TOKENS),
            leeway: settings.leeway.as_secs(),
        })
    }

    /// Verifies a bearer token and returns its claims; every failure is a 401. A kid not held is
    /// refused at once: [`KeyRing::verify_fetching`] first fetches the provider's keys.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, ApiError> {
        self.try_verify(token).map_err(|e| match e {
            Unverified::Refused(e) => e,
            Unverified::UnknownKid => ApiError::Unauthorized("the token's key is not known"),
        })
    }

    /// [`KeyRing::verify`], but a kid not held first asks for a fetch of the identity provider's
    /// keys (at most one per 30 s) and waits for it.
    pub async fn verify_fetching(&self, token: &str) -> Result<Arc<Claims>, ApiError> {
        if let Some(remote) = &self.remote {
            remote.fetch_for_unknown_kid().await;
        }
        self.verify(token)
    }

    pub(super) fn try_verify(&self, token: &str) -> Result<Arc<Claims>, Unverified> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(ApiError::Unauthorized("the token is too long").into());
        }
        if let Some(claims) = self.verified.get(token) {
            self.check_times(&claims)?;
            return Ok(claims);
        }
        let claims = Arc::new(self.verify_uncached(token)?);
        self.verified.insert(token.to_owned(), Arc::clone(&claims));
        Ok(claims)
    }

    pub(super) fn checks(&self) -> &Checks {
        &self.checks
    }

    pub(super) fn remote(&self) -> Option<&RemoteKeys> {
        self.remote.as_ref()
    }

    /// Called when the fetched keys change.
    pub(super) fn forget_verified(&self) {
        self.verified.clear();
    }

    /// Ready unless keys are to be fetched and none has been yet.
    pub fn is_ready(&self) -> bool {
        self.remote.as_ref().is_none_or(|r| r.is_loaded())
    }

    /// What `/readyz` shows of the keys.
    pub fn status(&self) -> serde_json::Value {
        match &self.remote {
            None => serde_json::json!({"jwks": "off"}),
            Some(remote) => remote.status(),
        }
    }

    /// The Prometheus lines of fetched keys (none when no JWKS is fetched).
    pub fn metric_families(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.remote
            .as_ref()
            .map(|r| r.metric_families())
            .unwrap_or_default()
    }

    /// `exp` and `nbf` of a remembered token, with the same leeway and messages as the full
    /// verification (jsonwebtoken's rules: expired when `exp < now - leeway`, not yet valid when
    /// `nbf > now + leeway`).
    fn check_times(&self, claims: &Claims) -> Result<(), ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        if claims.exp < now.saturating_sub(self.leeway) {
            return Err(ApiError::Unauthorized("the token has expired"));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + self.leeway) {
            return Err(ApiError::Unauthorized("the token is not valid yet"));
        }
        Ok(())
    }

    fn verify_uncached(&self, token: &str) -> Result<Claims, Unverified> {
        // `alg: none` and unknown algorithms fail here: they are not in jsonwebtoken's enum.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::Unauthorized("the token is malformed"))?;
        let fetched = self.remote.as_ref().map(|r| r.keys()).unwrap_or_default();
        let key = match header.kid.as_deref() {
            Some(kid) => match self.keys.get(kid).or_else(|| fetched.get(kid)) {
                Some(key) => key,
                None if self.remote.is_some() => return Err(Unverified::UnknownKid),
                None => return Err(ApiError::Unauthorized("the token's key is not known").into()),
            },
            // Without a kid the token is only usable when there is exactly one key.
            None => match (self.keys.len(), fetched.len()) {
                (1, 0) => self.keys.values().next(),
                (0, 1) => fetched.values().next(),
                _ => None,
            }
            .ok_or(ApiError::Unauthorized("the token's key is not known"))?,
        };
        // The algorithm is the key's, never the token's choice (no algorithm confusion).
        if !key.validation.algorithms.contains(&header.alg) {
            return Err(
                ApiError::Unauthorized("the token's algorithm does not match its key").into(),
            );
        }
        jsonwebtoken::decode::<Claims>(token, &key.key, &key.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                Unverified::Refused(ApiError::Unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet",
                    ErrorKind::InvalidSignature => "the token's signature is not valid",
                    ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
                    ErrorKind::InvalidAudience => "the token's audience is not accepted",
                    ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                    _ => "the token is not valid",
                }))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::auth::{mint_token, Mode, TokenRequest};

    fn ring_and_token() -> (KeyRing, String) {
        let settings = crate::configuration::Settings::load().expect("the default settings load");
        let ring = KeyRing::from_settings(&settings.auth).expect("the development key loads");
        let token = mint_token(
            &ring,
            &TokenRequest {
                org: "org_a".into(),
                mode: Mode::Test,
                scope: "customers:read".into(),
                ttl: Duration::from_secs(600),
                sub: "test".into(),
            },
        )
        .expect("a token");
        (ring, token)
    }

    #[test]
    fn a_remembered_token_is_still_checked_for_expiry() {
        let (ring, token) = ring_and_token();
        let claims = ring.verify(&token).expect("a fresh token verifies");
        assert!(ring.verified.get(token.as_str()).is_some(), "remembered");
        // The same token, remembered with an exp long past (as if time had run on).
        let mut expired = (*claims).clone();
        expired.exp = jsonwebtoken::get_current_timestamp() - 3600;
        ring.verified.insert(token.clone(), Arc::new(expired));
        let err = ring.verify(&token).expect_err("expired on a cache hit");
        assert!(matches!(
            err,
            ApiError::Unauthorized("the token has expired")
        ));
    }

    #[test]
    fn only_the_exact_token_is_served_from_memory() {
        let (ring, token) = ring_and_token();
        ring.verify(&token).expect("verifies");
        // One changed character of the signature: never found in the cache, and refused.
        let mut tampered = token.clone();
        let last = tampered.pop().expect("non-empty");
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(ring.verify(&tampered).is_err());
        assert!(
            ring.verified.get(tampered.as_str()).is_none(),
            "failures are not kept"
        );
    }
}
