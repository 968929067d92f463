//! What every handler shares.

use sqlx::PgPool;

use crate::configuration::IdempotencySettings;
use crate::pagination::Cursors;

pub struct AppState {
    pub pool: PgPool,
    pub idempotency: IdempotencySettings,
    pub cursors: Cursors,
}
