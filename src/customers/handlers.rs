//! The customer routes (contract §1). Each write builds its work and hands it to the
//! idempotency executor, which runs it once per key inside one transaction.

use actix_web::http::header::{HeaderMap, ETAG, IF_MATCH};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{Connection, PgConnection};

use super::cursor;
use super::input::BodyKind;
use super::model::{CustomerIn, CustomerList, CustomerOut, CustomerPatch, CustomerRow};
use super::patch::{self, Outcome};
use super::repo::{self, ListFilter};
use super::validation::CustomerFields;
use crate::auth::{Caller, Scope, Tenant};
use crate::error::ApiError;
use crate::idempotency::{self, ClaimBy, Done, WriteResponse};
use crate::json_body::JsonObject;
use crate::openapi::ErrorEnvelope;
use crate::startup::AppState;

/// Optimistic attempts before a PATCH falls back to locking the row.
const OPTIMISTIC_ATTEMPTS: usize = 3;

/// The service's clock, at the millisecond precision the API shows, so stored and shown times
/// are the same value.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// Ids that cannot exist are answered without a query: `cus_` + 26 Crockford base32 characters.
fn plausible_id(id: &str) -> bool {
    id.strip_prefix("cus_").is_some_and(|ulid| {
        ulid.len() == 26
            && ulid
                .bytes()
                .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b)))
    })
}

fn ok(row: &CustomerRow, status: actix_web::http::StatusCode) -> WriteResponse {
    WriteResponse {
        status,
        body: row.to_json(),
        location: None,
        etag: Some(row.etag()),
        stored: false,
    }
}

/// `If-Match` (§4.4): `*` matches any existing customer; otherwise one of the listed strong
/// ETags must be the current one.
#[derive(Debug, Clone)]
enum IfMatch {
    Absent,
    Any,
    Tags(Vec<String>),
}

impl IfMatch {
    fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let mut tags = Vec::new();
        for value in headers.get_all(IF_MATCH) {
            let value = value
                .to_str()
                .map_err(|_| ApiError::InvalidRequest("If-Match is not valid".into()))?;
            for tag in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if tag == "*" {
                    return Ok(IfMatch::Any);
                }
                tags.push(tag.to_owned());
            }
        }
        Ok(if tags.is_empty() {
            IfMatch::Absent
        } else {
            IfMatch::Tags(tags)
        })
    }

    fn check(&self, row: &CustomerRow) -> Result<(), ApiError> {
        match self {
            IfMatch::Absent | IfMatch::Any => Ok(()),
            // Weak tags (W/"…") never match: If-Match uses the strong comparison.
            IfMatch::Tags(tags) if tags.iter().any(|t| *t == row.etag()) => Ok(()),
            IfMatch::Tags(_) => Err(ApiError::PreconditionFailed),
        }
    }

    /// The version a one-statement write may assume, when the header names exactly one.
    fn single_version(&self) -> Option<i64> {
        match self {
            IfMatch::Tags(tags) if tags.len() == 1 => tags[0]
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .and_then(|v| v.parse().ok()),
            _ => None,
        }
    }
}

