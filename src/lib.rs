//! customers-api: customers and their spending policies, over HTTP.
//!
//! Where things are: `startup` builds the application; `customers` and `webhooks` are the
//! resources (routes, service, SQL); `events` is the event core below them, and `consumers`
//! (the JetStream relay, the webhook dispatcher) follow its committed events
//! (docs/architecture.md#layers); `idempotency` runs writes exactly once per key; `auth` and
//! `tenant` say who may touch what; `error` is the one error type; `openapi` the generated
//! document. The rules the API follows are in docs/api-rules.md.

pub mod auth;
pub mod cli;
pub mod clock;
pub mod configuration;
pub mod consumers;
pub mod customers;
pub mod db;
pub mod error;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod ids;
pub mod json_body;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod pagination;
pub mod private_postgres;
pub mod query;
pub mod rate_limit;
pub mod request_context;
pub mod request_id;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tenant;
pub mod tenant_limit;
pub mod webhooks;
