//! The webhook resource as clients see it (Proxy's `Webhook`, in svix's style: `WebhookIn` to
//! create, `WebhookPatch` to change, `WebhookOut` to show) and the delivery log, with the rules
//! a body must follow. Bodies are checked member by member so that every violation is reported
//! at once, each naming its field.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::destination::{self, Allowance};
use super::secret::SigningSecret;
use crate::error::{FieldError, PARAMETER_NOT_UPDATABLE, PARAMETER_UNKNOWN};
use crate::events::EventType;
use crate::limits::{METADATA_KEY_MAX_CHARS, METADATA_MAX_KEYS, METADATA_VALUE_MAX_BYTES};

pub const DESCRIPTION_MAX_CHARS: usize = 500;
pub const URL_MAX_CHARS: usize = 2048;

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
    #[schema(value_type = Object)]
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
    #[schema(value_type = Object)]
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

/// What a create or update body asks for, once checked.
#[derive(Debug, Default)]
pub struct Members {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// `Some(None)`: cleared.
    pub description: Option<Option<String>>,
    /// A merge patch of metadata (`null` members remove keys); `Some(None)`: emptied.
    pub metadata: Option<Option<Map<String, Value>>>,
    pub secret: Option<SigningSecret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// POST: `id` selects an update; `secret` may be given.
    Post,
    Patch,
}