#[utoipa::path(
    post, path = "/v1/customers", tag = "Customers", operation_id = "createCustomer",
    summary = "Create a customer",
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; makes retries of this write safe (kept 24 h)")),
    request_body(content = CustomerIn, content_type = "application/json"),
    responses(
        (status = 201, description = "Customer created", body = CustomerOut, headers(("Location" = String, description = "/v1/customers/{id}"), 
            ("ETag" = String, description = "Strong ETag of the customer's version"),
            ("X-Request-Id" = String, description = "The request's id"),
            ("Idempotent-Replayed" = String, description = "true when this is a stored response replayed for a repeated Idempotency-Key"),
            ("RateLimit-Limit" = i64, description = "The tenant's bucket size"),
            ("RateLimit-Remaining" = i64, description = "Requests left in the bucket"),
            ("RateLimit-Reset" = i64, description = "Seconds until the bucket is full again")
        )),
        (status = 400, description = "invalid_json, invalid_request, parameter_invalid, parameter_unknown, parameter_not_updatable, invalid_cursor or idempotency_key_invalid", body = ErrorEnvelope),
        (status = 401, description = "unauthorized: missing, malformed, badly signed or expired token (WWW-Authenticate: Bearer)", body = ErrorEnvelope),
        (status = 403, description = "insufficient_scope", body = ErrorEnvelope),
        (status = 409, description = "customer_deleted, or idempotency_request_in_progress (Retry-After: 1)", body = ErrorEnvelope),
        (status = 413, description = "payload_too_large: body over 64 KiB", body = ErrorEnvelope),
        (status = 415, description = "unsupported_media_type", body = ErrorEnvelope),
        (status = 422, description = "idempotency_key_reused: the key was used with a different request", body = ErrorEnvelope),
        (status = 429, description = "rate_limited (Retry-After)", body = ErrorEnvelope),
        (status = 500, description = "internal_error", body = ErrorEnvelope),
        (status = 503, description = "service_unavailable: the database cannot be reached (Retry-After)", body = ErrorEnvelope)
    )
)]
pub async fn create(
    req: HttpRequest,
    caller: Caller,
    body: JsonObject,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::Write)?.clone();
    let key = idempotency::key_from_headers(req.headers())?;
    let body = canonical_body(body);
    // Only a keyed request needs its fingerprint.
    let keyed = key.map(|key| {
        let fingerprint = idempotency::fingerprint(&Method::POST, req.path(), Some(&body));
        (key, fingerprint)
    });
    let work_tenant = tenant.clone();
    let work: idempotency::Work = Box::new(move |conn: &mut PgConnection, _| {
        Box::pin(async move {
            let empty = Value::Object(Map::from_iter([(
                "metadata".to_owned(),
                Value::Object(Map::new()),
            )]));
            // A bad `type` is reported together with everything else that is wrong.
            let (kind, values) = match (
                customer_type(&body),
                patch::apply(&empty, &body, BodyKind::Create),
            ) {
                (Ok(kind), Ok(Outcome::Changed(values))) => (kind, values),
                // A create with nothing set still makes a customer.
                (Ok(kind), Ok(Outcome::Unchanged)) => (kind, CustomerFields::default().into()),
                (Err(type_error), Err(ApiError::Validation(mut errors))) => {
                    errors.push(type_error);
                    errors.sort_by(|a, b| a.param.cmp(&b.param));
                    return Err(ApiError::Validation(errors));
                }
                (Err(type_error), _) => return Err(ApiError::Validation(vec![type_error])),
                (Ok(_), Err(e)) => return Err(e),
            };
            let id = ulid::Ulid::new();
            let created_at =
                DateTime::from_timestamp_millis(id.timestamp_ms() as i64).unwrap_or_else(now);
            let id = format!("cus_{id}");
            let row = repo::insert(conn, &work_tenant, &id, kind, &values, created_at).await?;
            let mut response = ok(&row, actix_web::http::StatusCode::CREATED);
            response.location = Some(format!("/v1/customers/{}", row.id));
            Ok(response.into())
        })
    });
    state
        .executor()
        .execute(&tenant, keyed, ClaimBy::Executor, work)
        .await
}

/// The body with its integer fields in their one spelling (`8e4` → `80000`), so that the merge,
/// validation and the idempotency fingerprint all see the integer.
fn canonical_body(body: JsonObject) -> Map<String, Value> {
    let JsonObject { mut object, raw } = body;
    super::integers::canonical_integers(&mut object, &raw);
    object
}

/// `type` on create: `consumer` (default) or `corporate`.
fn customer_type(body: &Map<String, Value>) -> Result<&'static str, crate::error::FieldError> {
    match body.get("type") {
        Some(Value::String(s)) if s == "corporate" => Ok("corporate"),
        Some(Value::String(s)) if s != "consumer" => Err(crate::error::FieldError::new(
            "type",
            "invalid_value",
            "must be consumer or corporate",
        )),
        // Absent, null or consumer; a wrong JSON type is reported by the shape check.
        _ => Ok("consumer"),
    }
}

