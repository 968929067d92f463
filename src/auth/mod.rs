//! Authentication and tenancy (docs/api-rules.md#authentication): bearer JWTs verified with
//! `jsonwebtoken`, keys chosen by `kid`, tenant = (org, mode), scopes with implication.

mod checks;
mod jwks;
mod keys;
mod mint;
mod pem;

use std::future::{ready, Ready};

use futures_util::future::{Either, LocalBoxFuture};
use tokio_util::sync::CancellationToken;

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use serde::{Deserialize, Serialize};

pub use jwks::validate_remote_keys;
pub use keys::KeyRing;
pub use mint::{mint_token, TokenRequest};

use crate::error::ApiError;
use crate::rate_limit::RateLimits;
pub use crate::tenant::{Mode, Tenant};

/// What stands between a request and the handlers: token verification, then the tenant's rate
/// limit.
pub struct Gatekeeper {
    pub keys: KeyRing,
    pub limits: Option<RateLimits>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
    /// Managing webhooks: separate from the customer scopes, implied by none of them.
    WebhooksManage,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "customers:read",
            Scope::Write => "customers:write",
            Scope::Admin => "customers:admin",
            Scope::WebhooksManage => "webhooks:manage",
        }
    }

    /// Whether a token granted `self` may do what needs `needed`: the customer scopes imply
    /// the ones below them; `webhooks:manage` stands alone.
    fn implies(self, needed: Scope) -> bool {
        match (self, needed) {
            (Scope::WebhooksManage, needed) => needed == Scope::WebhooksManage,
            (_, Scope::WebhooksManage) => false,
            (granted, needed) => granted >= needed,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "customers:read" => Some(Scope::Read),
            "customers:write" => Some(Scope::Write),
            "customers:admin" => Some(Scope::Admin),
            "webhooks:manage" => Some(Scope::WebhooksManage),
            _ => None,
        }
    }
}

/// The claims this service reads. Unknown claims are ignored, as JWT consumers must.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The caller; optional (an event records `actor.sub: null` for a token without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub org: String,
    pub mode: Mode,
    #[serde(default)]
    pub scope: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Tenant,
    /// The token's `sub`.
    pub sub: Option<String>,
    /// The scopes granted (a set: each scope once).
    granted: Vec<Scope>,
}

impl Caller {
    pub fn require(&self, needed: Scope) -> Result<&Tenant, ApiError> {
        if self.granted.iter().any(|granted| granted.implies(needed)) {
            Ok(&self.tenant)
        } else {
            Err(ApiError::InsufficientScope(needed.as_str()))
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future =
        Either<Ready<Result<Self, ApiError>>, LocalBoxFuture<'static, Result<Self, ApiError>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verified = bearer_token(req).and_then(|(gate, token)| {
            match gate.keys.try_verify(token) {
                Ok(claims) => Ok(Ok(claims)),
                Err(keys::Unverified::Refused(e)) => Err(e),
                // The identity provider may have rotated: fetch its keys, then verify again.
                Err(keys::Unverified::UnknownKid) => Ok(Err((gate, token.to_owned()))),
            }
        });
        match verified {
            Err(e) => Either::Left(ready(Err(e))),
            Ok(Ok(claims)) => Either::Left(ready(caller(req, &claims))),
            Ok(Err((gate, token))) => {
                let req = req.clone();
                Either::Right(Box::pin(async move {
                    let claims = gate.keys.verify_fetching(&token).await?;
                    caller(&req, &claims)
                }))
            }
        }
    }
}

/// The gatekeeper and the request's bearer token.
fn bearer_token(req: &HttpRequest) -> Result<(web::Data<Gatekeeper>, &str), ApiError> {
    let gate = req
        .app_data::<web::Data<Gatekeeper>>()
        .ok_or_else(|| ApiError::internal("gatekeeper missing from app data"))?
        .clone();
    let mut values = req.headers().get_all(AUTHORIZATION);
    let header = values
        .next()
        .ok_or(ApiError::Unauthorized("missing bearer token"))?;
    if values.next().is_some() {
        return Err(ApiError::Unauthorized("more than one Authorization header"));
    }
    // As `to_str` decides (visible ASCII; the parser let no other control byte through), but
    // a word at a time rather than byte by byte: a token is several hundred bytes.
    let token = std::str::from_utf8(header.as_bytes())
        .ok()
        .filter(|v| v.is_ascii())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ))?;
    Ok((gate, token))
}

/// The caller of verified claims, after the tenant's rate limit.
fn caller(req: &HttpRequest, claims: &Claims) -> Result<Caller, ApiError> {
    let gate = req
        .app_data::<web::Data<Gatekeeper>>()
        .ok_or_else(|| ApiError::internal("gatekeeper missing from app data"))?;
    let mut granted: Vec<Scope> = claims
        .scope
        .split_ascii_whitespace()
        .filter_map(Scope::parse)
        .collect();
    granted.sort_unstable();
    granted.dedup();
    // Visible ASCII only: the org id ends up in subjects, log fields and row-level-security
    // bindings, and nothing else is a plausible org id.
    if !crate::tenant::is_visible_ascii_token(claims.org.as_bytes()) {
        return Err(ApiError::Unauthorized("the token's org claim is not valid"));
    }
    let tenant = Tenant {
        org: claims.org.clone(),
        mode: claims.mode,
    };
    req.extensions_mut().insert(tenant.clone());
    // The request's share of the pool is bounded per tenant (crate::tenant_limit).
    crate::db::deadline::serving(&tenant);
    if let Some(limits) = &gate.limits {
        // The allowance is put on the request for the middleware to write the headers.
        let allowance = limits.check(&tenant);
        let (Ok(a) | Err((a, _))) = &allowance;
        req.extensions_mut().insert(*a);
        allowance.map_err(|(_, e)| e)?;
    }
    Ok(Caller {
        tenant,
        granted,
        sub: claims.sub.clone(),
    })
}

/// Keeps the keys fetched from an identity provider fresh until `stop` (returns at once when
/// none are configured).
pub async fn keep_keys_fresh(gate: web::Data<Gatekeeper>, stop: CancellationToken) {
    let keys = &gate.keys;
    if let Some(remote) = keys.remote() {
        jwks::run(remote, keys.checks(), || keys.forget_verified(), stop).await;
    }
}
