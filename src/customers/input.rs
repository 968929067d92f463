//! The shape check of request bodies: unknown fields at any depth, read-only fields, and the JSON
//! type of every known field. It runs on the parsed body before anything else, reports every
//! violation at once, and guarantees that the typed structs of `validation` can be built from
//! what passes.
//!
//! `null` is accepted for every writable field: in a PATCH it clears (RFC 7396), and a create is
//! the same merge applied to an empty customer, so there it means "not set".

use serde_json::{Map, Value};

use crate::error::{FieldError, PARAMETER_NOT_UPDATABLE, PARAMETER_UNKNOWN};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Create,
    Patch,
}

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Str,
    StrArray,
    Object(&'static [(&'static str, Kind)]),
    /// Free-form JSON object (metadata): any keys, any values.
    AnyObject,
}

const NAME: &[(&str, Kind)] = &[("first", Kind::Str), ("last", Kind::Str)];

const LIMITS: &[(&str, Kind)] = &[
    ("perAuth", Kind::Int),
    ("perDay", Kind::Int),
    ("perMonth", Kind::Int),
];

const POLICY: &[(&str, Kind)] = &[
    ("requireIntent", Kind::Bool),
    ("requireAttestation", Kind::Bool),
    ("requireApproval", Kind::Bool),
    ("lockToFirstMerchant", Kind::Bool),
    ("autoApproveBelow", Kind::Int),
    ("attestationWindowMinutes", Kind::Int),
    ("cooldownMinutes", Kind::Int),
    ("ttlMinutes", Kind::Int),
    ("ttlDays", Kind::Int),
    ("limits", Kind::Object(LIMITS)),
    ("allowedMccs", Kind::StrArray),
    ("blockedMccs", Kind::StrArray),
    ("allowedMerchants", Kind::StrArray),
];

/// The writable part of a customer: what a PATCH may touch and what the merge applies to.
const WRITABLE: &[(&str, Kind)] = &[
    ("email", Kind::Str),
    ("phone", Kind::Str),
    ("name", Kind::Object(NAME)),
    ("policy", Kind::Object(POLICY)),
    ("metadata", Kind::AnyObject),
];