#[utoipa::path(
    get, path = "/v1/customers/{id}", tag = "Customers", operation_id = "getCustomer",
    summary = "Get a customer (deleted ones too)",
    params(("id" = String, Path, description = "Customer ID (cus_...)")),
    responses(
        (status = 200, description = "Customer details", body = CustomerOut, headers(
            ("ETag" = String, description = "Strong ETag of the customer's version"),
            ("X-Request-Id" = String, description = "The request's id"),
            ("Idempotent-Replayed" = String, description = "true when this is a stored response replayed for a repeated Idempotency-Key"),
            ("RateLimit-Limit" = i64, description = "The tenant's bucket size"),
            ("RateLimit-Remaining" = i64, description = "Requests left in the bucket"),
            ("RateLimit-Reset" = i64, description = "Seconds until the bucket is full again")
        )),
        (status = 401, description = "unauthorized: missing, malformed, badly signed or expired token (WWW-Authenticate: Bearer)", body = ErrorEnvelope),
        (status = 403, description = "insufficient_scope", body = ErrorEnvelope),
        (status = 404, description = "not_found (also for customers of other tenants)", body = ErrorEnvelope),
        (status = 429, description = "rate_limited (Retry-After)", body = ErrorEnvelope),
        (status = 500, description = "internal_error", body = ErrorEnvelope),
        (status = 503, description = "service_unavailable: the database cannot be reached (Retry-After)", body = ErrorEnvelope)
    )
)]
pub async fn retrieve(
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::Read)?;
    if !plausible_id(&id) {
        return Err(ApiError::not_found());
    }
    let mut conn = crate::db::acquire(&state.pool).await?;
    let row = repo::find(&mut *conn, tenant, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((ETAG, row.etag()))
        .body(row.to_json()))
}

