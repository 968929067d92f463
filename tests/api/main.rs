//! Integration tests: the real server over HTTP against a real PostgreSQL.
//!
//! `support` holds what the test files share; each other module is one area of the service.

mod support;

mod auth;
mod compat;
mod customers;
mod errors;
mod events_nats;
mod faults;
mod hostile;
mod idempotency;
mod integers;
mod list;
mod operations;
mod patch;
mod properties;
mod row_security;
mod running;
mod security;
mod validation;
