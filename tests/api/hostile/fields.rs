//! Fields of the wrong JSON type, unknown fields and read-only ones.

use super::*;

pub(super) fn wrong_types() -> Vec<BodyCase> {
    let mut cases = Vec::new();
    let mut add = |paths: &[&str], values: &[&str]| {
        for path in paths {
            for raw in values {
                cases.push(field_case("wrong type", path, raw, PARAM_INVALID));
            }
        }
    };
    add(
        STRING_FIELDS,
        &[
            "true",
            "false",
            "0",
            "1.5",
            "[]",
            "{}",
            "[\"a@example.com\"]",
        ],
    );
    add(
        INT_FIELDS,
        &[
            "true",
            "\"1\"",
            "\"ten\"",
            "[]",
            "[1]",
            "{}",
            "{\"value\":1}",
        ],
    );
    add(
        BOOL_FIELDS,
        &["0", "1", "\"true\"", "\"false\"", "[]", "{}", "[true]"],
    );
    add(
        ARRAY_FIELDS,
        &[
            "\"5411\"",
            "5411",
            "true",
            "{}",
            "{\"0\":\"5411\"}",
            "[5411]",
            "[null]",
            "[{}]",
            "[[\"5411\"]]",
            "[true]",
            "[\"5411\",1]",
        ],
    );
    add(
        OBJECT_FIELDS,
        &[
            "\"s\"",
            "1",
            "1.5",
            "true",
            "[]",
            "[{}]",
            "[{\"first\":\"A\"}]",
        ],
    );
    cases
}

pub(super) fn unknown_and_read_only() -> Vec<BodyCase> {
    let mut cases: Vec<BodyCase> = [
        r#"{"id":"cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E"}"#,
        r#"{"status":"active"}"#,
        r#"{"status":"deleted","email":"a@example.com"}"#,
        r#"{"createdAt":"2000-01-01T00:00:00.000Z"}"#,
        r#"{"updatedAt":"2999-01-01T00:00:00.000Z"}"#,
        r#"{"object":"customer"}"#,
    ]
    .into_iter()
    .map(|raw| case(format!("read-only: {raw}"), raw, NOT_UPDATABLE))
    .collect();
    // Attempts to reach columns, the tenant or prototype-like keys are just unknown fields.
    for raw in [
        r#"{"emial":"a@example.com"}"#,
        r#"{"org":"org_b"}"#,
        r#"{"org_id":"org_b"}"#,
        r#"{"mode":"live"}"#,
        r#"{"version":99}"#,
        r#"{"first_name":"Eve"}"#,
        r#"{"__proto__":{"admin":true}}"#,
        r#"{"constructor":{"prototype":{"admin":true}}}"#,
        r#"{"policy":{"__proto__":{}}}"#,
        r#"{"policy":{"limits":{"perday":1}}}"#,
        r#"{"name":{"middle":"X"}}"#,
        r#"{"EMAIL":"a@example.com"}"#,
        r#"{"":1}"#,
        r#"{"policy.limits.perDay":1}"#,
    ] {
        cases.push(case(format!("unknown: {raw}"), raw, PARAM_UNKNOWN));
    }
    cases
}
