//! Change history and events (docs/events.md): every change to a customer is recorded as an
//! event in its own transaction, by the customer writes (`customers::repo`). Here: the event
//! object (`model`), the reads of the history, the feed and as-of (`repo`, `as_of`), their
//! routes (`handlers`), and the relay that publishes committed events to NATS JetStream
//! (`relay`).

pub mod as_of;
pub mod handlers;
pub mod model;
pub mod relay;
pub mod repo;
pub mod retention;

use actix_web::web;

pub use model::{EventRecord, EventType, NewEvent, Origin};

use crate::request_context;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        request_context::resource("/v1/customers/{id}/events")
            .route(web::get().to(handlers::history)),
    )
    .service(request_context::resource("/v1/events").route(web::get().to(handlers::feed)));
}
