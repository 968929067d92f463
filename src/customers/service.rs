//! The customer writes — create, update (PATCH), delete and activate — as plain async functions
//! over a [`Write`]: read, decide, validate, write, top to bottom. Handlers extract and render;
//! the rules of each route are here, and the compare-and-set that keeps concurrent writers
//! from losing each other's changes is in one place, [`change`].

use actix_web::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::Connection;

use super::domain::{CustomerId, CustomerStatus, IfMatch};
use super::input::BodyKind;
use super::model::Customer;
use super::patch::{self, Outcome};
use super::recent::Recent;
use super::repo;
use crate::error::ApiError;
use crate::events::{EventRecord, EventType, Origin};
use crate::idempotency::{Reply, Write};

/// Optimistic rounds before a write locks the row to be sure of making progress.
const OPTIMISTIC_ROUNDS: usize = 3;

/// The service's clock, at the millisecond precision the API shows, so stored and shown times
/// are the same value.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// `POST /v1/customers`: the body is a merge patch onto an empty customer, validated as a whole.
pub async fn create(
    write: &mut Write,
    origin: &Origin,
    recent: &Recent,
    body: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let (kind, values) = patch::new_customer(body)?;
    let (id, created_at) = CustomerId::generate();
    let customer = Customer::new(id, kind, values, created_at);
    let mut reply = reply(&customer, StatusCode::CREATED);
    reply.location = Some(format!("/v1/customers/{}", customer.id.as_str()));
    let event = origin.event(EventType::Created, None, &customer, &reply.body);
    let saver = write.saver();
    let (save, event) = (saver.save(&reply), EventRecord(event.as_ref()));
    let written = repo::insert(write.conn(), &save, &event, &customer).await?;
    if written.saved {
        write.saved(&reply);
    }
    recent.remember(write.tenant(), &customer);
    Ok(reply)
}

/// The customer a write of one customer is about, as the request names it.
pub struct Target<'a> {
    /// `None` for an id that cannot exist (answered 404 without a query).
    pub id: Option<CustomerId>,
    /// A guess of the customer as it is (see [`change`]): what the claim of the request's
    /// idempotency key read along with it, or what this instance remembers of it.
    pub hint: Option<Option<Customer>>,
    pub if_match: IfMatch,
    /// Customers this instance saw lately; the write adds what it reads and writes.
    pub recent: &'a Recent,
}

/// `PATCH /v1/customers/{id}`: the body merged into the stored customer (RFC 7396), the result
/// validated as a whole; a patch that changes nothing writes nothing.
pub async fn update(
    write: &mut Write,
    target: Target<'_>,
    origin: &Origin,
    body: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    change(write, target, origin, EventType::Updated, |current| {
        if current.is_deleted() {
            return Err(ApiError::CustomerDeleted);
        }
        Ok(
            match patch::apply(&current.writable_document(), body, BodyKind::Patch)? {
                Outcome::Unchanged => None,
                Outcome::Changed(values) => {
                    Some(current.next_version(now(), |next| next.set_values(values)))
                }
            },
        )
    })
    .await
}

/// `DELETE /v1/customers/{id}`: a soft delete; a deleted customer is answered as it is.
pub async fn delete(
    write: &mut Write,
    target: Target<'_>,
    origin: &Origin,
) -> Result<Reply, ApiError> {
    change(write, target, origin, EventType::Deleted, |current| {
        Ok((!current.is_deleted())
            .then(|| current.next_version(now(), |next| next.status = CustomerStatus::Deleted)))
    })
    .await
}

/// `POST /v1/customers/{id}/activate`: pending → active; an active customer is answered as it
/// is, a deleted one stays deleted (409).
pub async fn activate(
    write: &mut Write,
    target: Target<'_>,
    origin: &Origin,
) -> Result<Reply, ApiError> {
    change(
        write,
        target,
        origin,
        EventType::Activated,
        |current| match current.status {
            CustomerStatus::Pending => {
                Ok(Some(current.next_version(now(), |next| {
                    next.status = CustomerStatus::Active
                })))
            }
            CustomerStatus::Active => Ok(None),
            CustomerStatus::Deleted => Err(ApiError::CustomerDeleted),
        },
    )
    .await
}

