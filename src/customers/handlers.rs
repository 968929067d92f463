//! The customer routes: each handler extracts what the request says, calls the service, and
//! renders the answer. The errors, headers and the `Idempotency-Key` parameter that many routes
//! share are declared once, in `src/openapi/operations.rs`.

use actix_web::http::header::ETAG;
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use utoipa::IntoParams;

use serde_json::{Map, Value};

use super::as_of;
use super::domain::IfMatch;
use super::integers;
use super::list::{ListParams, ListPosition, ListQuery};
use super::render;
use super::repo::{self, FindClaiming};
use super::schema::{CustomerIn, CustomerList, CustomerOut, CustomerPatch};
use super::service::{self, Done, Target};
use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::events::Origin;
use crate::idempotency::{Begun, KeyedRequest, Write};
use crate::ids::CustomerId;
use crate::json_body::JsonBody;
use crate::state::AppState;
use crate::tenant::Tenant;

/// The path of one customer.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct CustomerPath {
    /// Customer ID (cus_...)
    id: String,
}

#[utoipa::path(
    post, path = "/v1/customers", tag = "Customers", operation_id = "createCustomer",
    summary = "Create a customer",
    request_body(content = CustomerIn, content_type = "application/json"),
    responses((status = 201, description = "Customer created", body = CustomerOut,
        headers(("Location" = String, description = "/v1/customers/{id}"))))
)]
pub async fn create(
    req: HttpRequest,
    caller: Caller,
    body: JsonBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::Write)?;
    let body = integers::canonical_body(body.read().await?);
    let keyed = KeyedRequest::from_headers(req.headers(), &Method::POST, req.path(), Some(&body))?;
    let mut write = match Write::begin(&state.pool, &state.idempotency, tenant, keyed).await? {
        Begun::Fresh(write, ()) => write,
        Begun::Replay(response) => return Ok(response),
    };
    let origin = origin(&caller, &state, write.key());
    let writing = state.recent.writing(tenant, None);
    let (outcome, written) = Done::split(service::create(&mut write, &origin, &body).await);
    let response = write.finish(outcome).await;
    writing.settle(written.as_ref(), response.is_ok());
    finished(&state, response)
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct RetrieveParams {
    /// An RFC 3339 instant with an offset: the customer as it was then (the last version whose
    /// updatedAt is at or before it), with that version's ETag. 404 when it did not exist yet;
    /// 422 history_unavailable before its recorded history begins.
    #[param(rename = "asOf", format = DateTime)]
    as_of: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/customers/{id}", tag = "Customers", operation_id = "getCustomer",
    summary = "Get a customer (deleted ones too), now or as it was at an instant",
    params(CustomerPath, RetrieveParams),
    responses((status = 200, description = "Customer details", body = CustomerOut))
)]
pub async fn retrieve(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::Read)?;
    let as_of = as_of_instant(req.query_string())?;
    let id = CustomerId::parse(&id).ok_or_else(ApiError::not_found)?;
    let (body, version) = match as_of {
        None => {
            let customer = state
                .reads
                .find_to_show(&state.pool, tenant, &id)
                .await?
                .ok_or_else(ApiError::not_found)?;
            state.recent.remember(tenant, &customer);
            (customer.to_json(), customer.version)
        }
        Some(at) => {
            let mut conn = crate::db::acquire(&state.pool).await?;
            let customer = repo::find_to_show(&mut *conn, tenant, &id)
                .await?
                .ok_or_else(ApiError::not_found)?;
            as_of::customer_as_of(&mut conn, tenant, &id, &customer, at).await?
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((ETAG, version.etag()))
        .body(body))
}

/// `asOf`, if the query has it: an RFC 3339 instant with an offset. Other parameters are left
/// alone, as they always were on this route. The query is parsed once and its names
/// percent-decoded, so `as%4Ff=` is `asOf=` (a test of the raw text would miss it).
fn as_of_instant(query: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    let invalid = || {
        crate::query::invalid(
            "asOf",
            "must be one RFC 3339 instant with an offset, e.g. 2026-12-01T10:30:00Z",
        )
    };
    if query.is_empty() {
        return Ok(None);
    }
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|_| invalid())?
        .into_inner();
    let mut values = pairs.into_iter().filter(|(name, _)| name == "asOf");
    let Some((_, value)) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid());
    }
    let at = DateTime::parse_from_rfc3339(&value).map_err(|_| invalid())?;
    Ok(Some(at.with_timezone(&Utc)))
}

#[utoipa::path(
    patch, path = "/v1/customers/{id}", tag = "Customers", operation_id = "updateCustomer",
    summary = "Update a customer with a JSON merge patch (RFC 7396)",
    params(CustomerPath),
    request_body(content = CustomerPatch, content_type = "application/merge-patch+json",
        description = "application/json is accepted too"),
    responses((status = 200, description = "Customer updated", body = CustomerOut))
)]
pub async fn update(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    body: JsonBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::Write)?;
    let body = integers::canonical_body(body.read().await?);
    let update = async |write: &mut Write, target: Target<'_>, origin: &Origin| {
        service::update(write, target, origin, &body).await
    };
    write_one(&req, &state, &caller, tenant, &id, Some(&body), update).await
}

