//! What the webhooks' routes and the dispatcher (`consumers::dispatcher`) share: the settings,
//! the secrets' box and the wake-ups. In a file of its own, so that what holds it (the
//! application's state) does not import the routes.

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
}

impl Webhooks {
    pub fn new(settings: WebhooksSettings) -> Self {
        Self {
            secrets: SecretBox::new(settings.secrets_key.expose()),
            settings,
            dispatch_wake: Notify::new(),
            send_wake: Notify::new(),
        }
    }

    pub fn allowance(&self) -> Allowance {
        Allowance {
            http: self.settings.allow_http,
            private_networks: self.settings.allow_private_networks,
        }
    }

    /// After a write that recorded events committed: the dispatcher looks at once.
    pub fn wake_dispatcher(&self) {
        self.dispatch_wake.notify_one();
    }

    /// Deliveries are due now (made, retried, or a slot freed).
    pub fn wake_senders(&self) {
        self.send_wake.notify_one();
    }
}