/// Changes one customer: reads it, checks `If-Match`, lets `decide` say what its next version
/// is (`None`: no change, answered with the customer as it is), and writes that with a
/// compare-and-set on the version. A writer that got there first makes the round start again
/// from a fresh read; after [`OPTIMISTIC_ROUNDS`] lost rounds the row is locked, so the write
/// always makes progress. The order of the answers is 404, then 412, then `decide`'s. A write
/// records its event (`kind`) in its own statement; an answer that writes nothing records none.
///
/// The target's hint — what the claim of the request's idempotency key read in its own
/// statement (possibly from before a wait on the key), or what this instance remembers of the
/// customer (possibly older than another instance's write) — is only a guess: a write that wins
/// its compare-and-set relies on it, and any other answer is given from a fresh read.
async fn change(
    write: &mut Write,
    target: Target<'_>,
    origin: &Origin,
    kind: EventType,
    decide: impl Fn(&Customer) -> Result<Option<Customer>, ApiError>,
) -> Result<Reply, ApiError> {
    let Target {
        id,
        mut hint,
        if_match,
        recent,
    } = target;
    let id = id.ok_or_else(ApiError::not_found)?;
    let decide = |current: &Customer| {
        if_match.check(current.version)?;
        decide(current)
    };
    let tenant = write.tenant().clone();
    let saver = write.saver();
    for _ in 0..OPTIMISTIC_ROUNDS {
        let (current, fresh) = match hint.take() {
            Some(read) => (read, false),
            None => {
                let read = repo::find(write.conn(), &tenant, &id).await?;
                if let Some(read) = &read {
                    recent.remember(&tenant, read);
                }
                (read, true)
            }
        };
        let decided = current
            .ok_or_else(ApiError::not_found)
            .and_then(|current| Ok((decide(&current)?, current)));
        let (next, current) = match decided {
            Ok(decided) => decided,
            Err(e) if fresh => return Err(e),
            Err(_) => continue,
        };
        let Some(next) = next else {
            if fresh {
                return Ok(reply(&current, StatusCode::OK));
            }
            continue;
        };
        let reply = reply(&next, StatusCode::OK);
        let event = origin.event(kind, Some(&current), &next, &reply.body);
        let (save, event) = (saver.save(&reply), EventRecord(event.as_ref()));
        let written = repo::update(write.conn(), &save, &event, current.version, &next).await?;
        if written.saved {
            write.saved(&reply);
        }
        if written.written {
            recent.remember(&tenant, &next);
            return Ok(reply);
        }
    }
    // Still losing to other writers: lock the row (in a transaction on the same connection, a
    // savepoint when the write already has one) so that this write makes progress.
    let mut locked = write.conn().begin().await?;
    repo::lock(&mut *locked, &tenant, &id).await?;
    let current = repo::find(&mut *locked, &tenant, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let Some(next) = decide(&current)? else {
        locked.commit().await?;
        return Ok(reply(&current, StatusCode::OK));
    };
    let reply = reply(&next, StatusCode::OK);
    let event = origin.event(kind, Some(&current), &next, &reply.body);
    let (save, event) = (saver.save(&reply), EventRecord(event.as_ref()));
    let written = repo::update(&mut locked, &save, &event, current.version, &next).await?;
    if !written.written {
        return Err(ApiError::internal(
            "a locked write lost its compare-and-set",
        ));
    }
    locked.commit().await?;
    if written.saved {
        write.saved(&reply);
    }
    recent.remember(&tenant, &next);
    Ok(reply)
}

/// The reply that shows `customer`, with the ETag of its version.
fn reply(customer: &Customer, status: StatusCode) -> Reply {
    Reply {
        status,
        body: customer.to_json(),
        location: None,
        etag: Some(customer.version.etag()),
    }
}
