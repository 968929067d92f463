//! The relay: publishes committed events to NATS JetStream, in feed order, exactly once after
//! JetStream's de-duplication (docs/events.md#publication).

pub mod subject;

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::configuration::EventsSettings;

/// Publishes until `stop` is cancelled. `wake` is notified after this instance commits events.
pub async fn run(
    pool: PgPool,
    settings: EventsSettings,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let _ = (pool, settings, wake);
    stop.cancelled().await;
}