#[utoipa::path(
    patch, path = "/v1/customers/{id}", tag = "Customers", operation_id = "updateCustomer",
    summary = "Update a customer with a JSON merge patch (RFC 7396)",
    params(("id" = String, Path, description = "Customer ID (cus_...)"), ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; makes retries of this write safe (kept 24 h)"), ("If-Match" = Option<String>, Header, description = "Strong ETag(s) the customer must have, or *")),
    request_body(content = CustomerPatch, content_type = "application/merge-patch+json", description = "application/json is accepted too"),
    responses(
        (status = 200, description = "Customer updated", body = CustomerOut, headers(
            ("ETag" = String, description = "Strong ETag of the customer's version"),
            ("X-Request-Id" = String, description = "The request's id"),
            ("Idempotent-Replayed" = String, description = "true when this is a stored response replayed for a repeated Idempotency-Key"),
            ("RateLimit-Limit" = i64, description = "The tenant's bucket size"),
            ("RateLimit-Remaining" = i64, description = "Requests left in the bucket"),
            ("RateLimit-Reset" = i64, description = "Seconds until the bucket is full again")
        )),
        (status = 400, description = "invalid_json, invalid_request, parameter_invalid, parameter_unknown, parameter_not_updatable, invalid_cursor or idempotency_key_invalid", body = ErrorEnvelope),
        (status = 401, description = "unauthorized: missing, malformed, badly signed or expired token (WWW-Authenticate: Bearer)", body = ErrorEnvelope),
        (status = 403, description = "insufficient_scope", body = ErrorEnvelope),
        (status = 404, description = "not_found (also for customers of other tenants)", body = ErrorEnvelope),
        (status = 409, description = "customer_deleted, or idempotency_request_in_progress (Retry-After: 1)", body = ErrorEnvelope),
        (status = 412, description = "precondition_failed: If-Match does not match the current ETag", body = ErrorEnvelope),
        (status = 413, description = "payload_too_large: body over 64 KiB", body = ErrorEnvelope),
        (status = 415, description = "unsupported_media_type", body = ErrorEnvelope),
        (status = 422, description = "idempotency_key_reused: the key was used with a different request", body = ErrorEnvelope),
        (status = 429, description = "rate_limited (Retry-After)", body = ErrorEnvelope),
        (status = 500, description = "internal_error", body = ErrorEnvelope),
        (status = 503, description = "service_unavailable: the database cannot be reached (Retry-After)", body = ErrorEnvelope)
    )
)]
pub async fn update(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    body: JsonObject,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::Write)?.clone();
    let key = idempotency::key_from_headers(req.headers())?;
    let if_match = IfMatch::from_headers(req.headers())?;
    let body = canonical_body(body);
    let keyed = key.map(|key| {
        let fingerprint = idempotency::fingerprint(&Method::PATCH, req.path(), Some(&body));
        (key, fingerprint)
    });
    let id = id.into_inner();
    let work_tenant = tenant.clone();
    let work: idempotency::Work = Box::new(move |conn: &mut PgConnection, pending| {
        Box::pin(async move {
            // With a key, the first read also claims it (ClaimBy::Work), before anything else.
            let mut claimed_read = match pending {
                Some(pending) => {
                    let (claimed, current) = repo::claim_and_find(&mut *conn, pending, &id)
                        .await
                        .map_err(idempotency::claim_error)?;
                    if !claimed {
                        return Ok(Done::KeyTaken);
                    }
                    Some(current)
                }
                None => None,
            };
            if !plausible_id(&id) {
                return Err(ApiError::not_found());
            }
            for _ in 0..OPTIMISTIC_ATTEMPTS {
                // The claim's read may predate a wait on the key: good for a compare-and-set,
                // not for deciding that nothing changes.
                let (current, trusted) = match claimed_read.take() {
                    Some(current) => (current, false),
                    None => (repo::find(&mut *conn, &work_tenant, &id).await?, true),
                };
                let round =
                    patch_once(&mut *conn, &work_tenant, current, &if_match, &body, pending);
                match round.await {
                    Ok(Some(response)) if trusted || response.stored => return Ok(response.into()),
                    // A failed statement (not a business answer) ends the transaction's use.
                    Err(e) if trusted || !e.is_business_outcome() => return Err(e),
                    // Lost a race with another writer, or an answer from an untrusted read
                    // that wrote nothing: read again.
                    _ => continue,
                }
            }
            // Still losing: lock the row so this PATCH makes progress.
            let mut tx = conn.begin().await?;
            let current = repo::find_for_update(&mut *tx, &work_tenant, &id).await?;
            let response = patch_once(&mut tx, &work_tenant, current, &if_match, &body, pending)
                .await?
                .ok_or_else(|| ApiError::internal("locked PATCH lost its compare-and-set"))?;
            tx.commit().await?;
            Ok(response.into())
        })
    });
    state
        .executor()
        .execute(&tenant, keyed, ClaimBy::Work, work)
        .await
}

/// One read-merge-validate-write round of a PATCH; `None` when the compare-and-set lost.
async fn patch_once(
    conn: &mut PgConnection,
    tenant: &Tenant,
    current: Option<CustomerRow>,
    if_match: &IfMatch,
    body: &Map<String, Value>,
    pending: Option<&idempotency::PendingKey>,
) -> Result<Option<WriteResponse>, ApiError> {
    let current = current.ok_or_else(ApiError::not_found)?;
    if_match.check(&current)?;
    if current.is_deleted() {
        return Err(ApiError::CustomerDeleted);
    }
    let values = match patch::apply(&current.writable_document(), body, BodyKind::Patch)? {
        Outcome::Unchanged => return Ok(Some(ok(&current, actix_web::http::StatusCode::OK))),
        Outcome::Changed(values) => values,
    };
    // The clock never runs backwards for one customer, even across instances.
    let updated_at = now().max(current.updated_at);
    let updated = current.patched(&values, updated_at);
    let mut response = ok(&updated, actix_web::http::StatusCode::OK);
    let save = pending.map(|p| (p, &response));
    let written = repo::update_fields(
        conn,
        tenant,
        &current.id,
        current.version,
        &values,
        updated_at,
        save,
    )
    .await?;
    response.stored = pending.is_some();
    Ok(written.then_some(response))
}

