//! What the integration tests share, so that each test file holds only its own tests.
//!
//! - [`database`]: a fresh, migrated database per test (`DATABASE_URL` when set, else a private
//!   PostgreSQL under `target/test-postgres`), the URL a child process needs to reach a
//!   database, and a TCP address of it (`tcp_database`).
//! - [`scratch_postgres`]: a PostgreSQL of a test's own, which it may stop and start again.
//! - [`app`]: `spawn_app()` and [`TestApp`], the real server on port 0, in process.
//! - [`binary`]: the `customers-api` binary as a child process (free ports, readiness, SIGKILL,
//!   SIGTERM).
//! - [`reply`]: [`Reply`], a response read to the end, for byte-for-byte comparisons.
//! - [`tokens`]: the development key, minted tokens and hand-made ones.
//! - [`assertions`]: the error envelope (see `docs/api-rules.md`), 401s, refusals.
//! - [`stored`]: what is in the database: row snapshots, idempotency keys, blocked sessions.
//! - [`raw`]: HTTP/1.1 written by hand, for what a client library will not send.
//! - [`fixtures`]: fixed request bodies and ids.
//! - [`document`]: the stored document of a write, for the property tests and the fuzz target.
//! - [`logs`]: where the logs of the run go (scanned for personal data afterwards).
//! - [`nats`]: a JetStream stream of the test's own on the shared NATS server, and private
//!   `nats-server`s a test may stop; [`nats_server`]: the program, the run's own server when
//!   `NATS_URL` is unset, and the watchdog that stops servers the tests started.
//!
//! The library items the tests call are named here and in the property tests only, so that a
//! change of their signatures is adapted in few places.

pub mod app;
pub mod assertions;
pub mod binary;
pub mod database;
pub mod document;
pub mod fixtures;
pub mod logs;
pub mod nats;
pub mod nats_server;
pub mod raw;
pub mod reply;
pub mod scratch_postgres;
pub mod stored;
pub mod tokens;

pub use app::*;
pub use assertions::*;
pub use binary::*;
pub use database::*;
pub use document::*;
pub use fixtures::*;
pub use nats::*;
pub use reply::*;
pub use scratch_postgres::*;
pub use stored::*;
pub use tokens::*;
