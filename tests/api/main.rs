//! Integration tests: the real server over HTTP against a real PostgreSQL.
//!
//! `support` holds what the test files share; each other module is one area of the service.

mod support;

mod auth;
mod compat;
mod customers;
mod errors;
mod events;
mod events_nats;
mod failover;
mod faults;
mod hostile;
mod idempotency;
mod integers;
mod list;
mod openapi_errors;
mod operations;
mod patch;
mod plans;
mod properties;
mod row_security;
mod running;
mod security;
mod validation;
mod webhooks;
