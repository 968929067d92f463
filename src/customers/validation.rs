//! The field rules (docs/api-rules.md#validation), applied to a whole customer (the create body,
//! or the result of a merge patch). Per-field rules are declared with the `validator` crate; what it cannot
//! say (rules across fields, per-key metadata rules) is the code at the bottom.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use validator::{Validate, ValidationError, ValidationErrors, ValidationErrorsKind};

use crate::error::FieldError;
use crate::limits::{
    EMAIL_MAX_CHARS, MAX_CENTS, MCCS_MAX, MERCHANTS_MAX, MERCHANT_NAME_MAX_CHARS,
    METADATA_KEY_MAX_CHARS, METADATA_MAX_KEYS, METADATA_VALUE_MAX_BYTES, NAME_MAX_CHARS,
};

/// The writable fields of a customer, typed. Built from a document that passed
/// `input::check_body` and the merge, so deserialising it cannot fail on types.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct CustomerFields {
    #[validate(
        length(
            max = EMAIL_MAX_CHARS,
            code = "too_long",
            message = "must be at most 254 characters"
        ),
        email(code = "invalid_email", message = "must be a valid email address"),
        custom(function = "no_surrounding_spaces")
    )]
    pub email: Option<String>,
    #[validate(custom(function = "e164"))]
    pub phone: Option<String>,
    #[validate(nested)]
    pub name: Option<Name>,
    #[validate(nested)]
    pub policy: Option<Policy>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct Name {
    #[validate(custom(function = "name_part"))]
    pub first: Option<String>,
    #[validate(custom(function = "name_part"))]
    pub last: Option<String>,
}

/// The spending policy. Sparse: a field that was never set is `None` and is not serialised.
/// Amounts are whole cents and durations whole minutes or days: `number` as in Proxy's schema,
/// with `multipleOf: 1`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_intent: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_attestation: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_approval: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_to_first_merchant: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, multiple_of = 1.0, minimum = 0.0, maximum = 1000000000000.0)]
    #[validate(range(min = 0, max = MAX_CENTS, code = "out_of_range"))]
    pub auto_approve_below: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, multiple_of = 1.0, minimum = 1.0, maximum = 60.0)]
    #[validate(range(min = 1, max = 60, code = "out_of_range"))]
    pub attestation_window_minutes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, multiple_of = 1.0, minimum = 0.0, maximum = 525600.0)]
    #[validate(range(min = 0, max = 525_600, code = "out_of_range"))]
    pub cooldown_minutes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, multiple_of = 1.0, minimum = 1.0, maximum = 525600.0)]
    #[validate(range(min = 1, max = 525_600, code = "out_of_range"))]
    pub ttl_minutes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, multiple_of = 1.0, minimum = 1.0, maximum = 3650.0)]
    #[validate(range(min = 1, max = 3_650, code = "out_of_range"))]
    pub ttl_days: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// null (in a PATCH) removes every limit.
    #[validate(nested)]
    pub limits: Option<Limits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[validate(custom(function = "mcc_list"))]
    pub allowed_mccs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[validate(custom(function = "mcc_list"))]
    pub blocked_mccs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[validate(
        length(
            max = MERCHANTS_MAX,
            code = "too_many",
            message = "must have at most 100 names"
        ),
        custom(function = "merchant_list")
    )]
    pub allowed_merchants: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, multiple_of = 1.0, minimum = 0.0, maximum = 1000000000000.0)]
    #[validate(range(min = 0, max = MAX_CENTS, code = "out_of_range"))]
    pub per_auth: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, multiple_of = 1.0, minimum = 0.0, maximum = 1000000000000.0)]
    #[validate(range(min = 0, max = MAX_CENTS, code = "out_of_range"))]
    pub per_day: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, multiple_of = 1.0, minimum = 0.0, maximum = 1000000000000.0)]
    #[validate(range(min = 0, max = MAX_CENTS, code = "out_of_range"))]
    pub per_month: Option<i64>,
}

fn rule(code: &'static str, message: impl Into<Cow<'static, str>>) -> ValidationError {
    ValidationError::new(code).with_message(message.into())
}

fn no_surrounding_spaces(s: &str) -> Result<(), ValidationError> {
    if s.trim() != s {
        return Err(rule("invalid_email", "must not start or end with spaces"));
    }
    Ok(())
}