#[utoipa::path(
    delete, path = "/v1/customers/{id}", tag = "Customers", operation_id = "deleteCustomer",
    summary = "Soft-delete a customer (status becomes deleted)",
    params(("id" = String, Path, description = "Customer ID (cus_...)"), ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; makes retries of this write safe (kept 24 h)"), ("If-Match" = Option<String>, Header, description = "Strong ETag(s) the customer must have, or *")),
    responses(
        (status = 200, description = "Customer deleted", body = CustomerOut, headers(
            ("ETag" = String, description = "Strong ETag of the customer's version"),
            ("X-Request-Id" = String, description = "The request's id"),
            ("Idempotent-Replayed" = String, description = "true when this is a stored response replayed for a repeated Idempotency-Key"),
            ("RateLimit-Limit" = i64, description = "The tenant's bucket size"),
            ("RateLimit-Remaining" = i64, description = "Requests left in the bucket"),
            ("RateLimit-Reset" = i64, description = "Seconds until the bucket is full again")
        )),
        (status = 400, description = "invalid_json, invalid_request, parameter_invalid, parameter_unknown, parameter_not_updatable, invalid_cursor or idempotency_key_invalid", body = ErrorEnvelope),
        (status = 401, description = "unauthorized: missing, malformed, badly signed or expired token (WWW-Authenticate: Bearer)", body = ErrorEnvelope),
        (status = 403, description = "insufficient_scope", body = ErrorEnvelope),
        (status = 404, description = "not_found (also for customers of other tenants)", body = ErrorEnvelope),
        (status = 409, description = "customer_deleted, or idempotency_request_in_progress (Retry-After: 1)", body = ErrorEnvelope),
        (status = 412, description = "precondition_failed: If-Match does not match the current ETag", body = ErrorEnvelope),
        (status = 422, description = "idempotency_key_reused: the key was used with a different request", body = ErrorEnvelope),
        (status = 429, description = "rate_limited (Retry-After)", body = ErrorEnvelope),
        (status = 500, description = "internal_error", body = ErrorEnvelope),
        (status = 503, description = "service_unavailable: the database cannot be reached (Retry-After)", body = ErrorEnvelope)
    )
)]
pub async fn delete(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::Write)?.clone();
    transition(
        req,
        tenant,
        id.into_inner(),
        state,
        &["pending", "active"],
        "deleted",
    )
    .await
}

#[utoipa::path(
    post, path = "/v1/customers/{id}/activate", tag = "Customers", operation_id = "activateCustomer",
    summary = "Activate a pending customer (called by the KYC system; scope customers:admin)",
    params(("id" = String, Path, description = "Customer ID (cus_...)"), ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; makes retries of this write safe (kept 24 h)"), ("If-Match" = Option<String>, Header, description = "Strong ETag(s) the customer must have, or *")),
    responses(
        (status = 200, description = "Customer active", body = CustomerOut, headers(
            ("ETag" = String, description = "Strong ETag of the customer's version"),
            ("X-Request-Id" = String, description = "The request's id"),
            ("Idempotent-Replayed" = String, description = "true when this is a stored response replayed for a repeated Idempotency-Key"),
            ("RateLimit-Limit" = i64, description = "The tenant's bucket size"),
            ("RateLimit-Remaining" = i64, description = "Requests left in the bucket"),
            ("RateLimit-Reset" = i64, description = "Seconds until the bucket is full again")
        )),
        (status = 400, description = "invalid_json, invalid_request, parameter_invalid, parameter_unknown, parameter_not_updatable, invalid_cursor or idempotency_key_invalid", body = ErrorEnvelope),
        (status = 401, description = "unauthorized: missing, malformed, badly signed or expired token (WWW-Authenticate: Bearer)", body = ErrorEnvelope),
        (status = 403, description = "insufficient_scope", body = ErrorEnvelope),
        (status = 404, description = "not_found (also for customers of other tenants)", body = ErrorEnvelope),
        (status = 409, description = "customer_deleted, or idempotency_request_in_progress (Retry-After: 1)", body = ErrorEnvelope),
        (status = 412, description = "precondition_failed: If-Match does not match the current ETag", body = ErrorEnvelope),
        (status = 422, description = "idempotency_key_reused: the key was used with a different request", body = ErrorEnvelope),
        (status = 429, description = "rate_limited (Retry-After)", body = ErrorEnvelope),
        (status = 500, description = "internal_error", body = ErrorEnvelope),
        (status = 503, description = "service_unavailable: the database cannot be reached (Retry-After)", body = ErrorEnvelope)
    )
)]
pub async fn activate(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::Admin)?.clone();
    transition(req, tenant, id.into_inner(), state, &["pending"], "active").await
}

