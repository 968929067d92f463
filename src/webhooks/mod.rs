//! Webhooks: signed HTTP deliveries of the committed events to partners' endpoints
//! (docs/webhooks.md). The resource: its routes, its endpoints and their secrets, the delivery
//! log. What delivers, the dispatcher and the senders, is a consumer of the committed events
//! beside the JetStream relay (`consumers::dispatcher`); it knows nothing of customers.
//!
//! - `handlers` → `service` → `repo`: the routes (`/v1/webhooks…`, scope `webhooks:manage`).
//! - `log`: the delivery log, retry and recover.
//! - `destination`: where deliveries may go; `secret`: secrets, their encryption, signatures;
//!   `reseal`: sealing them again after `webhooks.secrets_key` changed.
//! - `shared`: what the routes and the dispatcher share (settings, secrets, wake-ups).

pub mod destination;
pub mod handlers;
mod input;
pub mod log;
pub mod model;
mod repo;
pub mod reseal;
pub mod secret;
pub mod service;
pub mod shared;

use actix_web::web;

use crate::request_context;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        request_context::resource("/v1/webhooks")
            .route(web::post().to(handlers::create))
            .route(web::get().to(handlers::list)),
    )
    .service(
        request_context::resource("/v1/webhooks/{id}")
            .route(web::get().to(handlers::retrieve))
            .route(web::patch().to(handlers::update))
            .route(web::delete().to(handlers::delete)),
    )
    .service(
        request_context::resource("/v1/webhooks/{id}/secret")
            .route(web::get().to(handlers::secret)),
    )
    .service(
        request_context::resource("/v1/webhooks/{id}/rotate-secret")
            .route(web::post().to(handlers::rotate)),
    )
    .service(
        request_context::resource("/v1/webhooks/{id}/recover")
            .route(web::post().to(handlers::recover)),
    )
    .service(
        request_context::resource("/v1/webhooks/{id}/deliveries")
            .route(web::get().to(log::deliveries)),
    )
    .service(
        request_context::resource("/v1/webhooks/{id}/deliveries/{deliveryId}/retry")
            .route(web::post().to(log::retry)),
    );
}
