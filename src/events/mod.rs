//! The event core (docs/events.md): a layer below the resources that stores and reads events
//! and knows nothing of customers. A customer write hands it what its event holds
//! (`model::Change`, made in `customers::events`) and records the event in its own statement
//! (`customers::repo`, binding `model::EventRecord`). Here: the event object (`model`), the
//! reads of a history, the feed and around an instant (`repo`), the feed's route (`handlers`),
//! and the optional retention (`retention`). What follows the committed events (the JetStream
//! relay, the webhook dispatcher) are consumers above it, in `crate::consumers`.

pub mod handlers;
pub mod model;
pub mod repo;
pub mod retention;

use actix_web::web;

pub use model::{Change, EventRecord, EventType, NewEvent, Origin};

use crate::request_context;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(request_context::resource("/v1/events").route(web::get().to(handlers::feed)));
}
