//! Integration tests: the real server over HTTP against a real PostgreSQL.

#[allow(dead_code)]
mod helpers;

mod auth;
mod compat;
mod customers;
mod errors;
mod idempotency;
mod list;
mod operations;
mod patch;
mod running;
mod validation;
