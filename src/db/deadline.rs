//! A bound on the database part of a request, kept on the client side, and the request's slot
//! of its tenant ([`crate::tenant_limit`]).
//!
//! `statement_timeout` is enforced by the server, so it ends nothing when the server itself has
//! stalled (a frozen host, a network that drops packets): the statement would wait for as long
//! as the TCP connection lives. From the moment a request first asks for a connection
//! ([`super::acquire`]), this middleware gives it [`bound`] to answer; past that it answers 503
//! and drops the request's work, and with it the connection it held, which is then closed, not
//! returned (see [`released`]). A write cut off this way was not acknowledged, and its keyed
//! retry settles it, as for any other lost connection.
//!
//! A request is cut for one of two reasons, told apart by a probe on a new connection of its
//! own (bounded by [`PROBE_TIMEOUT`]): the server stopped answering (the probe gets no answer
//! either: every pooled connection is condemned, [`super::connection_lost`]), or the request
//! was merely slow (several statements, each within `statement_timeout`: the probe answers, and
//! only the cut connection goes).

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::ResponseError;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::PgPool;

use super::hosts::PROBE_TIMEOUT;
use crate::configuration::DatabaseSettings;
use crate::error::ApiError;
use crate::tenant::Tenant;
use crate::tenant_limit::{Refused, Slot, TenantLimits};

/// What the middleware needs, made once per service.
#[derive(Clone)]
pub struct Deadline {
    bound: Duration,
    limits: Arc<TenantLimits>,
    pool: PgPool,
    home: Option<tokio::runtime::Handle>,
}

impl Deadline {
    /// Made on the runtime that builds the service: the one whose I/O driver the pool's
    /// connections are registered with (see [`home`]).
    pub fn new(settings: &DatabaseSettings, pool: PgPool) -> Self {
        // Only a multi-threaded runtime drives its I/O by itself; a current-thread one (a test's)
        // would serve a worker's connection only while its own thread waits, so the workers
        // keep their own then.
        let home = tokio::runtime::Handle::try_current()
            .ok()
            .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        Self {
            bound: bound(settings),
            limits: TenantLimits::from_settings(settings),
            pool,
            home,
        }
    }
}

/// One request's part: when its clock started, its tenant's slot, the connections it took.
struct InFlight {
    started: Cell<Option<Instant>>,
    /// The request's tenant, told by authentication once the token is verified
    /// ([`serving`]): every route that reaches the database authenticates its caller first.
    tenant: RefCell<Option<Tenant>>,
    limits: Arc<TenantLimits>,
    slot: RefCell<Option<Slot>>,
    /// Set when its tenant's queue refused it: the answer is then 429, not 503.
    refused: Cell<bool>,
    /// When each connection it took was opened (the pool's metadata gives ages only).
    taken: RefCell<Vec<Instant>>,
    /// The service's own runtime, which outlives every HTTP worker ([`home`]).
    home: Option<tokio::runtime::Handle>,
}

tokio::task_local! {
    static IN_FLIGHT: Rc<InFlight>;
}

/// How long a request may take from its first acquire: `acquire_timeout + statement_timeout`,
/// less a tenth of that (at most 0.5 s), so that the answer is out before that sum.
pub fn bound(settings: &DatabaseSettings) -> Duration {
    let sum = settings.acquire_timeout + settings.statement_timeout;
    sum - (sum / 10).min(Duration::from_millis(500))
}

/// Starts the clock of the current request, once, and takes its tenant's slot (called by
/// `db::acquire`, after the request was authenticated), waiting for one until `until` (the
/// acquire's own bound). A tenant whose slots are all held waits in its queue: past `until` it
/// gets `PoolTimedOut`, the 503 of a pool without a free connection; with its queue full it is
/// refused at once, reported as `PoolTimedOut` here and answered 429 by the middleware.
pub(super) async fn start(until: tokio::time::Instant) -> Result<(), sqlx::Error> {
    // What the request needs is taken out of the task-local synchronously: the future of
    // `acquire` must stay `Send`, and the request's part is not.
    let wanted = IN_FLIGHT.try_with(|in_flight| {
        if in_flight.started.get().is_none() {
            in_flight.started.set(Some(Instant::now()));
        }
        if in_flight.slot.borrow().is_some() {
            return None;
        }
        // Not a tenant's request (none reaches here today): nothing to bound.
        let tenant = in_flight.tenant.borrow().clone()?;
        Some((tenant, in_flight.limits.clone()))
    });
    let Ok(Some((tenant, limits))) = wanted else {
        return Ok(());
    };
    match limits.enter(&tenant, until).await {
        Ok(slot) => {
            let _ = IN_FLIGHT.try_with(|in_flight| *in_flight.slot.borrow_mut() = Some(slot));
            Ok(())
        }
        Err(Refused::TimedOut) => Err(sqlx::Error::PoolTimedOut),
        Err(Refused::QueueFull) => {
            tracing::warn!("a tenant's queue for its connections is full");
            let _ = IN_FLIGHT.try_with(|in_flight| in_flight.refused.set(true));
            Err(sqlx::Error::PoolTimedOut)
        }
    }
}