/// DELETE (→ deleted) and activate (pending → active). The happy path is one statement; when
/// it changes nothing, the customer is read to say why: 404, 412, 409 (activate of a deleted
/// customer), or 200 unchanged (already in the target status).
async fn transition(
    req: HttpRequest,
    tenant: Tenant,
    id: String,
    state: web::Data<AppState>,
    from: &'static [&'static str],
    to: &'static str,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency::key_from_headers(req.headers())?;
    let if_match = IfMatch::from_headers(req.headers())?;
    let keyed = key.map(|key| {
        (
            key,
            idempotency::fingerprint(req.method(), req.path(), None),
        )
    });
    let work_tenant = tenant.clone();
    let work: idempotency::Work = Box::new(move |conn: &mut PgConnection, _| {
        Box::pin(async move {
            if !plausible_id(&id) {
                return Err(ApiError::not_found());
            }
            // With one ETag (or none, or `*`) the version is known up front and the happy path
            // is one statement; with several, the customer is read first.
            let expected = if_match.single_version();
            let unambiguous = !matches!(if_match, IfMatch::Tags(_)) || expected.is_some();
            loop {
                if unambiguous {
                    let moved =
                        repo::transition(&mut *conn, &work_tenant, &id, from, to, expected, now())
                            .await?;
                    if let Some(row) = moved {
                        return Ok(ok(&row, actix_web::http::StatusCode::OK).into());
                    }
                }
                let current = repo::find(&mut *conn, &work_tenant, &id)
                    .await?
                    .ok_or_else(ApiError::not_found)?;
                if_match.check(&current)?;
                if current.status == to {
                    return Ok(ok(&current, actix_web::http::StatusCode::OK).into());
                }
                if current.is_deleted() {
                    return Err(ApiError::CustomerDeleted);
                }
                if !unambiguous {
                    // Several tags, one of which matched the version just read: write with it.
                    let moved = repo::transition(
                        &mut *conn,
                        &work_tenant,
                        &id,
                        from,
                        to,
                        Some(current.version),
                        now(),
                    )
                    .await?;
                    if let Some(row) = moved {
                        return Ok(ok(&row, actix_web::http::StatusCode::OK).into());
                    }
                }
                // Changed between the two statements; go round again.
            }
        })
    });
    state
        .executor()
        .execute(&tenant, keyed, ClaimBy::Executor, work)
        .await
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Page<'a> {
    data: Vec<CustomerOut<'a>>,
    next_cursor: Option<String>,
    has_more: bool,
}

