//! The customer writes — create, update (PATCH), delete and activate — as plain async functions
//! over a [`Write`]: read, decide, validate, write, top to bottom. Handlers extract and render;
//! the rules of each route are here, and the compare-and-set that keeps concurrent writers
//! from losing each other's changes is in one place, [`change`] (its write in one place,
//! [`Round::run`]). A write hands back the version it wrote ([`Done`]) instead of remembering
//! it: only the handler knows when the write has committed.

use actix_web::http::StatusCode;
use serde_json::{Map, Value};
use sqlx::{Connection, PgConnection};

use super::domain::{CustomerStatus, IfMatch};
use super::events;
use super::input::BodyKind;
use super::model::{Customer, ListedCustomer};
use super::patch::{self, Outcome};
use super::recent::Recent;
use super::render::Spans;
use super::repo;
use crate::clock::now;
use crate::error::ApiError;
use crate::events::{EventRecord, EventType, Origin};
use crate::idempotency::{Reply, Saver, Write};
use crate::ids::CustomerId;

/// Optimistic rounds before a write locks the row to be sure of making progress.
const OPTIMISTIC_ROUNDS: usize = 3;

/// What a write of one customer did: its reply, and the version it wrote, if it wrote one.
/// The handler remembers that version only once the write has committed
/// ([`Recent::after_write`]): until then it is a version the database may never hold.
pub struct Done {
    pub reply: Reply,
    pub written: Option<ListedCustomer>,
}

impl Done {
    fn answer(reply: Reply) -> Self {
        Done {
            reply,
            written: None,
        }
    }

    /// The reply for [`Write::finish`], and the version written.
    pub fn split(
        outcome: Result<Done, ApiError>,
    ) -> (Result<Reply, ApiError>, Option<ListedCustomer>) {
        match outcome {
            Ok(Done { reply, written }) => (Ok(reply), written),
            Err(e) => (Err(e), None),
        }
    }
}

/// `POST /v1/customers`: the body is a merge patch onto an empty customer, validated as a whole.
pub async fn create(
    write: &mut Write,
    origin: &Origin,
    body: &Map<String, Value>,
) -> Result<Done, ApiError> {
    let (kind, values) = patch::new_customer(body)?;
    let (id, created_at) = CustomerId::generate();
    let mut customer = Customer::new(id, kind, values, created_at);
    let (mut reply, spans) = reply(&customer, StatusCode::CREATED);
    reply.location = Some(format!("/v1/customers/{}", customer.id.as_str()));
    let event = origin.event(EventType::Created, || {
        events::change(None, &customer, &reply.body)
    });
    let saver = write.saver();
    let (save, event) = (saver.save(&reply), EventRecord(event.as_ref()));
    let written = repo::insert(write.conn(), &save, &event, &customer).await?;
    if written.saved {
        write.saved(&reply);
    }
    customer.xmin = written.xmin;
    let written = customer.into_shown(&reply.body, &spans);
    Ok(Done {
        reply,
        written: Some(written),
    })
}

/// The customer a write of one customer is about, as the request names it.
pub struct Target<'a> {
    /// `None` for an id that cannot exist (answered 404 without a query).
    pub id: Option<CustomerId>,
    /// A guess of the customer as it is (see [`change`]): what the claim of the request's
    /// idempotency key read along with it, or what this instance remembers of it.
    pub hint: Option<Option<Customer>>,
    pub if_match: IfMatch,
    /// Customers this instance saw lately; the write adds what it reads (what it writes is added
    /// by the handler, once committed).
    pub recent: &'a Recent,
}

