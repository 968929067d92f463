//! Integration tests: the real server over HTTP against a real PostgreSQL.
//!
//! `support` holds what the test files share; each other module is one area of the service.

mod support;

mod append_only;
mod auth;
mod bounded_requests;
mod coalesce;
mod compat;
mod config;
mod customers;
mod docs;
mod errors;
mod events;
mod events_nats;
mod failover;
mod faults;
mod feed_horizon;
mod hostile;
mod idempotency;
mod integers;
mod layers;
mod list;
mod metrics_listener;
mod migration_rules;
mod opaque_cursors;
mod openapi_errors;
mod operations;
mod patch;
mod plans;
mod properties;
mod row_security;
mod running;
mod security;
mod tls;
mod traces;
mod validation;
mod webhooks;