/// The paths of the integer fields (cents and minutes), from the tables above.
pub fn integer_fields() -> &'static [Vec<&'static str>] {
    static PATHS: std::sync::LazyLock<Vec<Vec<&'static str>>> = std::sync::LazyLock::new(|| {
        fn walk(
            fields: &[(&'static str, Kind)],
            prefix: &[&'static str],
            out: &mut Vec<Vec<&'static str>>,
        ) {
            for (name, kind) in fields {
                let mut path = prefix.to_vec();
                path.push(*name);
                match kind {
                    Kind::Int => out.push(path),
                    Kind::Object(inner) => walk(inner, &path, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(WRITABLE, &[], &mut out);
        out
    });
    &PATHS
}

const READ_ONLY: &[&str] = &["id", "status", "createdAt", "updatedAt", "object"];

/// Checks the shape of a create or patch body; `body` is already known to be an object.
pub fn check_body(body: &Map<String, Value>, kind: BodyKind) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in body {
        if READ_ONLY.contains(&key.as_str()) || (key == "type" && kind == BodyKind::Patch) {
            errors.push(FieldError::new(
                key.as_str(),
                PARAMETER_NOT_UPDATABLE,
                format!("{key} cannot be set by a request"),
            ));
        } else if key == "type" {
            if !value.is_null() {
                check(value, Kind::Str, key, &mut errors);
            }
        } else if let Some((_, field_kind)) = WRITABLE.iter().find(|(name, _)| name == key) {
            if !value.is_null() {
                check(value, *field_kind, key, &mut errors);
            }
        } else {
            errors.push(unknown(key));
        }
    }
    errors
}

fn unknown(path: &str) -> FieldError {
    FieldError::new(
        path,
        PARAMETER_UNKNOWN,
        format!("{path} is not a known field"),
    )
}

fn invalid_type(path: &str, expected: &str) -> FieldError {
    FieldError::new(path, "invalid_type", format!("must be {expected}"))
}

fn check(value: &Value, kind: Kind, path: &str, errors: &mut Vec<FieldError>) {
    match kind {
        Kind::Bool if !value.is_boolean() => errors.push(invalid_type(path, "a boolean")),
        Kind::Int => check_int(value, path, errors),
        Kind::Str => match value.as_str() {
            None => errors.push(invalid_type(path, "a string")),
            Some(s) => check_storable(s, path, errors),
        },
        Kind::StrArray => match value.as_array() {
            None => errors.push(invalid_type(path, "an array of strings")),
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        None => errors.push(invalid_type(&format!("{path}.{i}"), "a string")),
                        Some(s) => check_storable(s, &format!("{path}.{i}"), errors),
                    }
                }
            }
        },
        Kind::Object(fields) => match value.as_object() {
            None => errors.push(invalid_type(path, "an object")),
            Some(map) => {
                for (key, value) in map {
                    let child = format!("{path}.{key}");
                    match fields.iter().find(|(name, _)| name == key) {
                        None => errors.push(unknown(&child)),
                        Some(_) if value.is_null() => {}
                        Some((_, kind)) => check(value, *kind, &child, errors),
                    }
                }
            }
        },
        Kind::AnyObject => match value.as_object() {
            None => errors.push(invalid_type(path, "an object")),
            Some(map) => {
                for (key, value) in map {
                    let child = format!("{path}.{key}");
                    check_storable(key, &child, errors);
                    check_any(value, &child, errors);
                }
            }
        },
        Kind::Bool => {}
    }
}

/// Integers only: a fraction such as 12.5 (or 12.0, or 1e3) is not a number of cents.
fn check_int(value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    match value {
        Value::Number(n) if n.is_i64() => {}
        Value::Number(n) if n.is_u64() => {
            errors.push(FieldError::new(path, "out_of_range", "is out of range"))
        }
        Value::Number(_) => errors.push(invalid_type(path, "an integer")),
        _ => errors.push(invalid_type(path, "an integer")),
    }
}

/// PostgreSQL cannot store U+0000 in text or jsonb; such a string is the client's error.
fn check_storable(s: &str, path: &str, errors: &mut Vec<FieldError>) {
    if s.contains('\0') {
        errors.push(FieldError::new(
            path,
            "invalid_value",
            "must not contain the NUL character (U+0000)",
        ));
    }
}

fn check_any(value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    match value {
        Value::String(s) => check_storable(s, path, errors),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| check_any(v, &format!("{path}.{i}"), errors)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            let child = format!("{path}.{k}");
            check_storable(k, &child, errors);
            check_any(v, &child, errors);
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(body: Value, kind: BodyKind) -> Vec<(String, &'static str)> {
        check_body(body.as_object().unwrap(), kind)
            .into_iter()
            .map(|e| (e.param, e.code))
            .collect()
    }

    #[test]
    fn unknown_fields_are_reported_at_every_depth() {
        let found = errors(
            json!({"emial": "x", "policy": {"limits": {"perDya": 1}, "requireIntnet": true}}),
            BodyKind::Create,
        );
        assert_eq!(found.len(), 3);
        assert!(found.contains(&("emial".into(), PARAMETER_UNKNOWN)));
        assert!(found.contains(&("policy.limits.perDya".into(), PARAMETER_UNKNOWN)));
        assert!(found.contains(&("policy.requireIntnet".into(), PARAMETER_UNKNOWN)));
    }

    #[test]
    fn type_is_not_updatable_in_a_patch_only() {
        assert_eq!(
            errors(json!({"type": "consumer"}), BodyKind::Patch),
            vec![("type".into(), PARAMETER_NOT_UPDATABLE)]
        );
        assert!(errors(json!({"type": "consumer"}), BodyKind::Create).is_empty());
    }

    #[test]
    fn fractions_are_not_cents() {
        let found = errors(
            json!({"policy": {"limits": {"perDay": 12.5}}}),
            BodyKind::Create,
        );
        assert_eq!(found, vec![("policy.limits.perDay".into(), "invalid_type")]);
    }

    #[test]
    fn nul_characters_are_rejected_anywhere() {
        let found = errors(json!({"metadata": {"a": ["x\u{0}"]}}), BodyKind::Create);
        assert_eq!(found, vec![("metadata.a.0".into(), "invalid_value")]);
    }
}
