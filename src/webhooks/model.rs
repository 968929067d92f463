//! The webhook resource as clients see it (Proxy's `Webhook`, in svix's style: `WebhookIn` to
//! create, `WebhookPatch` to change, `WebhookOut` to show), and the bodies of its actions. The
//! rules a body must follow are in `input`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::input::Members;
use super::secret::SigningSecret;
use crate::events::EventType;

/// `POST /v1/webhooks`: a new webhook, or (with `id`) the members to replace in an existing one.
#[derive(ToSchema)]
#[schema(as = WebhookIn)]
#[allow(dead_code)]
pub struct WebhookInDoc {
    /// An existing webhook's id: update it (200) instead of creating one (201).
    id: Option<String>,
    /// An https URL (required for a new webhook).
    #[schema(format = "uri")]
    url: Option<String>,
    /// Event types to deliver; empty or absent: every type.
    events: Option<Vec<EventType>>,
    #[schema(default = true)]
    enabled: Option<bool>,
    description: Option<String>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// `whsec_` + base64 of 24 to 64 bytes; generated when absent.
    secret: Option<String>,
}

/// `PATCH /v1/webhooks/{id}`: a JSON merge patch (RFC 7396) of these members.
#[derive(ToSchema)]
#[schema(as = WebhookPatch)]
#[allow(dead_code)]
pub struct WebhookPatchDoc {
    #[schema(format = "uri")]
    url: Option<String>,
    events: Option<Vec<EventType>>,
    enabled: Option<bool>,
    description: Option<String>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// The writable members of a webhook, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Writable {
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub description: Option<String>,
    pub metadata: Map<String, Value>,
}

impl Writable {
    /// The members after `members` are applied (merge-patch rules; metadata merges by key).
    pub fn apply(&self, members: &Members) -> Writable {
        let mut next = self.clone();
        if let Some(url) = &members.url {
            next.url = url.clone();
        }
        if let Some(events) = &members.events {
            next.events = events.clone();
        }
        if let Some(enabled) = members.enabled {
            next.enabled = enabled;
        }
        if let Some(description) = &members.description {
            next.description = description.clone();
        }
        match &members.metadata {
            None => {}
            Some(None) => next.metadata.clear(),
            Some(Some(patch)) => {
                for (key, value) in patch {
                    if value.is_null() {
                        next.metadata.remove(key);
                    } else {
                        next.metadata.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        next
    }
}

/// A webhook as stored.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub writable: Writable,
    pub disabled_reason: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A webhook as shown; `secret` only in the answers §11 names.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookOut {
    #[schema(example = "whk_01JD7Q4X2V6W8Y9Z0A1B2C3D4E")]
    pub id: String,
    #[schema(format = "uri")]
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub description: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// null, manual, gone or failing.
    pub disabled_reason: Option<String>,
    /// Only in the answer of a create, of a rotation, and of a POST that set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub secret: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl Webhook {
    pub fn out(&self, secret: Option<&SigningSecret>) -> WebhookOut {
        WebhookOut {
            id: self.id.clone(),
            url: self.writable.url.clone(),
            events: self.writable.events.clone(),
            enabled: self.writable.enabled,
            description: self.writable.description.clone(),
            metadata: self.writable.metadata.clone(),
            disabled_reason: self.disabled_reason.clone(),
            secret: secret.map(SigningSecret::expose),
            created_at: timestamp(self.created_at),
            updated_at: timestamp(self.updated_at),
        }
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookList {
    pub data: Vec<WebhookOut>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookSecretOut {
    pub secret: String,
}

/// `POST /v1/webhooks/{id}/rotate-secret`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct RotateIn {
    /// The new secret; generated when absent.
    secret: Option<String>,
    /// Seconds the old secret keeps signing beside the new one: 0 to 604800, default 86400.
    #[schema(minimum = 0, maximum = 604800, default = 86400)]
    grace_period: Option<i64>,
}

/// `POST /v1/webhooks/{id}/recover`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RecoverIn {
    /// Events that occurred at or after this RFC 3339 instant are delivered again.
    #[schema(format = DateTime)]
    since: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoverOut {
    /// How many deliveries were made.
    pub deliveries: i64,
}