/// Checks a body's members: every violation, each with its `param`.
pub fn members(
    body: &Map<String, Value>,
    kind: BodyKind,
    allow: Allowance,
) -> Result<Members, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut out = Members::default();
    for (name, value) in body {
        let name = name.as_str();
        match name {
            "id" if kind == BodyKind::Post => {}
            "url" => match value.as_str() {
                Some(url) if url.chars().count() > URL_MAX_CHARS => errors.push(invalid(
                    "url",
                    format!("must be at most {URL_MAX_CHARS} characters"),
                )),
                Some(url) => match destination::check_url(url, allow) {
                    Ok(_) => out.url = Some(url.to_owned()),
                    Err(why) => errors.push(invalid("url", why)),
                },
                None => errors.push(invalid("url", "must be a string")),
            },
            "events" => match event_types(value) {
                Ok(types) => out.events = Some(types),
                Err(e) => errors.extend(e),
            },
            "enabled" => match value {
                Value::Bool(b) => out.enabled = Some(*b),
                _ => errors.push(invalid("enabled", "must be a boolean")),
            },
            "description" => match value {
                Value::Null => out.description = Some(None),
                Value::String(s) if s.chars().count() <= DESCRIPTION_MAX_CHARS => {
                    out.description = Some(Some(s.clone()))
                }
                Value::String(_) => errors.push(invalid(
                    "description",
                    format!("must be at most {DESCRIPTION_MAX_CHARS} characters"),
                )),
                _ => errors.push(invalid("description", "must be a string or null")),
            },
            "metadata" => match value {
                Value::Null => out.metadata = Some(None),
                Value::Object(m) => {
                    metadata_rules(m, &mut errors);
                    out.metadata = Some(Some(m.clone()));
                }
                _ => errors.push(invalid("metadata", "must be an object")),
            },
            "secret" if kind == BodyKind::Post => {
                match value.as_str().and_then(SigningSecret::parse) {
                    Some(secret) => out.secret = Some(secret),
                    None => errors.push(invalid(
                        "secret",
                        "must be whsec_ followed by the base64 of 24 to 64 bytes",
                    )),
                }
            }
            "secret" => errors.push(FieldError::new(
                "secret",
                PARAMETER_NOT_UPDATABLE,
                "secret is changed with POST /v1/webhooks/{id}/rotate-secret",
            )),
            "id" | "createdAt" | "updatedAt" | "disabledReason" => errors.push(FieldError::new(
                name,
                PARAMETER_NOT_UPDATABLE,
                format!("{name} cannot be set"),
            )),
            _ => errors.push(FieldError::new(
                name,
                PARAMETER_UNKNOWN,
                format!("{name} is not a member of a webhook"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn invalid(param: &str, message: impl Into<String>) -> FieldError {
    FieldError::new(param, "invalid_value", message)
}

/// Known event types, each once; `[]` is every type.
fn event_types(value: &Value) -> Result<Vec<String>, Vec<FieldError>> {
    let Value::Array(items) = value else {
        return Err(vec![invalid("events", "must be an array of event types")]);
    };
    let mut errors = Vec::new();
    let mut types = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let known = item
            .as_str()
            .and_then(|s| EventType::ALL.iter().find(|t| t.as_str() == s));
        match known {
            Some(t) if types.iter().any(|k| k == t.as_str()) => {
                errors.push(invalid(&format!("events.{i}"), "is given twice"))
            }
            Some(t) => types.push(t.as_str().to_owned()),
            None => errors.push(invalid(
                &format!("events.{i}"),
                format!(
                    "is not an event type; known: {}",
                    EventType::ALL.map(EventType::as_str).join(", ")
                ),
            )),
        }
    }
    if errors.is_empty() {
        Ok(types)
    } else {
        Err(errors)
    }
}

fn metadata_rules(metadata: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    if metadata.len() > METADATA_MAX_KEYS {
        errors.push(invalid(
            "metadata",
            format!("must have at most {METADATA_MAX_KEYS} keys"),
        ));
    }
    for (key, value) in metadata {
        let param = format!("metadata.{key}");
        if !(1..=METADATA_KEY_MAX_CHARS).contains(&key.chars().count()) || key.contains(['[', ']'])
        {
            errors.push(invalid(
                &param,
                format!("keys must be 1 to {METADATA_KEY_MAX_CHARS} characters, without [ or ]"),
            ));
        }
        let size = serde_json::to_vec(value).map_or(usize::MAX, |v| v.len());
        if size > METADATA_VALUE_MAX_BYTES {
            errors.push(invalid(
                &param,
                format!("values must be at most {METADATA_VALUE_MAX_BYTES} bytes serialised"),
            ));
        }
    }
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

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptOut {
    #[schema(format = DateTime)]
    pub at: String,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub error: Option<String>,
    /// The first 4 KiB of the response body.
    pub response_body: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryOut {
    #[schema(example = "dlv_01JD7Q4X2V6W8Y9Z0A1B2C3D4E")]
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    /// pending, succeeded or failed.
    pub status: String,
    pub attempts: Vec<AttemptOut>,
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryList {
    pub data: Vec<DeliveryOut>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEV: Allowance = Allowance {
        http: false,
        private_networks: false,
    };

    fn errors(body: Value, kind: BodyKind) -> Vec<(String, &'static str)> {
        let Value::Object(body) = body else { panic!() };
        members(&body, kind, DEV)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.param, e.code))
            .collect()
    }

    #[test]
    fn every_violation_is_named() {
        let found = errors(
            json!({"url": "http://partner.example/", "events": ["customer.updated", "customer.renamed"],
                   "enabled": "yes", "metadata": {"": 1}, "colour": "red", "createdAt": "x",
                   "secret": "whsec_short"}),
            BodyKind::Post,
        );
        for expected in [
            ("url", "invalid_value"),
            ("events.1", "invalid_value"),
            ("enabled", "invalid_value"),
            ("metadata.", "invalid_value"),
            ("colour", PARAMETER_UNKNOWN),
            ("createdAt", PARAMETER_NOT_UPDATABLE),
            ("secret", "invalid_value"),
        ] {
            assert!(
                found.contains(&(expected.0.to_owned(), expected.1)),
                "{expected:?} not in {found:?}"
            );
        }
        assert_eq!(
            errors(
                json!({"secret": SigningSecret::generate().expose()}),
                BodyKind::Patch
            ),
            vec![("secret".to_owned(), PARAMETER_NOT_UPDATABLE)]
        );
        assert_eq!(
            errors(json!({"id": "whk_x"}), BodyKind::Patch),
            vec![("id".to_owned(), PARAMETER_NOT_UPDATABLE)]
        );
    }

    #[test]
    fn a_patch_merges_metadata_and_clears_with_null() {
        let stored = Writable {
            url: "https://a.example/".into(),
            events: vec![],
            enabled: true,
            description: Some("d".into()),
            metadata: json!({"a": 1, "b": 2}).as_object().unwrap().clone(),
        };
        let Value::Object(body) = json!({"metadata": {"a": null, "c": 3}, "description": null})
        else {
            panic!()
        };
        let next = stored.apply(&members(&body, BodyKind::Patch, DEV).unwrap());
        assert_eq!(Value::Object(next.metadata), json!({"b": 2, "c": 3}));
        assert_eq!(next.description, None);
        assert_eq!(next.url, stored.url);
    }
}
