//! Turning a request body into the values to store: the merge patch (RFC 7396; a create is the
//! same merge applied to an empty customer) followed by validation of the whole result. The
//! rules are in docs/api-rules.md#patch-merge-rules.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::domain::CustomerType;
use super::input::{check_body, BodyKind};
use super::model::{normalize, CustomerValues};
use super::validation::CustomerFields;
use crate::error::{ApiError, FieldError};

/// A create body: its `type` and the values of the new customer. A bad `type` is reported
/// together with everything else that is wrong.
pub fn new_customer(body: &Map<String, Value>) -> Result<(CustomerType, CustomerValues), ApiError> {
    let empty = Value::Object(Map::from_iter([(
        "metadata".to_owned(),
        Value::Object(Map::new()),
    )]));
    match (customer_type(body), apply(&empty, body, BodyKind::Create)) {
        (Ok(kind), Ok(Outcome::Changed(values))) => Ok((kind, values)),
        (Ok(kind), Ok(Outcome::Unchanged)) => Ok((kind, CustomerFields::default().into())),
        (Err(type_error), Err(ApiError::Validation(mut errors))) => {
            errors.push(type_error);
            errors.sort_by(|a, b| a.param.cmp(&b.param));
            Err(ApiError::Validation(errors))
        }
        (Err(type_error), _) => Err(ApiError::Validation(vec![type_error])),
        (Ok(_), Err(e)) => Err(e),
    }
}

/// `type` on create: `consumer` (default) or `corporate`.
fn customer_type(body: &Map<String, Value>) -> Result<CustomerType, FieldError> {
    match body.get("type") {
        Some(Value::String(s)) => CustomerType::parse(s).ok_or_else(|| {
            FieldError::new("type", "invalid_value", "must be consumer or corporate")
        }),
        // Absent or null; a wrong JSON type is reported by the shape check.
        _ => Ok(CustomerType::Consumer),
    }
}

/// What a body does to a customer.
pub enum Outcome {
    /// The merged customer equals the stored one: nothing to write.
    Unchanged,
    Changed(CustomerValues),
}

/// Applies `patch` (RFC 7396) to the writable document `current` and validates the result as a
/// whole, reporting every violation at once.
pub fn apply(
    current: &Value,
    patch: &Map<String, Value>,
    kind: BodyKind,
) -> Result<Outcome, ApiError> {
    apply_to(current.clone(), |doc| doc == current, patch, kind)
}

/// [`apply`] to a document the caller gives up: the merge changes it in place, and
/// `is_current` tells whether a document equals it as it was (a PATCH compares with the
/// customer's fields instead of keeping a copy of its document, `Customer::is_document`).
pub fn apply_to(
    current: Value,
    is_current: impl FnOnce(&Value) -> bool,
    patch: &Map<String, Value>,
    kind: BodyKind,
) -> Result<Outcome, ApiError> {
    let mut errors = check_body(patch, kind);
    // Fields whose shape is wrong are reported once and left out of the rule checks, and `type`
    // is not merged: the body is copied only when something must be left out.
    let patch = if errors.is_empty() && !patch.contains_key("type") {
        Cow::Borrowed(patch)
    } else {
        let mut patch = Value::Object(patch.clone());
        for error in &errors {
            remove_path(&mut patch, &error.param);
        }
        let Value::Object(mut patch) = patch else {
            unreachable!("built from a map")
        };
        patch.remove("type");
        Cow::Owned(patch)
    };

    let mut merged = current;
    merge(&mut merged, &patch);
    normalize(&mut merged);
    if errors.is_empty() && is_current(&merged) {
        return Ok(Outcome::Unchanged);
    }
    match serde_json::from_value::<CustomerFields>(merged) {
        Ok(fields) => {
            errors.extend(fields.violations());
            if errors.is_empty() {
                return Ok(Outcome::Changed(fields.into()));
            }
        }
        Err(e) if errors.is_empty() => {
            // Unreachable when check_body and the typed structs agree; still a client error.
            errors.push(FieldError::new("body", "invalid_value", e.to_string()));
        }
        Err(_) => {}
    }
    errors.sort_by(|a, b| a.param.cmp(&b.param));
    Err(ApiError::Validation(errors))
}

