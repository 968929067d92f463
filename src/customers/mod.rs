//! The customers resource.
//!
//! A PATCH, from the route to the database and back:
//!
//! 1. `handlers::update` extracts the caller (scope), the body (`integers::canonical_body`), the
//!    `Idempotency-Key`, `If-Match` and the id (`ids::CustomerId::parse`);
//! 2. `idempotency::Write::begin_reading` claims the key and reads the customer in one
//!    statement (`repo::FindClaiming`), or answers with what the key already holds;
//! 3. `service::update` → `service::change` reads (`repo::find`) unless the claim did, checks
//!    `If-Match` and the status, merges and validates (`patch::apply` → `validation`);
//! 4. `repo::update` writes the next version with a compare-and-set, storing the reply of a
//!    keyed request in the same statement; a lost race goes back to step 3;
//! 5. `Write::finish` stores the reply (if not stored yet) and commits;
//! 6. the handler returns the reply; the request middleware adds the request id and logs.

pub mod as_of;
pub mod coalesce;
pub mod domain;
pub mod events;
pub mod handlers;
pub mod history;
pub mod input;
pub mod integers;
pub mod json_text;
pub mod list;
pub mod model;
pub mod patch;
pub mod recent;
pub mod render;
mod repo;
mod rows;
pub mod schema;
pub mod service;
mod timestamps;
pub mod validation;

use actix_web::web;
use sqlx::PgConnection;

use crate::error::ApiError;
use crate::ids::CustomerId;
use crate::request_context;
use crate::tenant::Tenant;

/// 404 unless the customer is in the tenant (deleted ones are). Reads the row as shown, so its
/// JSON members are not decoded for nothing.
pub async fn exists(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: &CustomerId,
) -> Result<(), ApiError> {
    repo::find_to_show(conn, tenant, id)
        .await?
        .map(|_| ())
        .ok_or_else(ApiError::not_found)
}

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
    )
    .service(
        request_context::resource("/v1/customers/{id}/events")
            .route(web::get().to(history::history)),
    );
}
