//! `GET /v1/customers/{id}/events`: a customer's change history, newest first, from the event
//! core's reads (`events::repo::history`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::events::handlers::{page, EventList};
use crate::events::repo;
use crate::ids::CustomerId;
use crate::limits::PAGE_SIZE_DEFAULT;
use crate::query;
use crate::state::AppState;

/// Where a customer's history page ends: the last version shown.
#[derive(Serialize, Deserialize)]
struct HistoryPosition {
    v: i64,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct HistoryParams {
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/customers/{id}/events", tag = "Events", operation_id = "listCustomerEvents",
    summary = "A customer's change history, newest first (deleted customers too)",
    params(super::handlers::CustomerPath, HistoryParams),
    responses((status = 200, description = "A page of the customer's events", body = EventList))
)]
pub async fn history(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::Read)?;
    let (mut limit, mut cursor) = (PAGE_SIZE_DEFAULT, None);
    for pair in query::pairs(req.query_string())? {
        let (name, value) = pair?;
        match name.as_str() {
            "limit" => limit = query::limit(&value)?,
            "cursor" => cursor = Some(value),
            other => return Err(query::unknown(other)),
        }
    }
    let id = CustomerId::parse(&id).ok_or_else(ApiError::not_found)?;
    let scope = format!(
        "history\n{}\n{}\n{}",
        tenant.org,
        tenant.mode.as_str(),
        id.as_str()
    );
    let before = match cursor {
        Some(c) => Some(state.cursors.open::<HistoryPosition>(&c, &scope)?.v),
        None => None,
    };
    let mut conn = crate::db::acquire(&state.pool).await?;
    super::exists(&mut conn, tenant, &id).await?;
    let mut events = repo::history(&mut *conn, tenant, &id, before, limit + 1).await?;
    drop(conn);
    let has_more = events.len() as i64 > limit;
    events.truncate(limit as usize);
    let next_cursor = match events.last() {
        Some(last) if has_more => Some(
            state
                .cursors
                .issue(&HistoryPosition { v: last.version }, &scope),
        ),
        _ => None,
    };
    page(events, next_cursor, has_more)
}
