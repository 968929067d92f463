//! What the webhook routes do, between the handler (the request) and the repo (the SQL). Each
//! write runs on the idempotency handle's connection in a transaction of its own (a savepoint
//! when the handle's keyed transaction is open), so a write is whole or not at all.

use actix_web::http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{Acquire, PgConnection};

use super::input::{self, BodyKind, Members};
use super::model::{self, Webhook, Writable};
use super::repo::{self, deliveries};
use super::secret::SigningSecret;
use super::shared::Webhooks;
use crate::error::{ApiError, FieldError};
use crate::idempotency::Reply;
use crate::tenant::Tenant;

pub const GRACE_DEFAULT_SECS: i64 = 86_400;
pub const GRACE_MAX_SECS: i64 = 604_800;
/// Events read per statement by recover.
const RECOVER_PAGE: i64 = 1_000;

pub fn not_found() -> ApiError {
    ApiError::NotFound("no such webhook")
}

pub fn json_reply<T: Serialize>(status: StatusCode, body: &T, etag: Option<String>) -> Reply {
    Reply {
        status,
        body: serde_json::to_vec(body).expect("an answer always serialises"),
        location: None,
        etag,
    }
}

fn webhook_reply(status: StatusCode, webhook: &Webhook, secret: Option<&SigningSecret>) -> Reply {
    json_reply(status, &webhook.out(secret), Some(webhook.etag()))
}

/// `If-Match`: absent, `*`, or the strong ETags of which one must be the current version.
#[derive(Debug, Clone)]
pub enum IfMatch {
    Absent,
    Any,
    Versions(Vec<i64>),
}

impl IfMatch {
    pub fn from_headers(headers: &actix_web::http::header::HeaderMap) -> Result<Self, ApiError> {
        let mut versions = Vec::new();
        let mut conditional = false;
        for value in headers.get_all(actix_web::http::header::IF_MATCH) {
            let value = value
                .to_str()
                .map_err(|_| ApiError::InvalidRequest("If-Match is not valid".into()))?;
            for tag in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if tag == "*" {
                    return Ok(IfMatch::Any);
                }
                conditional = true;
                let number = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
                if let Some(v) =
                    number.and_then(|n| n.parse::<i64>().ok().filter(|v| v.to_string() == n))
                {
                    versions.push(v);
                }
            }
        }
        Ok(if conditional {
            IfMatch::Versions(versions)
        } else {
            IfMatch::Absent
        })
    }

    fn check(&self, current: i64) -> Result<(), ApiError> {
        match self {
            IfMatch::Versions(versions) if !versions.contains(&current) => {
                Err(ApiError::PreconditionFailed)
            }
            _ => Ok(()),
        }
    }
}

/// `POST /v1/webhooks`: create (201, with the secret), or with `id` update that webhook (200,
/// with the secret only when the body set one).
pub async fn create_or_update(
    conn: &mut PgConnection,
    hooks: &Webhooks,
    tenant: &Tenant,
    body: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let checked = input::members(body, BodyKind::Post, hooks.allowance());
    let id = match body.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => {
            let mut errors = checked.err().unwrap_or_default();
            errors.push(FieldError::new(
                "id",
                "invalid_value",
                "must be a webhook id",
            ));
            return Err(ApiError::Validation(errors));
        }
    };
    let members = checked.map_err(ApiError::Validation)?;
    match id {
        Some(id) => replace(conn, hooks, tenant, &id, members).await,
        None => create(conn, hooks, tenant, members).await,
    }
}

async fn create(
    conn: &mut PgConnection,
    hooks: &Webhooks,
    tenant: &Tenant,
    members: Members,
) -> Result<Reply, ApiError> {
    let Some(url) = members.url.clone() else {
        return Err(ApiError::Validation(vec![FieldError::new(
            "url",
            "missing",
            "url is required to create a webhook",
        )]));
    };
    let empty = Writable {
        url,
        events: Vec::new(),
        enabled: true,
        description: None,
        metadata: Map::new(),
    };
    let writable = empty.apply(&members);
    let secret = members.secret.unwrap_or_else(SigningSecret::generate);
    let id = format!("whk_{}", ulid::Ulid::new());
    let sealed = hooks.secrets.seal(tenant, &id, &secret);
    let webhook = repo::insert(conn, tenant, &id, &writable, &sealed).await?;
    let mut reply = webhook_reply(StatusCode::CREATED, &webhook, Some(&secret));
    reply.location = Some(format!("/v1/webhooks/{id}"));
    Ok(reply)
}

/// POST with `id`: the members given replace the stored ones; the others stay.
async fn replace(
    conn: &mut PgConnection,
    hooks: &Webhooks,
    tenant: &Tenant,
    id: &str,
    members: Members,
) -> Result<Reply, ApiError> {
    let mut tx = conn.begin().await?;
    let webhook = change(&mut tx, tenant, id, &members, &IfMatch::Absent).await?;
    if let Some(secret) = &members.secret {
        let sealed = hooks.secrets.seal(tenant, id, secret);
        repo::rotate_secret(&mut tx, tenant, id, &sealed, 0).await?;
    }
    tx.commit().await?;
    Ok(webhook_reply(
        StatusCode::OK,
        &webhook,
        members.secret.as_ref(),
    ))
}

/// Applies `members` to the webhook (locked), writes it when something changed, and ends the
/// pending deliveries of a webhook it disables.
async fn change(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: &str,
    members: &Members,
    if_match: &IfMatch,
) -> Result<Webhook, ApiError> {
    let current = repo::find(conn, tenant, id, true)
        .await?
        .ok_or_else(not_found)?;
    if_match.check(current.version)?;
    let next = current.writable.apply(members);
    if next == current.writable {
        return Ok(current);
    }
    let written = repo::update(conn, tenant, id, &next, "manual").await?;
    if current.writable.enabled && !next.enabled {
        deliveries::fail_pending(conn, tenant, id).await?;
    }
    Ok(written)
}