/// `json_patch::merge(doc, &Value::Object(patch.clone()))` without the copy: RFC 7396 on an
/// object, member by member.
fn merge(doc: &mut Value, patch: &Map<String, Value>) {
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Value::Object(map) = doc else {
        unreachable!("made an object above")
    };
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            json_patch::merge(map.entry(key.as_str()).or_insert(Value::Null), value);
        }
    }
}

/// Removes the member a dotted path names, or the deepest member on the way that exists (an
/// array item's error removes the whole array).
fn remove_path(doc: &mut Value, path: &str) {
    let mut segments = path.split('.').peekable();
    let mut node = doc;
    while let Some(segment) = segments.next() {
        let Some(map) = node.as_object_mut() else {
            return;
        };
        let descend = segments.peek().is_some_and(
            |next| matches!(map.get(segment), Some(Value::Object(m)) if m.contains_key(*next)),
        );
        if !descend {
            map.remove(segment);
            return;
        }
        node = map.get_mut(segment).expect("checked above");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(current: Value, body: Value) -> Result<Outcome, ApiError> {
        apply(&current, body.as_object().unwrap(), BodyKind::Patch)
    }

    fn stored(outcome: Result<Outcome, ApiError>) -> Value {
        match outcome {
            Ok(Outcome::Changed(v)) => v.policy.unwrap_or(Value::Null),
            Ok(Outcome::Unchanged) => panic!("expected a change"),
            Err(e) => panic!("expected success, got {e:?}"),
        }
    }

    #[test]
    fn the_documented_example_merges_limits() {
        let current = json!({"policy": {"requireIntent": true, "limits": {"perDay": 50000, "perMonth": 500000}}, "metadata": {}});
        let result = stored(patch(
            current,
            json!({"policy": {"limits": {"perDay": 70000}}}),
        ));
        assert_eq!(
            result,
            json!({"requireIntent": true, "limits": {"perDay": 70000, "perMonth": 500000}})
        );
    }

    #[test]
    fn merge_is_json_patchs_merge() {
        let docs = [
            json!({}),
            json!({"a": 1, "b": {"c": [1, 2], "d": {"e": null}}, "f": "g"}),
            json!({"metadata": {"x": {"y": 1}}, "policy": {"limits": {"perDay": 1}}}),
        ];
        let patches = [
            json!({}),
            json!({"a": null, "b": {"c": null, "d": {"e": 5, "z": {"q": null}}}, "new": [null]}),
            json!({"metadata": {"x": {"y": null}}, "policy": null, "f": {"h": 1}}),
            json!({"b": "scalar", "a": {"deep": {"er": null}}}),
        ];
        for doc in &docs {
            for patch in &patches {
                let mut expected = doc.clone();
                json_patch::merge(&mut expected, patch);
                let mut merged = doc.clone();
                merge(&mut merged, patch.as_object().unwrap());
                assert_eq!(merged, expected, "{doc} + {patch}");
            }
        }
    }

    #[test]
    fn an_identical_patch_is_a_no_op() {
        let current = json!({"email": "a@example.com", "metadata": {"a": 1}});
        assert!(matches!(
            patch(
                current.clone(),
                json!({"email": "a@example.com", "metadata": {"a": 1}})
            ),
            Ok(Outcome::Unchanged)
        ));
        assert!(matches!(patch(current, json!({})), Ok(Outcome::Unchanged)));
    }

    #[test]
    fn shape_and_rule_errors_are_reported_together() {
        let current = json!({"metadata": {}});
        let Err(ApiError::Validation(errors)) = patch(
            current,
            json!({"email": 5, "phone": "nope", "policy": {"ttlDays": 0}}),
        ) else {
            panic!("expected a validation error");
        };
        let params: Vec<&str> = errors.iter().map(|e| e.param.as_str()).collect();
        assert_eq!(params, vec!["email", "phone", "policy.ttlDays"]);
    }
}
