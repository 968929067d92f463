//! Whether events are being published, for `/readyz`: the relay writes it, handlers read it.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// What `/readyz` says about publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publishing {
    /// `events.nats_url` is empty: events are recorded (feed, history) but not published.
    Disabled,
    /// Connected to NATS: committed events are published as they come.
    Connected,
    /// NATS is not reachable (or not yet): events wait in the database.
    Unreachable,
}

impl Publishing {
    pub fn as_str(self) -> &'static str {
        match self {
            Publishing::Disabled => "disabled",
            Publishing::Connected => "connected",
            Publishing::Unreachable => "unreachable",
        }
    }
}

/// The relay's connection state, shared (cheap to clone).
#[derive(Debug, Clone)]
pub struct PublishingStatus(Arc<AtomicU8>);

impl PublishingStatus {
    /// `Disabled` without a NATS URL, else `Unreachable` until the relay connects.
    pub fn new(enabled: bool) -> Self {
        let initial = if enabled {
            Publishing::Unreachable
        } else {
            Publishing::Disabled
        };
        PublishingStatus(Arc::new(AtomicU8::new(initial as u8)))
    }

    pub fn get(&self) -> Publishing {
        match self.0.load(Ordering::Relaxed) {
            x if x == Publishing::Connected as u8 => Publishing::Connected,
            x if x == Publishing::Unreachable as u8 => Publishing::Unreachable,
            _ => Publishing::Disabled,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.get() != Publishing::Disabled
    }

    pub(super) fn set(&self, publishing: Publishing) {
        self.0.store(publishing as u8, Ordering::Relaxed);
    }
}
