//! The webhook routes: each extracts what the request says, calls the service, and renders the
//! answer. Writes go through the idempotency handle (`Idempotency-Key` as on every write).
//! Shared errors and headers are declared in `src/openapi/operations.rs`.

use actix_web::http::header::ETAG;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::PgConnection;
use utoipa::IntoParams;

use super::model::{
    RecoverIn, RecoverOut, RotateIn, WebhookInDoc, WebhookList, WebhookOut, WebhookPatchDoc,
    WebhookSecretOut,
};
use super::repo;
use super::service::{self, IfMatch};
use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::idempotency::{Begun, KeyedRequest, Reply, Write};
use crate::json_body::JsonBody;
use crate::limits::PAGE_SIZE_DEFAULT;
use crate::state::AppState;
use crate::tenant::Tenant;

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct WebhookPath {
    /// Webhook ID (whk_...)
    id: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct PageParams {
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// nextCursor of the previous page.
    cursor: Option<String>,
}

/// A write: begins it with the request's key, runs `run` on its connection, finishes it.
pub(super) async fn write(
    req: &HttpRequest,
    state: &AppState,
    tenant: &Tenant,
    body: Option<&Map<String, Value>>,
    run: impl AsyncFnOnce(&mut PgConnection) -> Result<Reply, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let keyed = KeyedRequest::from_headers(req.headers(), req.method(), req.path(), body)?;
    let mut write = match Write::begin(&state.pool, &state.idempotency, tenant, keyed).await? {
        Begun::Fresh(write, ()) => write,
        Begun::Replay(response) => return Ok(response),
    };
    let outcome = run(write.conn()).await;
    let response = write.finish(outcome).await;
    if response.is_ok() {
        // A webhook may have been made or enabled: this instance's writes wake the dispatcher
        // again until its next round says whether one is enabled.
        state.webhooks.expect_deliveries(true);
    }
    response
}

#[utoipa::path(
    post, path = "/v1/webhooks", tag = "Webhooks", operation_id = "createWebhook",
    summary = "Create a webhook, or update one (with id)",
    request_body(content = WebhookInDoc, content_type = "application/json"),
    responses(
        (status = 201, description = "Webhook created (with its secret)", body = WebhookOut,
            headers(("Location" = String, description = "/v1/webhooks/{id}"))),
        (status = 200, description = "Webhook updated (with its secret when the body set one)", body = WebhookOut))
)]
pub async fn create(
    req: HttpRequest,
    caller: Caller,
    body: JsonBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::WebhooksManage)?;
    let body = body.read().await?.object;
    let hooks = &state.webhooks;
    write(
        &req,
        &state,
        tenant,
        Some(&body),
        async |conn: &mut PgConnection| service::create_or_update(conn, hooks, tenant, &body).await,
    )
    .await
}

#[utoipa::path(
    get, path = "/v1/webhooks/{id}", tag = "Webhooks", operation_id = "getWebhook",
    summary = "Get a webhook", params(WebhookPath),
    responses((status = 200, description = "Webhook details", body = WebhookOut))
)]
pub async fn retrieve(
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::WebhooksManage)?;
    let mut conn = crate::db::acquire(&state.pool).await?;
    let webhook = repo::find(&mut conn, tenant, &id, false)
        .await?
        .ok_or_else(service::not_found)?;
    Ok(HttpResponse::Ok()
        .insert_header((ETAG, webhook.etag()))
        .json(webhook.out(None)))
}

#[utoipa::path(
    patch, path = "/v1/webhooks/{id}", tag = "Webhooks", operation_id = "updateWebhook",
    summary = "Update a webhook with a JSON merge patch (RFC 7396)", params(WebhookPath),
    request_body(content = WebhookPatchDoc, content_type = "application/merge-patch+json",
        description = "application/json is accepted too"),
    responses((status = 200, description = "Webhook updated", body = WebhookOut))
)]
pub async fn update(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    body: JsonBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::WebhooksManage)?;
    let body = body.read().await?.object;
    let if_match = IfMatch::from_headers(req.headers())?;
    let hooks = &state.webhooks;
    write(
        &req,
        &state,
        tenant,
        Some(&body),
        async |conn: &mut PgConnection| {
            service::update(conn, hooks, tenant, &id, &body, &if_match).await
        },
    )
    .await
}

#[utoipa::path(
    delete, path = "/v1/webhooks/{id}", tag = "Webhooks", operation_id = "deleteWebhook",
    summary = "Disable a webhook (enabled false, disabledReason manual)", params(WebhookPath),
    responses((status = 200, description = "Webhook disabled", body = WebhookOut))
)]
pub async fn delete(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::WebhooksManage)?;
    let if_match = IfMatch::from_headers(req.headers())?;
    write(
        &req,
        &state,
        tenant,
        None,
        async |conn: &mut PgConnection| service::disable(conn, tenant, &id, &if_match).await,
    )
    .await
}

