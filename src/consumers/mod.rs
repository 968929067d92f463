//! The consumers of committed events, above the event core and the resources: each follows the
//! feed from a position of its own (docs/architecture.md#layers).
//!
//! - `relay`: publishes them to NATS JetStream (position `event_relay`).
//! - `dispatcher`: turns them into webhook deliveries and attempts them (position
//!   `webhook_dispatch`).

pub mod dispatcher;
pub mod relay;