/// `PATCH /v1/customers/{id}`: the body merged into the stored customer (RFC 7396), the result
/// validated as a whole; a patch that changes nothing writes nothing.
pub async fn update(
    write: &mut Write,
    target: Target<'_>,
    origin: &Origin,
    body: &Map<String, Value>,
) -> Result<Done, ApiError> {
    change(write, target, origin, EventType::Updated, |current| {
        if current.is_deleted() {
            return Err(ApiError::CustomerDeleted);
        }
        let document = current.writable_document();
        Ok(
            match patch::apply_to(
                document,
                |doc| current.is_document(doc),
                body,
                BodyKind::Patch,
            )? {
                Outcome::Unchanged => None,
                Outcome::Changed(values) => Some(current.next_with_values(now(), values)),
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
) -> Result<Done, ApiError> {
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
) -> Result<Done, ApiError> {
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
/// compare-and-set on the version and the transaction that wrote it. A writer that got there
/// first makes the round start again from a fresh read; after [`OPTIMISTIC_ROUNDS`] lost rounds
/// the row is locked, so the write always makes progress. The order of the answers is 404, then
/// 412, then `decide`'s. A write records its event (`kind`) in its own statement; an answer that
/// writes nothing records none.
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
) -> Result<Done, ApiError> {
    let Target {
        id,
        hint,
        if_match,
        recent,
    } = target;
    let id = id.ok_or_else(ApiError::not_found)?;
    let round = Round {
        saver: write.saver(),
        origin,
        kind,
        decide: |current: &Customer| {
            if_match.check(current.version)?;
            decide(current)
        },
    };
    let tenant = write.tenant().clone();
    // A guess that does not say which transaction wrote it cannot be checked: read instead.
    let mut guess = hint.filter(|guess| guess.as_ref().is_none_or(|c| c.xmin.is_some()));
    for _ in 0..OPTIMISTIC_ROUNDS {
        let (current, fresh) = match guess.take() {
            Some(guess) => (guess, false),
            None => {
                let read = repo::find(write.conn(), &tenant, &id).await?;
                if let Some(read) = &read {
                    recent.remember(&tenant, read);
                }
                (read, true)
            }
        };
        match round.run(write.conn(), current).await? {
            Attempt::Written(done, saved) => {
                if saved {
                    write.saved(&done.reply);
                }
                return Ok(done);
            }
            // A guess is not enough to answer with: read, and decide again.
            Attempt::Answered(_) | Attempt::Refused(_) if !fresh => continue,
            Attempt::Answered(done) => return Ok(done),
            Attempt::Refused(e) => return Err(e),
            Attempt::Lost => continue,
        }
    }
    // Still losing to other writers: lock the row (in a transaction on the same connection, a
    // savepoint when the write already has one) so that this write makes progress.
    let mut locked = write.conn().begin().await?;
    repo::lock(&mut *locked, &tenant, &id).await?;
    let current = repo::find(&mut *locked, &tenant, &id).await?;
    match round.run(&mut locked, current).await? {
        Attempt::Written(done, saved) => {
            locked.commit().await?;
            if saved {
                write.saved(&done.reply);
            }
            Ok(done)
        }
        Attempt::Answered(done) => {
            locked.commit().await?;
            Ok(done)
        }
        Attempt::Refused(e) => Err(e),
        Attempt::Lost => Err(ApiError::internal(
            "a locked write lost its compare-and-set",
        )),
    }
}

/// What one round of [`change`] needs besides the customer it starts from.
struct Round<'a, D> {
    saver: Saver,
    origin: &'a Origin,
    kind: EventType,
    decide: D,
}

/// How one round of [`change`] ended.
enum Attempt {
    /// The next version was written (and the reply stored under the key, when `true`).
    Written(Done, bool),
    /// Nothing to write: the customer as it is.
    Answered(Done),
    /// The customer is missing, or `decide` refused (404, 409, 412).
    Refused(ApiError),
    /// Another writer changed the customer since `current` was read.
    Lost,
}

impl<D: Fn(&Customer) -> Result<Option<Customer>, ApiError>> Round<'_, D> {
    /// Decides on `current` and writes the next version it makes with a compare-and-set on
    /// `current`'s version and writing transaction, with its event and (for a keyed write) its
    /// stored reply in the same statement.
    async fn run(
        &self,
        conn: &mut PgConnection,
        current: Option<Customer>,
    ) -> Result<Attempt, ApiError> {
        let Some(current) = current else {
            return Ok(Attempt::Refused(ApiError::not_found()));
        };
        let next = match (self.decide)(&current) {
            Ok(Some(next)) => next,
            Ok(None) => {
                return Ok(Attempt::Answered(Done::answer(
                    reply(&current, StatusCode::OK).0,
                )))
            }
            Err(e) => return Ok(Attempt::Refused(e)),
        };
        let Some(expected) = current.xmin.map(|xmin| (current.version, xmin)) else {
            return Err(ApiError::internal("a customer read without its xmin"));
        };
        let (reply, spans) = reply(&next, StatusCode::OK);
        let event = self.origin.event(self.kind, || {
            events::change(Some(&current), &next, &reply.body)
        });
        let (save, event) = (self.saver.save(&reply), EventRecord(event.as_ref()));
        let written = repo::update(conn, &save, &event, expected, &next).await?;
        let Some(xmin) = written.xmin else {
            return Ok(Attempt::Lost);
        };
        let written_version = Customer {
            xmin: Some(xmin),
            ..next
        };
        let written_version = written_version.into_shown(&reply.body, &spans);
        Ok(Attempt::Written(
            Done {
                reply,
                written: Some(written_version),
            },
            written.saved,
        ))
    }
}

/// The reply that shows `customer`, with the ETag of its version, and where the customer's
/// JSON members are in its body.
fn reply(customer: &Customer, status: StatusCode) -> (Reply, Spans) {
    let (body, spans) = customer.to_json_spans();
    let reply = Reply {
        status,
        body,
        location: None,
        etag: Some(customer.version.etag()),
    };
    (reply, spans)
}