#[utoipa::path(
    get, path = "/v1/webhooks/{id}/secret", tag = "Webhooks", operation_id = "getWebhookSecret",
    summary = "Get a webhook's signing secret", params(WebhookPath),
    responses((status = 200, description = "The current secret", body = WebhookSecretOut))
)]
pub async fn secret(
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::WebhooksManage)?;
    let mut conn = crate::db::acquire(&state.pool).await?;
    let secret = service::secret(&mut conn, &state.webhooks, tenant, &id).await?;
    Ok(HttpResponse::Ok().json(secret))
}

#[utoipa::path(
    post, path = "/v1/webhooks/{id}/rotate-secret", tag = "Webhooks",
    operation_id = "rotateWebhookSecret",
    summary = "Rotate a webhook's secret; the old one keeps signing for the grace period",
    params(WebhookPath), request_body(content = RotateIn, content_type = "application/json"),
    responses((status = 200, description = "The webhook with its new secret", body = WebhookOut))
)]
pub async fn rotate(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    body: JsonBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::WebhooksManage)?;
    let body = body.read().await?.object;
    let hooks = &state.webhooks;
    write(
        &req,
        &state,
        tenant,
        Some(&body),
        async |conn: &mut PgConnection| service::rotate(conn, hooks, tenant, &id, &body).await,
    )
    .await
}

#[utoipa::path(
    post, path = "/v1/webhooks/{id}/recover", tag = "Webhooks", operation_id = "recoverWebhook",
    summary = "Deliver again every kept event that occurred at or after an instant",
    params(WebhookPath), request_body(content = RecoverIn, content_type = "application/json"),
    responses((status = 202, description = "Deliveries made", body = RecoverOut))
)]
pub async fn recover(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    body: JsonBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::WebhooksManage)?;
    let body = body.read().await?.object;
    let response = write(
        &req,
        &state,
        tenant,
        Some(&body),
        async |conn: &mut PgConnection| service::recover(conn, tenant, &id, &body).await,
    )
    .await;
    state.webhooks.wake_senders();
    response
}

/// The keyset position of a list: (created_at, id) of the last item.
#[derive(Serialize, Deserialize)]
pub(super) struct Position {
    pub(super) t: DateTime<Utc>,
    pub(super) i: String,
}

pub(super) struct PageQuery {
    pub(super) limit: i64,
    pub(super) cursor: Option<String>,
    pub(super) status: Option<String>,
}

pub(super) fn page_query(query: &str, with_status: bool) -> Result<PageQuery, ApiError> {
    let mut page = PageQuery {
        limit: PAGE_SIZE_DEFAULT,
        cursor: None,
        status: None,
    };
    for pair in crate::query::pairs(query)? {
        let (name, value) = pair?;
        match name.as_str() {
            "limit" => page.limit = crate::query::limit(&value)?,
            "cursor" => page.cursor = Some(value),
            "status" if with_status => match value.as_str() {
                "pending" | "succeeded" | "failed" => page.status = Some(value),
                _ => {
                    return Err(crate::query::invalid(
                        "status",
                        "must be pending, succeeded or failed",
                    ))
                }
            },
            _ => return Err(crate::query::unknown(&name)),
        }
    }
    Ok(page)
}

#[utoipa::path(
    get, path = "/v1/webhooks", tag = "Webhooks", operation_id = "listWebhooks",
    summary = "List webhooks, newest first", params(PageParams),
    responses((status = 200, description = "A page of webhooks", body = WebhookList))
)]
pub async fn list(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::WebhooksManage)?;
    let page = page_query(req.query_string(), false)?;
    let scope = format!("webhooks/{}/{}", tenant.mode.as_str(), tenant.org);
    let after = match &page.cursor {
        Some(c) => Some(state.cursors.open::<Position>(c, &scope)?),
        None => None,
    };
    let mut conn = crate::db::acquire(&state.pool).await?;
    let mut rows = repo::list(&mut conn, tenant, after.map(|p| (p.t, p.i)), page.limit + 1).await?;
    drop(conn);
    let has_more = rows.len() as i64 > page.limit;
    rows.truncate(page.limit as usize);
    let next_cursor = match rows.last() {
        Some(last) if has_more => Some(state.cursors.issue(
            &Position {
                t: last.created_at,
                i: last.id.clone(),
            },
            &scope,
        )),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(WebhookList {
        data: rows.iter().map(|w| w.out(None)).collect(),
        next_cursor,
        has_more,
    }))
}
