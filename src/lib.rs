//! customers-api: customers and their spending policies, over HTTP.

pub mod auth;
pub mod cli;
pub mod configuration;
pub mod customers;
pub mod db;
pub mod error;
pub mod health;
pub mod idempotency;
pub mod json_body;
pub mod metrics;
pub mod openapi;
pub mod private_postgres;
pub mod rate_limit;
pub mod request_context;
pub mod startup;
pub mod telemetry;
