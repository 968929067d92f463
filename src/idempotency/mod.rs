//! Idempotency-Key (contract §8): every write route runs through [`execute`], which joins the
//! business write and the stored response in one database transaction when a key is sent.

mod store;
pub mod sweeper;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, ETAG, LOCATION};
use actix_web::http::{Method, StatusCode};
use actix_web::HttpResponse;
use futures_util::future::BoxFuture;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, PgPool};

use crate::auth::Tenant;
use crate::configuration::IdempotencySettings;
use crate::error::ApiError;

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
    if key.is_empty() || key.len() > 255 || !key.iter().all(|b| (0x21..=0x7e).contains(b)) {
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

/// A write route's response, in the form that can be stored and replayed byte for byte.
#[derive(Debug, Clone)]
pub struct WriteResponse {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub location: Option<String>,
    pub etag: Option<String>,
    /// Set by a work whose final statement already stored this response under its
    /// [`PendingKey`]; the executor then does not store it again.
    pub stored: bool,
}

/// The key a write runs under, handed to its work. A work may store its response in its final
/// statement, together with the business write ([`WriteResponse::stored`]); a work run with
/// [`ClaimBy::Work`] also claims the key in its first statement, together with its first read
/// (`claim_*` give what that statement needs). One round trip fewer each.
pub struct PendingKey {
    pub tenant: Tenant,
    pub key: IdempotencyKey,
    pub fingerprint: [u8; 32],
    retention: Duration,
    wait: Duration,
}

impl PendingKey {
    /// Seconds a claimed key is kept.
    pub fn claim_retention_secs(&self) -> f64 {
        self.retention.as_secs_f64()
    }

    /// The `lock_timeout` (ms, as text) for waiting on a duplicate still in flight.
    pub fn claim_wait_ms(&self) -> String {
        self.wait.as_millis().max(1).to_string()
    }
}

/// Who claims the key of a keyed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimBy {
    /// The executor, in a statement of its own before the work runs.
    Executor,
    /// The work, in its first statement (which must then claim the key before anything else the
    /// work does). It answers [`Done::KeyTaken`] when the key was not free.
    Work,
}

/// What a work did.
pub enum Done {
    /// Ran: this is the response.
    Response(WriteResponse),
    /// Claimed the key itself (`ClaimBy::Work`) and found it used or in use; nothing was done.
    KeyTaken,
}

impl From<WriteResponse> for Done {
    fn from(response: WriteResponse) -> Self {
        Done::Response(response)
    }
}

/// Turns a failed claim statement into the API's answer: a duplicate that waited past the bound
/// is 409 `idempotency_request_in_progress` (not the 503 of other lock timeouts).
pub fn claim_error(e: sqlx::Error) -> ApiError {
    if is_lock_timeout(&e) {
        crate::metrics::idempotency_event("in_progress");
        ApiError::IdempotencyInProgress
    } else {
        e.into()
    }
}

impl WriteResponse {
    fn from_error(e: &ApiError) -> Self {
        use actix_web::ResponseError;
        Self {
            status: e.status_code(),
            body: e.body(),
            location: None,
            etag: None,
            stored: false,
        }
    }

    fn into_http(self, replayed: bool) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.content_type("application/json");
        if let Some(location) = self.location {
            response.insert_header((LOCATION, location));
        }
        if let Some(etag) = self.etag {
            response.insert_header((ETAG, etag));
        }
        if replayed {
            response.insert_header((IDEMPOTENT_REPLAYED, HeaderValue::from_static("true")));
        }
        let mut response = response.body(self.body);
        if !self.status.is_success() {
            // Already this API's envelope (a stored business error).
            response
                .extensions_mut()
                .insert(crate::error::RenderedError);
        }
        response
    }
}

/// The body of a write: runs on the connection it is given, inside the key's transaction when
/// there is a key (then it also gets the key, see [`PendingKey`]). Its business errors (404,
/// 409, 412) are stored and replayed like successes.
pub type Work<'a> = Box<
    dyn for<'c> FnOnce(
            &'c mut PgConnection,
            Option<&'c PendingKey>,
        ) -> BoxFuture<'c, Result<Done, ApiError>>
        + Send
        + 'a,
>;

pub struct Executor<'a> {
    pub pool: &'a PgPool,
    pub settings: &'a IdempotencySettings,
}

impl Executor<'_> {
    /// Runs a write exactly once per (tenant, key).
    pub async fn execute(
        &self,
        tenant: &Tenant,
        keyed: Option<(IdempotencyKey, [u8; 32])>,
        claim_by: ClaimBy,
        work: Work<'_>,
    ) -> Result<HttpResponse, ApiError> {
        let Some((key, fingerprint)) = keyed else {
            // No key: each statement of the work is its own atomic write; nothing is stored.
            let mut conn = crate::db::acquire(self.pool).await?;
            return match work(&mut conn, None).await? {
                Done::Response(response) => Ok(response.into_http(false)),
                Done::KeyTaken => Err(ApiError::internal("a write without a key took a key")),
            };
        };

        let pending = PendingKey {
            tenant: tenant.clone(),
            key,
            fingerprint,
            retention: self.settings.retention,
            wait: self.settings.wait,
        };
        let mut conn = crate::db::acquire(self.pool).await?;
        let mut tx = conn.begin().await?;
        if claim_by == ClaimBy::Executor {
            let claim = store::claim(&mut tx, &pending).await.map_err(claim_error)?;
            if let Some(answer) = answer_taken(claim, &pending.fingerprint) {
                return answer;
            }
        }
        let response = match work(&mut tx, Some(&pending)).await {
            Ok(Done::Response(response)) => response,
            Ok(Done::KeyTaken) => {
                // Gone again since the work's claim only if it had just expired: a retry
                // claims it afresh.
                let claim = store::existing(&mut tx, tenant, &pending.key)
                    .await?
                    .unwrap_or(store::Claim::InProgress);
                return answer_taken(claim, &pending.fingerprint)
                    .unwrap_or_else(|| Err(ApiError::internal("a taken key was claimed")));
            }
            Err(e) if e.is_business_outcome() => WriteResponse::from_error(&e),
            // Rejected or failed: nothing is stored, the key stays free (drop = rollback).
            Err(e) => return Err(e),
        };
        if !response.stored {
            store::save(&mut tx, tenant, &pending.key, &response).await?;
        }
        tx.commit().await?;
        Ok(response.into_http(false))
    }
}

/// The answer to a request whose key was not free (`None` when it was claimed): the stored
/// response replayed, 422 for another request under the same key, or 409 while the first
/// request is still running. The transaction is dropped (rolled back) by the caller.
fn answer_taken(
    claim: store::Claim,
    fingerprint: &[u8; 32],
) -> Option<Result<HttpResponse, ApiError>> {
    match claim {
        store::Claim::Claimed => None,
        store::Claim::Existing(stored) if stored.fingerprint != fingerprint => {
            crate::metrics::idempotency_event("mismatch");
            Some(Err(ApiError::IdempotencyKeyReused))
        }
        store::Claim::Existing(stored) => {
            crate::metrics::idempotency_event("replay");
            Some(Ok(stored.response.into_http(true)))
        }
        store::Claim::InProgress => Some(Err(ApiError::IdempotencyInProgress)),
    }
}

fn is_lock_timeout(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "55P03")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract() {
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