#[utoipa::path(
    get, path = "/v1/customers", tag = "Customers", operation_id = "listCustomers",
    summary = "List customers, newest first",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size, default 50"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
        ("status" = Option<String>, Query, description = "pending, active or deleted (deleted ones are left out otherwise)"),
        ("type" = Option<String>, Query, description = "consumer or corporate"),
        ("email" = Option<String>, Query, description = "Exact email, ignoring case")
    ),
    responses(
        (status = 200, description = "A page of customers", body = CustomerList, headers(
            ("X-Request-Id" = String, description = "The request's id (echoed when the client sent a valid one)"),
            ("RateLimit-Limit" = i64, description = "The tenant's bucket size"),
            ("RateLimit-Remaining" = i64, description = "Requests left in the bucket"),
            ("RateLimit-Reset" = i64, description = "Seconds until the bucket is full again")
        )),
        (status = 400, description = "invalid_json, invalid_request, parameter_invalid, parameter_unknown, parameter_not_updatable, invalid_cursor or idempotency_key_invalid", body = ErrorEnvelope),
        (status = 401, description = "unauthorized: missing, malformed, badly signed or expired token (WWW-Authenticate: Bearer)", body = ErrorEnvelope),
        (status = 403, description = "insufficient_scope", body = ErrorEnvelope),
        (status = 429, description = "rate_limited (Retry-After)", body = ErrorEnvelope),
        (status = 500, description = "internal_error", body = ErrorEnvelope),
        (status = 503, description = "service_unavailable: the database cannot be reached (Retry-After)", body = ErrorEnvelope)
    )
)]
pub async fn list(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::Read)?;
    let query = ListQuery::parse(req.query_string())?;
    let filter = ListFilter {
        status: query.status.as_deref(),
        kind: query.kind.as_deref(),
        email: query.email.as_deref(),
    };
    let scope = cursor::scope(tenant, filter.status, filter.kind, filter.email);
    let after = match &query.cursor {
        Some(c) => Some(state.cursors.open(c, &scope)?),
        None => None,
    };
    let mut conn = crate::db::acquire(&state.pool).await?;
    let mut rows = repo::list(
        &mut *conn,
        tenant,
        &filter,
        after.as_ref().map(|(t, id)| (*t, id.as_str())),
        query.limit + 1,
    )
    .await?;
    drop(conn);
    let has_more = rows.len() as i64 > query.limit;
    rows.truncate(query.limit as usize);
    let next_cursor = match rows.last() {
        Some(last) if has_more => Some(state.cursors.issue(last.created_at, &last.id, &scope)),
        _ => None,
    };
    let page = Page {
        data: rows.iter().map(CustomerRow::out).collect(),
        next_cursor,
        has_more,
    };
    Ok(HttpResponse::Ok().json(page))
}

struct ListQuery {
    limit: i64,
    cursor: Option<String>,
    status: Option<String>,
    kind: Option<String>,
    email: Option<String>,
}

impl ListQuery {
    fn parse(query: &str) -> Result<Self, ApiError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|_| ApiError::InvalidRequest("the query string is not valid".into()))?
            .into_inner();
        let mut out = ListQuery {
            limit: 50,
            cursor: None,
            status: None,
            kind: None,
            email: None,
        };
        let mut seen = std::collections::HashSet::new();
        let invalid = |param: &str, message: &str| ApiError::InvalidParameter {
            param: param.to_owned(),
            message: format!("{param} {message}"),
        };
        for (name, value) in pairs {
            if !seen.insert(name.clone()) {
                return Err(invalid(&name, "is given more than once"));
            }
            match name.as_str() {
                "limit" => {
                    out.limit = value
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| invalid("limit", "must be an integer from 1 to 100"))?;
                }
                "cursor" => out.cursor = Some(value),
                "status" => {
                    if !["pending", "active", "deleted"].contains(&value.as_str()) {
                        return Err(invalid("status", "must be pending, active or deleted"));
                    }
                    out.status = Some(value);
                }
                "type" => {
                    if !["consumer", "corporate"].contains(&value.as_str()) {
                        return Err(invalid("type", "must be consumer or corporate"));
                    }
                    out.kind = Some(value);
                }
                "email" => {
                    if value.is_empty() || value.chars().count() > 254 || value.contains('\0') {
                        return Err(invalid("email", "must be 1 to 254 characters"));
                    }
                    out.email = Some(value);
                }
                other => {
                    return Err(ApiError::Validation(vec![crate::error::FieldError::new(
                        other,
                        crate::error::PARAMETER_UNKNOWN,
                        format!("{other} is not a known query parameter"),
                    )]))
                }
            }
        }
        Ok(out)
    }
}
