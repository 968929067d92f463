//! The rules a webhook body must follow, checked member by member so that every violation is
//! reported at once, each naming its field by dotted path.

use serde_json::{Map, Value};

use super::destination::{self, Allowance};
use super::secret::SigningSecret;
use crate::error::{FieldError, PARAMETER_NOT_UPDATABLE, PARAMETER_UNKNOWN};
use crate::events::EventType;
use crate::limits::{METADATA_KEY_MAX_CHARS, METADATA_MAX_KEYS, METADATA_VALUE_MAX_BYTES};

pub const DESCRIPTION_MAX_CHARS: usize = 500;
pub const URL_MAX_CHARS: usize = 2048;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::model::Writable;
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
