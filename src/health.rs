//! Operational endpoints: liveness, readiness and metrics.

use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::{web, HttpResponse};

use crate::auth::Gatekeeper;
use crate::consumers::relay::figures::{self, FiguresCache};
use crate::error::ApiError;
use crate::request_context;
use crate::state::AppState;

/// The probes and `/metrics`, on one listener.
pub fn routes(cfg: &mut web::ServiceConfig) {
    probes(cfg);
    metrics_route(cfg);
}

/// Liveness and readiness only: `/metrics` is on a listener of its own
/// (`server.metrics_address`).
pub fn probes(cfg: &mut web::ServiceConfig) {
    // Resources (not bare routes), so that another method is 405 with `Allow`, not 404.
    cfg.service(request_context::resource("/healthz").route(web::get().to(healthz)))
        .service(request_context::resource("/readyz").route(web::get().to(readyz)));
}

pub fn metrics_route(cfg: &mut web::ServiceConfig) {
    cfg.service(request_context::resource("/metrics").route(web::get().to(metrics)));
}

/// Set once the instance is leaving (a stop signal arrived): from then on `/readyz` answers 503
/// `draining` while every other route is served as before, for `server.drain_delay`, so that a
/// load balancer takes the instance out of rotation before it stops accepting connections.
/// Shared as `web::Data` (an `Arc`) between the routes and the signal handler.
#[derive(Default)]
pub struct Draining(AtomicBool);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The process is alive; touches nothing else, so it answers even when the database does not.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// The database answers and every migration is applied. NATS is not needed to serve: when it
/// is unreachable the body says so, and events wait in the database. When events are published,
/// `events.undeliverable` counts the events set aside because JetStream refused them (left out
/// if that count cannot be read now).
///
/// Keys fetched from an identity provider (`auth.jwks_url`) must have been loaded once: before
/// that no token could be verified.
async fn readyz(
    state: web::Data<AppState>,
    gate: web::Data<Gatekeeper>,
    draining: web::Data<Draining>,
) -> Result<HttpResponse, ApiError> {
    if draining.is_set() {
        return Err(ApiError::Draining);
    }
    if gate.keys.is_ready() && crate::db::is_ready(&state.pool).await {
        let mut events = serde_json::json!({"publishing": state.publishing.get().as_str()});
        if state.publishing.is_enabled() {
            if let Ok(n) = figures::undeliverable(&state.pool).await {
                events["undeliverable"] = n.into();
            }
        }
        Ok(HttpResponse::Ok().json(serde_json::json!({
            "status": "ready",
            "events": events,
            "keys": gate.keys.status(),
        })))
    } else {
        Err(ApiError::Unavailable)
    }
}

async fn metrics(
    state: web::Data<AppState>,
    figures: web::Data<FiguresCache>,
    gate: web::Data<Gatekeeper>,
) -> HttpResponse {
    // The database's figures are cached (`FiguresCache`): a scrape does not count the backlog.
    // Left out when the database did not answer.
    let figures = figures
        .get(&state.pool, state.publishing.is_enabled())
        .await
        .map(figures::exposition)
        .unwrap_or_default();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render(&state.pool) + &figures + &keys_metrics(&gate))
}

/// The fetched keys' lines: this service's own, like the backlog (a process may run several).
fn keys_metrics(gate: &Gatekeeper) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&gate.keys.metric_families(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}
