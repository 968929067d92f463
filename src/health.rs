//! Operational endpoints: liveness, readiness and metrics.

use actix_web::{web, HttpResponse};

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
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if crate::db::is_ready(&state.pool).await {
        Ok(HttpResponse::Ok().json(serde_json::json!({
            "status": "ready",
            "events": {"publishing": state.publishing.get().as_str()},
        })))
    } else {
        Err(ApiError::Unavailable)
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // The backlog is counted at scrape time, only when events are published at all.
    let backlog = if state.publishing.is_enabled() {
        crate::events::relay::store::backlog(&state.pool).await.ok()
    } else {
        None
    };
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render(&state.pool, backlog))
}
