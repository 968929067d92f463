//! A bound on the database part of a request, kept on the client side.
//!
//! `statement_timeout` is enforced by the server, so it ends nothing when the server itself has
//! stalled (a frozen host, a network that drops packets): the statement would wait for as long
//! as the TCP connection lives. From the moment a request first asks for a connection
//! ([`super::acquire`]), this middleware gives it [`bound`] to answer; past that it answers 503
//! and drops the request's work, and with it the connection (which is then closed, not
//! returned: see [`super::retire_older_connections`]). A write cut off this way was not
//! acknowledged, and its keyed retry settles it, as for any other lost connection.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use crate::configuration::DatabaseSettings;
use crate::error::ApiError;

tokio::task_local! {
    static STARTED: Rc<Cell<Option<Instant>>>;
}

/// How long a request may take from its first acquire: `acquire_timeout + statement_timeout`,
/// less a tenth of that (at most 0.5 s), so that the answer is out before that sum.
pub fn bound(settings: &DatabaseSettings) -> Duration {
    let sum = settings.acquire_timeout + settings.statement_timeout;
    sum - (sum / 10).min(Duration::from_millis(500))
}

/// Starts the clock of the current request, once (called by `db::acquire`).
pub(super) fn start() {
    let _ = STARTED.try_with(|started| {
        if started.get().is_none() {
            started.set(Some(Instant::now()));
        }
    });
}

pub async fn limit<B: MessageBody + 'static>(
    bound: Duration,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let started = Rc::new(Cell::new(None));
    let mut work = Box::pin(STARTED.scope(started.clone(), next.call(req)));
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let finished = poll_fn(|cx| {
        if let Poll::Ready(result) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        if timer.is_none() {
            if let Some(at) = started.get() {
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
        Some(result) => result,
        None => {
            tracing::warn!(
                bound_ms = bound.as_millis() as u64,
                "the database did not answer within the request's bound"
            );
            // Condemn the connection first, then drop the work that holds it.
            super::connection_lost();
            drop(work);
            // Rendered by the request context around this middleware, with the request id.
            Err(ApiError::Unavailable.into())
        }
    }
}
