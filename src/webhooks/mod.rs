//! Webhooks: signed HTTP deliveries of the committed events to partners' endpoints
//! (docs/webhooks.md). A second consumer of the stored events beside the JetStream relay: it
//! reads `customer_events` rows through SQL of its own and knows nothing of customers.
//!
//! - `handlers` → `service` → `repo`: the routes (`/v1/webhooks…`, scope `webhooks:manage`).
//! - `dispatch`: committed events → deliveries, from its own position in the feed.
//! - `send`: due deliveries → signed attempts, bounded per webhook and overall.
//! - `destination`: where deliveries may go; `secret`: secrets, their encryption, signatures.

pub mod destination;
mod dispatch;
pub mod handlers;
mod input;
pub mod log;
pub mod model;
mod repo;
pub mod secret;
mod send;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::configuration::WebhooksSettings;
use crate::request_context;
use destination::Allowance;
use secret::SecretBox;

/// What the routes and the background tasks share.
pub struct Webhooks {
    pub settings: WebhooksSettings,
    pub secrets: SecretBox,
    dispatch_wake: Notify,
    send_wake: Notify,
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

/// How often and how much the log's retention deletes (the idempotency sweeper's pace).
pub struct Sweep {
    pub interval: Duration,
    pub batch: i64,
}

/// Starts the dispatcher, the senders and the log's retention; they stop when `stop` is
/// cancelled. `round_limit` bounds a dispatch round, and the recording of an attempt's outcome
/// (a claim's lease is the attempt's timeout plus it).
pub fn spawn(
    pool: PgPool,
    hooks: Arc<Webhooks>,
    round_limit: Duration,
    sweep: Sweep,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let dispatcher = tokio::spawn(dispatch::run(
        pool.clone(),
        hooks.clone(),
        round_limit,
        stop.clone(),
    ));
    let retention = hooks.settings.log_retention;
    let sweeper = tokio::spawn(sweep_log(pool.clone(), retention, sweep, stop.clone()));
    let senders = tokio::spawn(send::run(pool, hooks, round_limit, stop));
    tokio::spawn(async move {
        let _ = dispatcher.await;
        let _ = senders.await;
        let _ = sweeper.await;
    })
}

/// Deletes ended deliveries past `webhooks.log_retention`, in bounded batches.
async fn sweep_log(pool: PgPool, retention: Duration, sweep: Sweep, stop: CancellationToken) {
    let pool = &pool;
    let batch = sweep.batch;
    crate::db::sweep::every(
        "webhook deliveries past the log retention",
        sweep.interval,
        batch,
        stop,
        move || async move {
            repo::outbox::delete_old_deliveries(pool, retention.as_secs_f64(), batch).await
        },
    )
    .await;
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
