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

/// The database answers and every migration is applied.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if crate::db::is_ready(&state.pool).await {
        Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
    } else {
        Err(ApiError::Unavailable)
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render(&state.pool))
}
