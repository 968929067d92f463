//! Idempotency keys: a write sent with `Idempotency-Key` runs once per (tenant, key); a retry
//! gets the first answer again. The rules are in docs/api-rules.md#idempotency.
//!
//! A write route drives a [`Write`], a handle on the connection (and, with a key, the
//! transaction) its statements run on:
//!
//! ```text
//! match Write::begin(pool, settings, tenant, keyed).await? {
//!     Begun::Replay(response) => response,                 // the key was used: its answer
//!     Begun::Fresh(mut write, ()) => {
//!         let outcome = service::create(&mut write, ...).await;   // the business write
//!         write.finish(outcome).await                       // stores the reply, commits
//!     }
//! }
//! ```
//!
//! With a key, `begin` opens a transaction and claims the key in it; the business write and the
//! stored reply then commit together in [`Write::finish`]. A duplicate still running is waited
//! for (bounded), because its claim row is uncommitted; several instances on one database behave
//! the same. Without a key every statement is its own transaction and nothing is stored.

mod binds;
mod reply;
mod sql;
mod store;
pub mod sweeper;
mod write;

use actix_web::http::header::{HeaderMap, HeaderName};
use actix_web::http::Method;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

pub use binds::{Claim, SaveReply, Saver};
pub use reply::Reply;
pub(crate) use sql::{query_claiming, query_saving};
pub use write::{Begun, ReadWithClaim, Write};

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A validated key: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A write's key and what identifies "the same request" under it.
#[derive(Debug, Clone)]
pub struct KeyedRequest {
    pub key: IdempotencyKey,
    pub fingerprint: [u8; 32],
}

impl KeyedRequest {
    /// The request's key, if it sent one, with the fingerprint of `method path body`. Only a
    /// keyed request pays for hashing its body.
    pub fn from_headers(
        headers: &HeaderMap,
        method: &Method,
        path: &str,
        body: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<Option<Self>, ApiError> {
        Ok(key_from_headers(headers)?.map(|key| KeyedRequest {
            key,
            fingerprint: fingerprint(method, path, body),
        }))
    }
}

/// Reads the `Idempotency-Key` header: absent → `None`; present but unusable → 400.
pub fn key_from_headers(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::IdempotencyKeyInvalid(
            "Idempotency-Key must be sent once",
        ));
    }
    parse_key(value.as_bytes()).map(Some)
}

fn parse_key(raw: &[u8]) -> Result<IdempotencyKey, ApiError> {
    let invalid = ApiError::IdempotencyKeyInvalid(
        "Idempotency-Key must be 1 to 255 visible ASCII characters",
    );
    // RFC 8941 sf-string: "abc" is the key abc; \" and \\ are the only escapes.
    let key: Vec<u8> = match raw {
        [b'"', inner @ .., b'"'] => {
            let mut out = Vec::with_capacity(inner.len());
            let mut bytes = inner.iter();
            while let Some(&b) = bytes.next() {
                match b {
                    b'\\' => match bytes.next() {
                        Some(&e @ (b'"' | b'\\')) => out.push(e),
                        _ => return Err(invalid),
                    },
                    b'"' => return Err(invalid),
                    b => out.push(b),
                }
            }
            out
        }
        _ => raw.to_vec(),
    };
    if !crate::tenant::is_visible_ascii_token(&key) {
        return Err(invalid);
    }
    // Only visible ASCII bytes remain, so this cannot fail.
    String::from_utf8(key)
        .map(IdempotencyKey)
        .map_err(|_| ApiError::IdempotencyKeyInvalid("Idempotency-Key must be ASCII"))
}

/// What identifies "the same request": method, path and the parsed body in canonical form
/// (serde_json's default map is ordered by key, and serialising drops all spacing).
pub fn fingerprint(
    method: &Method,
    path: &str,
    body: Option<&serde_json::Map<String, serde_json::Value>>,
) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(method.as_str().as_bytes());
    hash.update(b" ");
    hash.update(path.as_bytes());
    hash.update(b"\n");
    if let Some(body) = body {
        hash.update(serde_json::to_vec(body).unwrap_or_default());
    }
    hash.finalize().into()
}

fn is_lock_timeout(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "55P03")
}

/// A claim statement that failed: a duplicate that waited past the bound is 409
/// `idempotency_request_in_progress` (not the 503 of other lock timeouts).
#[track_caller]
fn claim_error(e: sqlx::Error) -> ApiError {
    if is_lock_timeout(&e) {
        crate::metrics::idempotency_event("in_progress");
        ApiError::IdempotencyInProgress
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_rules() {
        assert_eq!(parse_key(b"abc").unwrap().as_str(), "abc");
        assert_eq!(parse_key(b"\"abc\"").unwrap().as_str(), "abc");
        assert_eq!(parse_key(br#""a\"b""#).unwrap().as_str(), "a\"b");
        assert!(parse_key(b"").is_err());
        assert!(parse_key(b"\"\"").is_err());
        assert!(parse_key(b"a b").is_err());
        assert!(parse_key(&[b'k'; 256]).is_err());
        assert!(parse_key(&[b'k'; 255]).is_ok());
        assert!(parse_key("ключ".as_bytes()).is_err());
    }

    #[test]
    fn fingerprint_ignores_key_order_and_spacing() {
        type Map = serde_json::Map<String, serde_json::Value>;
        let a: Map = serde_json::from_str(r#"{"a":1,"b":{"c":2}}"#).unwrap();
        let b: Map = serde_json::from_str(r#"{ "b" : {"c":2}, "a" : 1 }"#).unwrap();
        let c: Map = serde_json::from_str(r#"{"a":2,"b":{"c":2}}"#).unwrap();
        let path = "/v1/customers";
        assert_eq!(
            fingerprint(&Method::POST, path, Some(&a)),
            fingerprint(&Method::POST, path, Some(&b))
        );
        assert_ne!(
            fingerprint(&Method::POST, path, Some(&a)),
            fingerprint(&Method::POST, path, Some(&c))
        );
        assert_ne!(
            fingerprint(&Method::POST, path, Some(&a)),
            fingerprint(&Method::PATCH, path, Some(&a))
        );
    }
}