/// `PATCH /v1/webhooks/{id}`.
pub async fn update(
    conn: &mut PgConnection,
    hooks: &Webhooks,
    tenant: &Tenant,
    id: &str,
    body: &Map<String, Value>,
    if_match: &IfMatch,
) -> Result<Reply, ApiError> {
    let members =
        input::members(body, BodyKind::Patch, hooks.allowance()).map_err(ApiError::Validation)?;
    let mut tx = conn.begin().await?;
    let webhook = change(&mut tx, tenant, id, &members, if_match).await?;
    tx.commit().await?;
    Ok(webhook_reply(StatusCode::OK, &webhook, None))
}

/// `DELETE /v1/webhooks/{id}`: disables it (`manual`), as Proxy; a disabled one is answered
/// unchanged.
pub async fn disable(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: &str,
    if_match: &IfMatch,
) -> Result<Reply, ApiError> {
    let members = Members {
        enabled: Some(false),
        ..Members::default()
    };
    let mut tx = conn.begin().await?;
    let webhook = change(&mut tx, tenant, id, &members, if_match).await?;
    tx.commit().await?;
    Ok(webhook_reply(StatusCode::OK, &webhook, None))
}

/// `POST /v1/webhooks/{id}/rotate-secret`: `{secret?, gracePeriod?}`.
pub async fn rotate(
    conn: &mut PgConnection,
    hooks: &Webhooks,
    tenant: &Tenant,
    id: &str,
    body: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let mut errors = Vec::new();
    let mut secret = None;
    let mut grace = GRACE_DEFAULT_SECS;
    for (name, value) in body {
        match name.as_str() {
            "secret" => match value.as_str().and_then(SigningSecret::parse) {
                Some(s) => secret = Some(s),
                None => errors.push(FieldError::new(
                    "secret",
                    "invalid_value",
                    "must be whsec_ followed by the base64 of 24 to 64 bytes",
                )),
            },
            "gracePeriod" => match value.as_i64().filter(|g| (0..=GRACE_MAX_SECS).contains(g)) {
                Some(g) => grace = g,
                None => errors.push(FieldError::new(
                    "gracePeriod",
                    "invalid_value",
                    format!("must be an integer number of seconds from 0 to {GRACE_MAX_SECS}"),
                )),
            },
            other => errors.push(FieldError::new(
                other,
                crate::error::PARAMETER_UNKNOWN,
                format!("{other} is not a member of a rotation"),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let secret = secret.unwrap_or_else(SigningSecret::generate);
    let mut tx = conn.begin().await?;
    let webhook = repo::find(&mut tx, tenant, id, true)
        .await?
        .ok_or_else(not_found)?;
    let sealed = hooks.secrets.seal(tenant, id, &secret);
    repo::rotate_secret(&mut tx, tenant, id, &sealed, grace).await?;
    tx.commit().await?;
    Ok(webhook_reply(StatusCode::OK, &webhook, Some(&secret)))
}

/// `GET /v1/webhooks/{id}/secret`.
pub async fn secret(
    conn: &mut PgConnection,
    hooks: &Webhooks,
    tenant: &Tenant,
    id: &str,
) -> Result<model::WebhookSecretOut, ApiError> {
    let sealed = repo::current_secret(conn, tenant, id)
        .await?
        .ok_or_else(not_found)?;
    let secret = hooks.secrets.open(tenant, id, &sealed).ok_or_else(|| {
        ApiError::internal("a webhook secret does not open with webhooks.secrets_key")
    })?;
    Ok(model::WebhookSecretOut {
        secret: secret.expose(),
    })
}

/// `POST /v1/webhooks/{id}/recover`: `{since}`. New deliveries of every kept event of the
/// tenant that occurred at or after `since` and that the webhook's filter takes.
pub async fn recover(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: &str,
    body: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let mut since = None;
    let mut errors = Vec::new();
    for (name, value) in body {
        match name.as_str() {
            "since" => match value
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            {
                Some(at) => since = Some(at.with_timezone(&chrono::Utc)),
                None => errors.push(FieldError::new(
                    "since",
                    "invalid_value",
                    "must be an RFC 3339 instant with an offset",
                )),
            },
            other => errors.push(FieldError::new(
                other,
                crate::error::PARAMETER_UNKNOWN,
                format!("{other} is not a member of a recovery"),
            )),
        }
    }
    if since.is_none() && errors.is_empty() {
        errors.push(FieldError::new("since", "missing", "since is required"));
    }
    let (Some(since), true) = (since, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let mut tx = conn.begin().await?;
    let webhook = repo::find(&mut tx, tenant, id, false)
        .await?
        .ok_or_else(not_found)?;
    let mut made = 0u64;
    let mut after = None;
    loop {
        let page = deliveries::events_since(
            &mut tx,
            tenant,
            since,
            &webhook.writable.events,
            after.take(),
            RECOVER_PAGE,
        )
        .await?;
        let Some(last) = page.last() else { break };
        after = Some((last.occurred_at, last.customer_id.clone(), last.version));
        let new: Vec<_> = page
            .iter()
            .map(|e| (id.to_owned(), e, format!("dlv_{}", ulid::Ulid::new())))
            .collect();
        made += deliveries::insert_many(&mut tx, tenant, &new).await?;
        if (page.len() as i64) < RECOVER_PAGE {
            break;
        }
    }
    tx.commit().await?;
    Ok(json_reply(
        StatusCode::ACCEPTED,
        &model::RecoverOut {
            deliveries: made as i64,
        },
        None,
    ))
}
