//! Webhooks: signed HTTP deliveries of the committed events to partners' endpoints
//! (docs/webhooks.md). The resource: its routes, its endpoints and their secrets, the delivery
//! log. What delivers, the dispatcher and the senders, is a consumer of the committed events
//! beside the JetStream relay (`consumers::dispatcher`); it knows nothing of customers.
//!
//! - `handlers` → `service` → `repo`: the routes (`/v1/webhooks…`, scope `webhooks:manage`).
//! - `log`: the delivery log, retry and recover.
//! - `destination`: where deliveries may go; `secret`: secrets, their encryption, signatures.

pub mod destination;
pub mod handlers;
mod input;
pub mod log;
pub mod model;
mod repo;
pub mod secret;
pub mod service;

use actix_web::web;
use tokio::sync::Notify;

use crate::configuration::WebhooksSettings;
use crate::request_context;
use destination::Allowance;
use secret::SecretBox;

/// What the routes and the background tasks share.
pub struct Webhooks {
    pub settings: WebhooksSettings,
    pub secrets: SecretBox,
    /// Awaited by the dispatcher (`consumers::dispatcher`).
    pub(crate) dispatch_wake: Notify,
    /// Awaited by the senders.
    pub(crate) send_wake: Notify,
}

impl Webhooks {
    pub fn new(settings: WebhooksSettings) -> Self {
        Self {
            secrets: SecretBox::new(settings.secrets_key.expose()),
            settings,
            dispatch_wake: Notify::new(),
            send_wake: Notify::new(),
        }
    }

    pub fn allowance(&self) -> Allowance {
        Allowance {
            http: self.settings.allow_http,
            private_networks: self.settings.allow_private_networks,
        }
    }

    /// After a write that recorded events committed: the dispatcher looks at once.
    pub fn wake_dispatcher(&self) {
        self.dispatch_wake.notify_one();
    }

    /// Deliveries are due now (made, retried, or a slot freed).
    pub fn wake_senders(&self) {
        self.send_wake.notify_one();
    }
}

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
