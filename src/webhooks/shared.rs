//! What the webhooks' routes and the dispatcher (`consumers::dispatcher`) share: the settings,
//! the secrets' box and the wake-ups. In a file of its own, so that what holds it (the
//! application's state) does not import the routes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

use super::destination::Allowance;
use super::secret::SecretBox;
use crate::configuration::WebhooksSettings;

/// What the routes and the background tasks share.
pub struct Webhooks {
    pub settings: WebhooksSettings,
    pub secrets: SecretBox,
    /// Awaited by the dispatcher (`consumers::dispatcher`).
    pub(crate) dispatch_wake: Notify,
    /// Awaited by the senders.
    pub(crate) send_wake: Notify,
    /// Whether some webhook may take events: when none does, a write does not wake the
    /// dispatcher (its round, a transaction of its own, would find nothing to deliver); its
    /// poll still moves its position. A guess, corrected by each dispatch round and set at
    /// once when a webhook is written here; wrong only for a webhook made or enabled on another
    /// instance, and only until this instance's next round (`webhooks.poll_interval`).
    expect_deliveries: AtomicBool,
    /// Writes committed on this instance: how busy its writes are, for the dispatcher and the
    /// senders to yield to them (`webhooks.busy_writes_per_second`).
    writes: AtomicU64,
}

impl Webhooks {
    pub fn new(settings: WebhooksSettings) -> Self {
        Self {
            secrets: SecretBox::new(
                settings.secrets_key.expose(),
                settings
                    .previous_secrets_keys
                    .iter()
                    .map(|key| key.expose()),
            ),
            settings,
            dispatch_wake: Notify::new(),
            send_wake: Notify::new(),
            // Until the first round has looked.
            expect_deliveries: AtomicBool::new(true),
            writes: AtomicU64::new(0),
        }
    }

    pub fn allowance(&self) -> Allowance {
        Allowance {
            http: self.settings.allow_http,
            private_networks: self.settings.allow_private_networks,
        }
    }

    /// After a write that recorded events committed: the dispatcher looks at once, unless no
    /// webhook would take them (`expect_deliveries`). Every such write is counted (`writes`).
    pub fn wake_dispatcher(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if self.expect_deliveries.load(Ordering::Relaxed) {
            self.dispatch_wake.notify_one();
        }
    }

    /// What the dispatcher's last round saw, or `true` after a webhook was written here (it may
    /// be enabled now).
    pub fn expect_deliveries(&self, any: bool) {
        self.expect_deliveries.store(any, Ordering::Relaxed);
    }

    /// Writes committed on this instance so far.
    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Deliveries are due now (made, retried, or a slot freed).
    pub fn wake_senders(&self) {
        self.send_wake.notify_one();
    }
}
