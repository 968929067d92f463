//! Operational endpoints: liveness, readiness and metrics.

use actix_web::{web, HttpResponse};

use crate::auth::Gatekeeper;
use crate::error::ApiError;
use crate::request_context;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Resources (not bare routes), so that another method is 405 with `Allow`, not 404.
    cfg.service(request_context::resource("/healthz").route(web::get().to(healthz)))
        .service(request_context::resource("/readyz").route(web::get().to(readyz)))
        .service(request_context::resource("/metrics").route(web::get().to(metrics)));
}

/// The process is alive; touches nothing else, so it answers even when the database does not.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// The database answers and every migration is applied. NATS is not needed to serve: when it
/// is unreachable the body says so, and events wait in the database.
///
/// Keys fetched from an identity provider (`auth.jwks_url`) must have been loaded once: before
/// that no token could be verified.
async fn readyz(
    state: web::Data<AppState>,
    gate: web::Data<Gatekeeper>,
) -> Result<HttpResponse, ApiError> {
    if gate.keys.is_ready() && crate::db::is_ready(&state.pool).await {
        Ok(HttpResponse::Ok().json(serde_json::json!({
            "status": "ready",
            "events": {"publishing": state.publishing.get().as_str()},
            "keys": gate.keys.status(),
        })))
    } else {
        Err(ApiError::Unavailable)
    }
}

async fn metrics(state: web::Data<AppState>, gate: web::Data<Gatekeeper>) -> HttpResponse {
    // The backlog is counted at scrape time, only when events are published at all.
    let backlog = if state.publishing.is_enabled() {
        crate::events::relay::store::backlog(&state.pool).await.ok()
    } else {
        None
    };
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render(&state.pool, backlog) + &keys_metrics(&gate))
}

/// The fetched keys' lines: this service's own, like the backlog (a process may run several).
fn keys_metrics(gate: &Gatekeeper) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&gate.keys.metric_families(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}
