//! What every handler shares.

use std::sync::Arc;

use actix_web::web;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::configuration::{EventsSettings, IdempotencySettings};
use crate::consumers::relay::PublishingStatus;
use crate::customers::coalesce::Coalescer;
use crate::customers::recent::Recent;
use crate::pagination::Cursors;

pub struct AppState {
    pub pool: PgPool,
    pub idempotency: IdempotencySettings,
    pub events: EventsSettings,
    /// Registered on its own as well: the event core's feed takes it (and the pool), not this
    /// state, which names the layers above the core.
    pub cursors: web::Data<Cursors>,
    /// Wakes the event relay after a write commits, so that it publishes at once.
    pub relay_wake: Arc<Notify>,
    /// Whether the relay reaches NATS, for `/readyz`.
    pub publishing: PublishingStatus,
    /// Customers this instance saw lately: a write's guess of the current version.
    pub recent: Recent,
    /// GETs by id, coalesced per tenant while one is in flight (`database.coalesce_reads`).
    pub reads: Coalescer,
    /// Webhooks: their settings and secrets, and the wake-ups of the dispatcher and senders.
    pub webhooks: Arc<crate::webhooks::shared::Webhooks>,
}
