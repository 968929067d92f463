//! Integration tests: the real server over HTTP against a real PostgreSQL.
//!
//! `support` holds what the test files share; each other module is one area of the service.

#[allow(dead_code, unused_imports)]
mod support;
// The old name of `support`, while the test files move over to it.
#[allow(unused_imports)]
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
