//! The tenant's feed (oldest first), and how a page of events is shown (a customer's history,
//! newest first, is the customers resource's route: `customers::history`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

use super::model::EventType;
use super::repo::{self, FeedFilter, FeedPosition, StoredEvent};
use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::ids::CustomerId;
use crate::limits::PAGE_SIZE_DEFAULT;
use crate::pagination::Cursors;
use crate::query;
use crate::tenant::Tenant;

/// A page of events.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    /// The events exactly as stored (and as published to NATS).
    data: Vec<Box<RawValue>>,
    next_cursor: Option<String>,
    has_more: bool,
}

/// A page of events, for the OpenAPI document.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct EventList {
    data: Vec<Event>,
    /// The cursor of the next page (history: null on the last page; feed: always, to poll with).
    next_cursor: Option<String>,
    has_more: bool,
}

/// A change to a customer.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct Event {
    /// `evt_` + a ULID.
    id: String,
    r#type: EventType,
    customer_id: String,
    /// The customer's version after the change.
    version: i64,
    /// The customer's `updatedAt` at that version.
    #[schema(format = DateTime)]
    occurred_at: String,
    actor: EventActor,
    request_id: String,
    idempotency_key: Option<String>,
    data: EventData,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EventActor {
    /// The `sub` of the token that made the change; null when it had none.
    sub: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EventData {
    /// The customer after the change, exactly as GET showed it at this version.
    #[schema(schema_with = customer_object)]
    object: serde_json::Value,
    /// Absent on `customer.created`: a merge patch holding the old value of each member that
    /// changed (null where the member did not exist); merged into `object` it gives the customer
    /// before the change.
    #[schema(value_type = Option<Object>, nullable = false)]
    previous: Option<serde_json::Value>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct FeedParams {
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page; none: from the beginning.
    after: Option<String>,
    /// Only events of this type.
    r#type: Option<EventType>,
    /// Only this customer's events (a customer not in your tenant gives an empty page).
    #[param(rename = "customerId")]
    customer_id: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/events", tag = "Events", operation_id = "listEvents",
    summary = "The tenant's event feed, oldest first, for consumers that follow it",
    description = "Follow `nextCursor` (as `after`) from the start and every event of the tenant is seen exactly once, each customer's in version order; a caught-up consumer gets `data: []` and a cursor to poll with.",
    params(FeedParams),
    responses((status = 200, description = "A page of the feed", body = EventList))
)]
pub async fn feed(
    req: HttpRequest,
    caller: Caller,
    pool: web::Data<PgPool>,
    cursors: web::Data<Cursors>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.require(Scope::Read)?;
    let (mut limit, mut after, mut filter) = (PAGE_SIZE_DEFAULT, None, FeedFilter::default());
    for pair in query::pairs(req.query_string())? {
        let (name, value) = pair?;
        match name.as_str() {
            "limit" => limit = query::limit(&value)?,
            "after" => after = Some(value),
            "type" => {
                let kind = EventType::parse(&value).ok_or_else(|| {
                    query::invalid(
                        "type",
                        "must be customer.created, customer.updated, customer.deleted or customer.activated",
                    )
                })?;
                filter.kind = Some(kind.as_str());
            }
            "customerId" => filter.customer = Some(value),
            other => return Err(query::unknown(other)),
        }
    }
    let scope = feed_scope(tenant, &filter);
    let after: FeedCursor = match after {
        Some(c) => cursors.open(&c, &scope)?,
        None => FeedCursor::default(),
    };
    let read = match &filter.customer {
        // An id that cannot exist has no events, as one of another tenant.
        Some(customer) if CustomerId::parse(customer).is_none() => None,
        _ => {
            let mut conn = crate::db::acquire(&pool).await?;
            let position = FeedPosition {
                feed_xid: after.x,
                seq: after.s,
            };
            let after_version = after.v.unwrap_or(0);
            Some(
                repo::feed(
                    &mut *conn,
                    tenant,
                    &filter,
                    position,
                    after_version,
                    limit + 1,
                )
                .await?,
            )
        }
    };
    let (events, has_more, next) = match read {
        None => (Vec::new(), false, after),
        Some(read) => next_page(read, after, limit, filter.customer.is_some()),
    };
    // Always a cursor: a caught-up consumer polls with the one it has.
    let next_cursor = Some(cursors.issue(&next, &scope));
    page(events, next_cursor, has_more)
}

/// `data.object`'s schema: the customers resource's `Customer`, named rather than imported, so
/// that the event core depends on no resource (the document lists that schema itself).
fn customer_object() -> utoipa::openapi::Ref {
    utoipa::openapi::schema::RefBuilder::new()
        .description(Some(
            "The customer after the change, exactly as GET showed it at this version.",
        ))
        .ref_location_from_schema_name("Customer")
        .build()
}

/// Where a reading of the feed resumes: after the feed position (x, s), and, for one
/// customer's feed, after its version v (the primary key's bound: that feed reads the customer's
/// events by version). Cursors issued before v existed read as v = 0.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct FeedCursor {
    x: i64,
    s: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<i64>,
}

/// The page's events (at most `limit`), whether more follow, and the cursor after it.
///
/// A full page resumes after its last event. A page that is not full has seen every matching
/// event visible to its statement, which is every event below the statement's horizon (the
/// oldest transaction then running): it resumes at the horizon, so the next poll does not read
/// again what this one read, and never passes an event not yet visible (every such event has a
/// feed_xid at or above the horizon: docs/events.md).
fn next_page(
    read: repo::FeedPage,
    after: FeedCursor,
    limit: i64,
    by_customer: bool,
) -> (Vec<StoredEvent>, bool, FeedCursor) {
    let mut events = read.events;
    let has_more = events.len() as i64 > limit;
    events.truncate(limit as usize);
    let last_version = events.last().map(|e| e.version);
    let mut next = match events.last() {
        Some(last) => FeedCursor {
            x: last.position.feed_xid,
            s: last.position.seq,
            v: after.v,
        },
        None => after,
    };
    if by_customer {
        next.v = last_version.or(after.v).or(Some(0));
    }
    if !has_more {
        let horizon = (read.horizon - 1, i64::MAX);
        if horizon > (next.x, next.s) {
            (next.x, next.s) = horizon;
        }
        if by_customer {
            next.v = next.v.max(read.newest_version);
        }
    }
    (events, has_more, next)
}

fn feed_scope(tenant: &Tenant, filter: &FeedFilter) -> String {
    format!(
        "feed\n{}\n{}\ntype={}\ncustomer={}",
        tenant.org,
        tenant.mode.as_str(),
        filter.kind.unwrap_or(""),
        filter.customer.as_deref().unwrap_or("")
    )
}

/// A page of events, each exactly as stored.
pub fn page(
    events: Vec<StoredEvent>,
    next_cursor: Option<String>,
    has_more: bool,
) -> Result<HttpResponse, ApiError> {
    let data = events
        .into_iter()
        .map(|e| RawValue::from_string(e.body))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::internal(format!("a stored event is not JSON: {e}")))?;
    Ok(HttpResponse::Ok().json(Page {
        data,
        next_cursor,
        has_more,
    }))
}
