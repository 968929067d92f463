//! A JWKS document read into verification keys.

use anyhow::{bail, Context};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::KeyMap;
use crate::auth::checks::{Checks, VerifyKey};

/// The signing keys of a JWKS document. Keys this service cannot use (encryption keys, other
/// algorithms, no `kid`) are skipped, not fatal: providers publish such keys beside the ones
/// that sign. A document with no usable key at all is refused (the last good keys stay).
pub(super) fn parse_set(body: &[u8], checks: &Checks) -> anyhow::Result<KeyMap> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).context("the answer is not a JWKS document")?;
    let mut keys = KeyMap::default();
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
