//! The customers resource: routes, request handling, validation, merge patch and SQL.
//!
//! A PATCH travels `handlers::update` → `patch::apply` (merge + `validation`) →
//! `repo::update_fields` (compare-and-set on the version).

pub mod cursor;
pub mod handlers;
pub mod input;
pub mod integers;
pub mod model;
pub mod patch;
mod repo;
pub mod validation;

use actix_web::web;

use crate::request_context;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        request_context::resource("/v1/customers")
            .name("customers")
            .route(web::post().to(handlers::create))
            .route(web::get().to(handlers::list)),
    )
    .service(
        request_context::resource("/v1/customers/{id}")
            .route(web::get().to(handlers::retrieve))
            .route(web::patch().to(handlers::update))
            .route(web::delete().to(handlers::delete)),
    )
    .service(
        request_context::resource("/v1/customers/{id}/activate")
            .route(web::post().to(handlers::activate)),
    );
}
