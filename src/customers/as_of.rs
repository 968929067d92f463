//! `GET /v1/customers/{id}?asOf=`: the customer as it was at an instant, from its history.
//!
//! The last version whose `updatedAt` is at or before the instant is the last event at or
//! before it. Before a customer's first recorded event (a customer that existed before events
//! were recorded, or whose older events were removed), the state is known only back to the
//! first event's `data.previous`: merged into that event's object it gives the version before
//! it. Anything older is unknown, and the answer says so (422 `history_unavailable`) rather
//! than guess.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sqlx::PgConnection;

use super::domain::{CustomerStatus, CustomerType, Version};
use super::model::{timestamp, Customer, Member};
use crate::error::ApiError;
use crate::events::repo::{self, StoredEvent};
use crate::ids::CustomerId;
use crate::tenant::Tenant;

/// The customer `id` as it was at `at`: its JSON as GET showed it then, and its version.
pub async fn customer_as_of(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: &CustomerId,
    current: &Customer<impl Member>,
    at: DateTime<Utc>,
) -> Result<(Vec<u8>, Version), ApiError> {
    if at < current.created_at {
        return Err(ApiError::NotFound(
            "the customer did not exist at that instant",
        ));
    }
    if let Some(event) = repo::at_or_before(&mut *conn, tenant, id, at).await? {
        return object_of(&event);
    }
    let known_from = match repo::first(&mut *conn, tenant, id).await? {
        // No event at all: nothing changed since the history began; the customer as it is.
        None if current.updated_at <= at => return Ok((current.to_json(), current.version)),
        None => current.updated_at,
        Some(first) => {
            let before = before_event(&first)?;
            if before.updated_at <= at {
                return Ok((before.to_json(), before.version));
            }
            before.updated_at
        }
    };
    Err(ApiError::HistoryUnavailable(timestamp(&known_from)))
}

#[derive(Deserialize)]
struct EventData {
    version: i64,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    object: CustomerObject,
    #[serde(default)]
    previous: Option<Map<String, Value>>,
}

/// A customer in its API form, read back from an event.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomerObject {
    id: String,
    #[serde(rename = "type")]
    kind: CustomerType,
    status: CustomerStatus,
    email: Option<String>,
    phone: Option<String>,
    #[serde(default)]
    name: Option<NameObject>,
    #[serde(default)]
    policy: Option<Value>,
    metadata: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct NameObject {
    first: Option<String>,
    last: Option<String>,
}

fn corrupt(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("a stored event cannot be read: {e}"))
}

/// The customer an event shows (its `data.object`, the bytes as stored), with its version.
fn object_of(event: &StoredEvent) -> Result<(Vec<u8>, Version), ApiError> {
    #[derive(Deserialize)]
    struct Stored<'a> {
        #[serde(borrow)]
        data: StoredData<'a>,
    }
    #[derive(Deserialize)]
    struct StoredData<'a> {
        #[serde(borrow)]
        object: &'a RawValue,
    }
    let stored: Stored = serde_json::from_str(&event.body).map_err(corrupt)?;
    Ok((
        stored.data.object.get().as_bytes().to_vec(),
        Version::new(event.version),
    ))
}

/// The customer just before an event: its `data.previous` merged into its `data.object`.
fn before_event(event: &StoredEvent) -> Result<Customer, ApiError> {
    let EventData { version, data } = serde_json::from_str(&event.body).map_err(corrupt)?;
    let o = data.object;
    let id = CustomerId::parse(&o.id).ok_or_else(|| corrupt("a malformed customer id"))?;
    let name = o.name.unwrap_or(NameObject {
        first: None,
        last: None,
    });
    let after = Customer {
        id,
        kind: o.kind,
        status: o.status,
        email: o.email,
        phone: o.phone,
        first_name: name.first,
        last_name: name.last,
        policy: o.policy,
        metadata: o.metadata,
        version: Version::new(version),
        created_at: o.created_at,
        updated_at: o.updated_at,
        xmin: None,
    };
    let mut previous = data
        .previous
        .ok_or_else(|| corrupt("a creation has no state before it"))?;
    let status = previous.remove("status");
    let updated_at = previous.remove("updatedAt");
    let mut before = after.clone();
    before.version = Version::new(version - 1);
    // The merge alone, not today's validation: the state is shown as it was, even one that the
    // rules of today would refuse (a rule tightened since, say).
    let mut merged = after.writable_document();
    json_patch::merge(&mut merged, &Value::Object(previous));
    super::model::normalize(&mut merged);
    set_writable(&mut before, &merged);
    if let Some(status) = status {
        before.status = serde_json::from_value(status).map_err(corrupt)?;
    }
    if let Some(updated_at) = updated_at {
        before.updated_at = serde_json::from_value(updated_at).map_err(corrupt)?;
    }
    Ok(before)
}

/// Sets the writable fields from a merged writable document, as they are (a member absent or
/// not of its JSON type is unset).
fn set_writable(customer: &mut Customer, doc: &Value) {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    customer.email = text(&doc["email"]);
    customer.phone = text(&doc["phone"]);
    customer.first_name = text(&doc["name"]["first"]);
    customer.last_name = text(&doc["name"]["last"]);
    customer.policy = doc.get("policy").filter(|p| !p.is_null()).cloned();
    customer.metadata = match doc.get("metadata") {
        Some(m @ Value::Object(_)) => m.clone(),
        _ => Value::Object(Map::new()),
    };
}