#[utoipa::path(
    delete, path = "/v1/customers/{id}", tag = "Customers", operation_id = "deleteCustomer",
    summary = "Soft-delete a customer (status becomes deleted)",
    params(CustomerPath),
    responses((status = 200, description = "Customer deleted", body = CustomerOut))
)]
pub async fn delete(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::Write)?;
    write_one(&req, &state, &caller, tenant, &id, None, service::delete).await
}

#[utoipa::path(
    post, path = "/v1/customers/{id}/activate", tag = "Customers", operation_id = "activateCustomer",
    summary = "Activate a pending customer (called by the KYC system)",
    params(CustomerPath),
    responses((status = 200, description = "Customer active", body = CustomerOut))
)]
pub async fn activate(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::Admin)?;
    write_one(&req, &state, &caller, tenant, &id, None, service::activate).await
}

/// A write of one customer: begins it (or answers with what its key already holds), runs the
/// service's `change` on it, and finishes it.
async fn write_one(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    id: &str,
    body: Option<&Map<String, Value>>,
    change: impl AsyncFnOnce(&mut Write, Target<'_>, &Origin) -> Result<Done, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let (mut write, target) = match begin_one(req, state, tenant, id, body).await? {
        Begun::Fresh(write, target) => (write, target),
        Begun::Replay(response) => return Ok(response),
    };
    let origin = origin(caller, state, write.key());
    // Only once the write has finished is it known whether the version written committed (an
    // error at COMMIT, a lost connection or the deadline leave it unknown): remembered if so,
    // else the customer is forgotten.
    let writing = state.recent.writing(tenant, target.id.as_ref());
    let (outcome, written) = Done::split(change(&mut write, target, &origin).await);
    let response = write.finish(outcome).await;
    writing.settle(written.as_ref(), response.is_ok());
    finished(state, response)
}

/// After a write committed: the relay publishes its event at once.
fn finished(
    state: &AppState,
    response: Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, ApiError> {
    if response.as_ref().is_ok_and(|r| r.status().is_success()) {
        state.relay_wake.notify_one();
        state.webhooks.wake_dispatcher();
    }
    response
}

/// Who is writing, with which request: for the write's event.
fn origin(caller: &Caller, state: &AppState, key: Option<&str>) -> Origin {
    Origin {
        actor: caller.sub.clone(),
        request_id: crate::request_id::current(),
        idempotency_key: key.map(str::to_owned),
        traceparent: crate::telemetry::traceparent(&tracing::Span::current()),
        record: state.events.record,
    }
}

/// Begins a write of one customer: the request's `Idempotency-Key` (with the fingerprint of
/// `body`), `If-Match` and id. With a key, the claim also reads the customer (when its id can
/// exist), saving a round trip.
async fn begin_one<'s>(
    req: &HttpRequest,
    state: &'s AppState,
    tenant: &Tenant,
    id: &str,
    body: Option<&Map<String, Value>>,
) -> Result<Begun<Target<'s>>, ApiError> {
    let keyed = KeyedRequest::from_headers(req.headers(), req.method(), req.path(), body)?;
    let if_match = IfMatch::from_headers(req.headers())?;
    let id = CustomerId::parse(id);
    let (pool, settings) = (&state.pool, &state.idempotency);
    let begun = match &id {
        Some(id) => Write::begin_reading(pool, settings, tenant, keyed, FindClaiming(id)).await?,
        None => match Write::begin(pool, settings, tenant, keyed).await? {
            Begun::Fresh(write, ()) => Begun::Fresh(write, None),
            Begun::Replay(response) => Begun::Replay(response),
        },
    };
    Ok(match begun {
        Begun::Fresh(write, hint) => {
            // Without a key nothing was read with a claim: what this instance remembers of the
            // customer stands in, saving the read when it is still current.
            let hint = hint.or_else(|| {
                let id = id.as_ref()?;
                Some(Some(state.recent.recall(tenant, id)?))
            });
            let recent = &state.recent;
            Begun::Fresh(
                write,
                Target {
                    id,
                    hint,
                    if_match,
                    recent,
                },
            )
        }
        Begun::Replay(response) => Begun::Replay(response),
    })
}

#[utoipa::path(
    get, path = "/v1/customers", tag = "Customers", operation_id = "listCustomers",
    summary = "List customers, newest first",
    params(ListParams),
    responses((status = 200, description = "A page of customers", body = CustomerList))
)]
pub async fn list(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::Read)?;
    let query = ListQuery::parse(req.query_string())?;
    let scope = query.cursor_scope(tenant);
    let after: Option<ListPosition> = match &query.cursor {
        Some(c) => Some(state.cursors.open(c, &scope)?),
        None => None,
    };
    let after = after.as_ref().map(ListPosition::keyset).transpose()?;
    let mut conn = crate::db::acquire(&state.pool).await?;
    let mut rows = repo::list(&mut *conn, tenant, &query.filter, after, query.limit + 1).await?;
    drop(conn);
    let has_more = rows.len() as i64 > query.limit;
    rows.truncate(query.limit as usize);
    let next_cursor = match rows.last() {
        Some(last) if has_more => {
            let position = ListPosition::new(last.created_at, last.id.as_str());
            Some(state.cursors.issue(&position, &scope))
        }
        _ => None,
    };
    // `render::page`: the stored JSON members copied as they are (HttpResponse::json's type).
    let page = render::page(&rows, next_cursor.as_deref(), has_more);
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(page))
}