/// E.164: `+`, then 7 to 15 digits, the first not 0.
fn e164(s: &str) -> Result<(), ValidationError> {
    let digits = s.strip_prefix('+').unwrap_or("");
    let ok = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !ok {
        return Err(rule(
            "invalid_phone",
            "must be an E.164 number: + then 7 to 15 digits, the first not 0",
        ));
    }
    Ok(())
}

/// A first or last name: 1 to 100 characters, not only spaces.
fn name_part(s: &str) -> Result<(), ValidationError> {
    if !(1..=NAME_MAX_CHARS).contains(&(s.chars().count() as u64)) {
        return Err(rule(
            "invalid_length",
            format!("must be 1 to {NAME_MAX_CHARS} characters"),
        ));
    }
    if s.trim().is_empty() {
        return Err(rule("invalid_value", "must not be only spaces"));
    }
    Ok(())
}

fn mcc_list(codes: &[String]) -> Result<(), ValidationError> {
    if codes.len() as u64 > MCCS_MAX {
        return Err(rule(
            "too_many",
            format!("must have at most {MCCS_MAX} codes"),
        ));
    }
    let mut seen = HashSet::with_capacity(codes.len());
    for (i, code) in codes.iter().enumerate() {
        if code.len() != 4 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(rule(
                "invalid_mcc",
                format!("item {i} ({code:?}) must be exactly 4 ASCII digits"),
            ));
        }
        if !seen.insert(code.as_str()) {
            return Err(rule("duplicate", format!("item {i} ({code}) is repeated")));
        }
    }
    Ok(())
}

fn merchant_list(names: &[String]) -> Result<(), ValidationError> {
    let mut seen = HashSet::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if !(1..=MERCHANT_NAME_MAX_CHARS).contains(&name.chars().count()) {
            return Err(rule(
                "invalid_length",
                format!("item {i} must be 1 to {MERCHANT_NAME_MAX_CHARS} characters"),
            ));
        }
        if !seen.insert(name.to_lowercase()) {
            return Err(rule(
                "duplicate",
                format!("item {i} repeats a name (names are compared ignoring case)"),
            ));
        }
    }
    Ok(())
}

impl CustomerFields {
    /// Every rule this customer breaks, sorted by field.
    pub fn violations(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Err(found) = self.validate() {
            flatten("", &found, &mut errors);
        }
        if let Some(policy) = &self.policy {
            policy_rules(policy, &mut errors);
        }
        metadata_rules(&self.metadata, &mut errors);
        errors.sort_by(|a, b| a.param.cmp(&b.param));
        errors
    }
}

/// `perAuth ≤ perDay ≤ perMonth` for every pair that is set, and no code both allowed and
/// blocked. The error names the smaller-window limit, the one a client most likely just raised.
fn policy_rules(policy: &Policy, errors: &mut Vec<FieldError>) {
    if let Some(limits) = &policy.limits {
        let pairs = [
            ("perAuth", limits.per_auth, "perDay", limits.per_day),
            ("perAuth", limits.per_auth, "perMonth", limits.per_month),
            ("perDay", limits.per_day, "perMonth", limits.per_month),
        ];
        for (low_name, low, high_name, high) in pairs {
            if let (Some(low), Some(high)) = (low, high) {
                if low > high {
                    errors.push(FieldError::new(
                        format!("policy.limits.{low_name}"),
                        "limits_inconsistent",
                        format!(
                            "policy.limits.{low_name} ({low}) is above policy.limits.{high_name} ({high})"
                        ),
                    ));
                }
            }
        }
    }
    if let (Some(allowed), Some(blocked)) = (&policy.allowed_mccs, &policy.blocked_mccs) {
        let allowed: HashSet<&String> = allowed.iter().collect();
        if let Some(code) = blocked.iter().find(|c| allowed.contains(c)) {
            errors.push(FieldError::new(
                "policy.blockedMccs",
                "mcc_conflict",
                format!("{code} is both allowed and blocked"),
            ));
        }
    }
}

