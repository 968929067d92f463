//! Integration tests: the real server over HTTP against a real PostgreSQL.

#[allow(dead_code)]
mod helpers;

mod auth;
mod compat;
mod customers;
mod errors;
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
