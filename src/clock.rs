//! The service's clock.

use chrono::{DateTime, Utc};

/// Now, at the millisecond precision the API shows, so stored and shown times are the same
/// value.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