fn metadata_rules(metadata: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    if metadata.len() > METADATA_MAX_KEYS {
        errors.push(FieldError::new(
            "metadata",
            "too_many",
            format!(
                "must have at most {METADATA_MAX_KEYS} keys, has {}",
                metadata.len()
            ),
        ));
    }
    for (key, value) in metadata {
        // Named only for an error: most keys have none.
        let param = || format!("metadata.{key}");
        if !(1..=METADATA_KEY_MAX_CHARS).contains(&key.chars().count()) {
            errors.push(FieldError::new(
                param(),
                "invalid_key",
                format!("keys must be 1 to {METADATA_KEY_MAX_CHARS} characters"),
            ));
        } else if key.contains(['[', ']']) {
            errors.push(FieldError::new(
                param(),
                "invalid_key",
                "keys must not contain [ or ]",
            ));
        }
        let size = serialised_len(value);
        if size > METADATA_VALUE_MAX_BYTES {
            errors.push(FieldError::new(
                param(),
                "too_long",
                format!(
                    "the value is {size} bytes serialised; at most {METADATA_VALUE_MAX_BYTES} are allowed"
                ),
            ));
        }
    }
}

/// The length of `value` serialised, counted as serde_json writes it, without keeping the text.
fn serialised_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Turns validator's nested error map into dotted camelCase paths.
fn flatten(prefix: &str, found: &ValidationErrors, out: &mut Vec<FieldError>) {
    for (field, kind) in found.errors() {
        let path = if prefix.is_empty() {
            camel_case(field)
        } else {
            format!("{prefix}.{}", camel_case(field))
        };
        match kind {
            ValidationErrorsKind::Field(errors) => {
                for e in errors {
                    out.push(FieldError::new(&path, static_code(&e.code), describe(e)));
                }
            }
            ValidationErrorsKind::Struct(inner) => flatten(&path, inner, out),
            ValidationErrorsKind::List(items) => {
                for (i, inner) in items {
                    flatten(&format!("{path}.{i}"), inner, out);
                }
            }
        }
    }
}

fn describe(e: &ValidationError) -> String {
    if let Some(message) = &e.message {
        return message.to_string();
    }
    match (e.params.get("min"), e.params.get("max")) {
        (Some(min), Some(max)) => format!("must be between {min} and {max}"),
        _ => format!("is not valid ({})", e.code),
    }
}

/// The codes used above, as the `&'static str` that `FieldError` carries.
fn static_code(code: &str) -> &'static str {
    const CODES: &[&str] = &[
        "too_long",
        "too_many",
        "invalid_email",
        "invalid_phone",
        "invalid_length",
        "invalid_value",
        "invalid_mcc",
        "duplicate",
        "out_of_range",
    ];
    CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("invalid_value")
}

fn camel_case(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn violations(doc: Value) -> Vec<(String, &'static str)> {
        serde_json::from_value::<CustomerFields>(doc)
            .unwrap()
            .violations()
            .into_iter()
            .map(|e| (e.param, e.code))
            .collect()
    }

    #[test]
    fn nested_paths_are_camel_case() {
        let found = violations(json!({"policy": {"limits": {"perDay": -1}, "ttlDays": 0}}));
        assert_eq!(
            found,
            vec![
                ("policy.limits.perDay".into(), "out_of_range"),
                ("policy.ttlDays".into(), "out_of_range")
            ]
        );
    }

    #[test]
    fn limits_must_be_ordered() {
        let found = violations(json!({"policy": {"limits": {"perAuth": 90000, "perDay": 50000}}}));
        assert_eq!(
            found,
            vec![("policy.limits.perAuth".into(), "limits_inconsistent")]
        );
    }

    #[test]
    fn the_serialised_length_is_that_of_the_text() {
        for value in [
            json!(null),
            json!("x\"y\u{1}é日本"),
            json!({"a": [1, 2.5, -3, true, {"b": "c"}], "": {}}),
            json!(1e300),
        ] {
            assert_eq!(
                serialised_len(&value),
                serde_json::to_vec(&value).unwrap().len()
            );
        }
    }

    #[test]
    fn phone_is_e164() {
        assert!(violations(json!({"phone": "+14155551234"})).is_empty());
        for bad in [
            "14155551234",
            "+0415555123",
            "+123456",
            "+1234567890123456",
            "+1415555123a",
        ] {
            assert_eq!(violations(json!({"phone": bad})).len(), 1, "{bad}");
        }
    }
}