/// Tells the current request's bound which tenant it serves (called by authentication, in the
/// request's task, once the caller's token is verified); outside a request it does nothing.
pub fn serving(tenant: &Tenant) {
    let _ = IN_FLIGHT.try_with(|in_flight| *in_flight.tenant.borrow_mut() = Some(tenant.clone()));
}

/// Notes a connection handed to the current request (the pool's `before_acquire` and
/// `after_connect`, which run in the request's task).
pub(super) fn taken(meta: &PoolConnectionMetadata) {
    let _ = IN_FLIGHT.try_with(|in_flight| {
        if let Some(opened) = Instant::now().checked_sub(meta.age) {
            in_flight.taken.borrow_mut().push(opened);
        }
    });
}

/// The runtime on which the current request opens its database connections: the service's
/// own (the one `main` runs, which lives until the process ends), not the HTTP worker's that
/// serves the request. Each actix worker runs a runtime of its own, and a socket belongs to the
/// I/O driver of the runtime it was opened on; the pool is shared by every worker, so a
/// connection opened by a request on worker A is handed to requests on worker B. At a stop
/// signal a worker without connections stops at once and its runtime is dropped, which fails
/// every socket registered with it: a request still in flight on another worker, holding such
/// a connection, lost it in mid-statement and was answered 503 (issue 21). None outside a
/// request, or on a current-thread runtime (see [`Deadline::new`]).
pub(super) fn home() -> Option<tokio::runtime::Handle> {
    IN_FLIGHT
        .try_with(|in_flight| in_flight.home.clone())
        .ok()
        .flatten()
}

/// Connections of cut requests, by when they were opened, with when they were cut.
static CUT: Mutex<Vec<(Instant, Instant)>> = Mutex::new(Vec::new());

/// How close two opening instants computed from ages must be to be taken for one connection.
const SAME_CONNECTION: Duration = Duration::from_millis(2);

/// Whether a connection given back to the pool may be kept (the pool's `after_release`): not
/// one that a cut request held, which may be in the middle of a statement.
pub(super) fn released(meta: &PoolConnectionMetadata) -> bool {
    let mut cut = CUT.lock().expect("the cut connections");
    if cut.is_empty() {
        return true;
    }
    let now = Instant::now();
    // A cut connection is released as soon as its request is dropped: old entries are stale.
    cut.retain(|(_, at)| now.duration_since(*at) < Duration::from_secs(60));
    let Some(opened) = now.checked_sub(meta.age) else {
        return true;
    };
    let before = cut.len();
    cut.retain(|(o, _)| {
        let apart = if *o > opened {
            *o - opened
        } else {
            opened - *o
        };
        apart > SAME_CONNECTION
    });
    cut.len() == before
}

pub async fn limit<B: MessageBody + 'static>(
    deadline: Deadline,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let bound = deadline.bound;
    let in_flight = Rc::new(InFlight {
        started: Cell::new(None),
        tenant: RefCell::new(None),
        limits: deadline.limits.clone(),
        slot: RefCell::new(None),
        refused: Cell::new(false),
        taken: RefCell::new(Vec::new()),
        home: deadline.home.clone(),
    });
    let mut work = Box::pin(IN_FLIGHT.scope(in_flight.clone(), next.call(req)));
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let finished = poll_fn(|cx| {
        if let Poll::Ready(result) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        if timer.is_none() {
            if let Some(at) = in_flight.started.get() {
                timer = Some(Box::pin(tokio::time::sleep_until((at + bound).into())));
            }
        }
        match timer.as_mut().map(|t| t.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    })
    .await;
    match finished {
        // Refused by its tenant's queue: the 503 the handler made of it becomes the 429.
        Some(Ok(response)) if in_flight.refused.get() => {
            let refused = ApiError::RateLimited {
                retry_after_secs: 1,
            };
            Ok(response
                .into_response(refused.error_response())
                .map_into_right_body())
        }
        Some(result) => result.map(ServiceResponse::map_into_left_body),
        None => {
            tracing::warn!(
                bound_ms = bound.as_millis() as u64,
                "the database did not answer within the request's bound"
            );
            // Mark its connections first, then drop the work that holds them: each is closed
            // when the pool takes it back, instead of being pinged (which would wait for the
            // statement it is in) and handed out again.
            let taken = in_flight.taken.take();
            let now = Instant::now();
            CUT.lock()
                .expect("the cut connections")
                .extend(taken.into_iter().map(|opened| (opened, now)));
            drop(work);
            // Was it the server? Asked on a connection of its own, in the background.
            let pool = deadline.pool.clone();
            tokio::spawn(async move {
                if !super::server_answers(&pool, PROBE_TIMEOUT).await {
                    tracing::warn!("the database server does not answer a new connection");
                    super::connection_lost();
                }
            });
            // Rendered by the request context around this middleware, with the request id.
            Err(ApiError::Unavailable.into())
        }
    }
}
