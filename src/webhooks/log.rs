//! The delivery log: a webhook's deliveries with their attempts, and the retry of one.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};

use super::handlers::{page_query, write, Position, WebhookPath};
use super::model::timestamp;
use super::repo::{self, deliveries};
use super::service;
use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tenant::Tenant;

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptOut {
    #[schema(format = DateTime)]
    pub at: String,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub error: Option<String>,
    /// The first 4 KiB of the response body.
    pub response_body: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryOut {
    #[schema(example = "dlv_01JD7Q4X2V6W8Y9Z0A1B2C3D4E")]
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    /// pending, succeeded or failed.
    pub status: String,
    pub attempts: Vec<AttemptOut>,
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryList {
    pub data: Vec<DeliveryOut>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct DeliveryPath {
    /// Webhook ID (whk_...)
    id: String,
    /// Delivery ID (dlv_...)
    #[param(rename = "deliveryId")]
    delivery_id: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct DeliveryParams {
    /// pending, succeeded or failed.
    status: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    cursor: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/webhooks/{id}/deliveries/{deliveryId}/retry", tag = "Webhooks",
    operation_id = "retryWebhookDelivery",
    summary = "One more attempt of a delivery, now (also after failed)", params(DeliveryPath),
    responses((status = 202, description = "The delivery, due now", body = DeliveryOut))
)]
pub async fn retry(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::WebhooksManage)?;
    let (id, delivery_id) = path.into_inner();
    let response = write(
        &req,
        &state,
        tenant,
        None,
        async |conn: &mut PgConnection| {
            if !deliveries::retry(conn, tenant, &id, &delivery_id).await? {
                return Err(ApiError::NotFound("no such delivery"));
            }
            let found =
                deliveries_page(conn, tenant, &id, None, None, 1, Some(&delivery_id)).await?;
            let delivery = found
                .into_iter()
                .next()
                .ok_or(ApiError::NotFound("no such delivery"))?;
            Ok(service::json_reply(StatusCode::ACCEPTED, &delivery, None))
        },
    )
    .await;
    state.webhooks.wake_senders();
    response
}

#[utoipa::path(
    get, path = "/v1/webhooks/{id}/deliveries", tag = "Webhooks",
    operation_id = "listWebhookDeliveries",
    summary = "A webhook's delivery log, newest first", params(WebhookPath, DeliveryParams),
    responses((status = 200, description = "A page of deliveries", body = DeliveryList))
)]
pub async fn deliveries(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::WebhooksManage)?;
    let page = page_query(req.query_string(), true)?;
    let scope = format!(
        "deliveries/{}/{}/{}/{}",
        tenant.mode.as_str(),
        tenant.org,
        id,
        page.status.as_deref().unwrap_or("")
    );
    let after = match &page.cursor {
        Some(c) => Some(state.cursors.open::<Position>(c, &scope)?),
        None => None,
    };
    let mut conn = crate::db::acquire(&state.pool).await?;
    repo::find(&mut conn, tenant, &id, false)
        .await?
        .ok_or_else(service::not_found)?;
    let after = after.map(|p| (p.t, p.i));
    let status = page.status.as_deref();
    let mut data =
        deliveries_page(&mut conn, tenant, &id, status, after, page.limit + 1, None).await?;
    drop(conn);
    let has_more = data.len() as i64 > page.limit;
    data.truncate(page.limit as usize);
    let next_cursor = match data.last() {
        Some(last) if has_more => Some(
            state.cursors.issue(
                &Position {
                    t: DateTime::parse_from_rfc3339(&last.created_at)
                        .map_err(ApiError::internal)?
                        .with_timezone(&Utc),
                    i: last.id.clone(),
                },
                &scope,
            ),
        ),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(DeliveryList {
        data,
        next_cursor,
        has_more,
    }))
}

/// A page of deliveries with their attempts; `only`: just that delivery.
async fn deliveries_page(
    conn: &mut PgConnection,
    tenant: &Tenant,
    webhook_id: &str,
    status: Option<&str>,
    after: Option<(DateTime<Utc>, String)>,
    limit: i64,
    only: Option<&str>,
) -> Result<Vec<DeliveryOut>, ApiError> {
    let rows = match only {
        Some(id) => deliveries::find(conn, tenant, webhook_id, id)
            .await?
            .into_iter()
            .collect(),
        None => deliveries::list(conn, tenant, webhook_id, status, after, limit).await?,
    };
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut attempts = deliveries::attempts_of(conn, tenant, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mine: Vec<AttemptOut> = attempts
                .extract_if(.., |a| a.delivery_id == r.id)
                .map(|a| AttemptOut {
                    at: timestamp(a.at),
                    status_code: a.status_code,
                    duration_ms: a.duration_ms,
                    error: a.error,
                    response_body: a.response_body,
                })
                .collect();
            DeliveryOut {
                id: r.id,
                webhook_id: r.webhook_id,
                event_id: r.event_id,
                event_type: r.event_type,
                status: r.status,
                attempts: mine,
                // While an attempt is in flight its lease stands in next_attempt_at; it is
                // shown as due then.
                next_attempt_at: r.next_attempt_at.map(timestamp),
                created_at: timestamp(r.created_at),
            }
        })
        .collect())
}
