//! Strings PostgreSQL or the rules cannot take: NUL characters, unpaired surrogates and bytes
//! that are not UTF-8, strings and lists far over their limits.

use serde_json::{json, Value};

use super::*;

/// PostgreSQL cannot store U+0000 in text or jsonb: every place a string can be must refuse it.
pub(super) fn nul_characters() -> Vec<BodyCase> {
    let mut cases: Vec<BodyCase> = STRING_FIELDS
        .iter()
        .flat_map(|path| {
            [
                "\"\\u0000\"",
                "\"a\\u0000b@example.com\"",
                "\"+1415\\u00005550100\"",
            ]
            .into_iter()
            .map(move |raw| field_case("NUL", path, raw, PARAM_INVALID))
        })
        .collect();
    for path in ARRAY_FIELDS {
        for raw in [
            "[\"\\u0000\"]",
            "[\"5411\",\"54\\u000011\"]",
            "[\"ok\",\"\\u0000\"]",
        ] {
            cases.push(field_case("NUL", path, raw, PARAM_INVALID));
        }
    }
    for raw in [
        r#"{"metadata":{"k":"\u0000"}}"#,
        r#"{"metadata":{"k":"tail\u0000"}}"#,
        r#"{"metadata":{"k\u0000":"v"}}"#,
        r#"{"metadata":{"\u0000":"v"}}"#,
        r#"{"metadata":{"k":["a","\u0000"]}}"#,
        r#"{"metadata":{"k":{"deep":{"deeper":"\u0000"}}}}"#,
        r#"{"metadata":{"k":{"de\u0000ep":1}}}"#,
        r#"{"metadata":{"k":[{"\u0000":null}]}}"#,
        r#"{"metadata":{"plan":null,"k":"\u0000"}}"#,
    ] {
        cases.push(case(format!("NUL in metadata: {raw}"), raw, PARAM_INVALID));
    }
    // An unknown field is refused for being unknown, NUL or not.
    for raw in [
        r#"{"em\u0000ail":"a@example.com"}"#,
        r#"{"\u0000":1}"#,
        r#"{"policy":{"\u0000":true}}"#,
        r#"{"policy":{"limits":{"perDay\u0000":1}}}"#,
        r#"{"name":{"first\u0000":"x"}}"#,
    ] {
        cases.push(case(format!("NUL in a key: {raw}"), raw, PARAM_UNKNOWN));
    }
    cases
}

/// serde_json refuses unpaired UTF-16 surrogates, and raw bytes that are not UTF-8.
pub(super) fn lone_surrogates() -> Vec<BodyCase> {
    let strings: &[&[u8]] = &[
        b"\"\\ud800\"",
        b"\"\\udfff\"",
        b"\"\\ud83d\"",
        b"\"\\ud83dx\"",
        b"\"\\ud83d\\u0041\"",
        b"\"\\udc00\\ud800\"",
        b"\"\\ud800\\ud800\"",
        b"\"\xed\xa0\x80\"",
        b"\"\xed\xbf\xbf\"",
        b"\"\xc0\xaf\"",
        b"\"\xf8\x88\x80\x80\x80\"",
        b"\"\xf4\x90\x80\x80\"",
    ];
    let mut cases = Vec::new();
    for path in ["email", "name.first", "name.last", "phone", "metadata.k"] {
        for s in strings {
            let mut body = at(path, "@@").into_bytes();
            let pos = body
                .windows(2)
                .position(|w| w == b"@@")
                .expect("placeholder");
            body.splice(pos..pos + 2, s.iter().copied());
            cases.push(case(
                format!(
                    "bad unicode at {path}: {}",
                    String::from_utf8_lossy(s).escape_debug()
                ),
                body,
                INVALID_JSON,
            ));
        }
    }
    for raw in [
        &b"{\"metadata\":{\"\\ud800\":1}}"[..],
        b"{\"metadata\":{\"\xed\xa0\x80\":1}}",
        b"{\"\\udfff\":1}",
        b"{\"policy\":{\"allowedMerchants\":[\"\\ud800\"]}}",
    ] {
        cases.push(case(
            format!(
                "bad unicode in a key or item: {}",
                String::from_utf8_lossy(raw).escape_debug()
            ),
            raw.to_vec(),
            INVALID_JSON,
        ));
    }
    cases
}

pub(super) fn long_strings() -> Vec<BodyCase> {
    let s = |v: String| Value::String(v).to_string();
    let mut cases = vec![
        field_case(
            "long",
            "email",
            &s(format!("{}@example.com", "a".repeat(10_000))),
            PARAM_INVALID,
        ),
        field_case(
            "long",
            "email",
            &s(format!("a@{}.com", "b".repeat(250))),
            PARAM_INVALID,
        ),
        field_case(
            "long",
            "phone",
            &s(format!("+{}", "1".repeat(10_000))),
            PARAM_INVALID,
        ),
        field_case("long", "name.first", &s("x".repeat(60_000)), PARAM_INVALID),
        field_case("long", "name.first", &s("x".repeat(101)), PARAM_INVALID),
        field_case(
            "long",
            "name.last",
            &s("\u{20ac}".repeat(101)),
            PARAM_INVALID,
        ),
        field_case(
            "long",
            "name.last",
            &s("\u{1F600}".repeat(101)),
            PARAM_INVALID,
        ),
        field_case(
            "long escapes",
            "name.first",
            &format!("\"{}\"", "\\u0041".repeat(10_000)),
            PARAM_INVALID,
        ),
        field_case("long", "type", &s("c".repeat(60_000)), PARAM_INVALID),
        field_case("long", "metadata.k", &s("v".repeat(499)), PARAM_INVALID),
        field_case("long", "metadata.k", &s("v".repeat(60_000)), PARAM_INVALID),
        field_case(
            "long",
            &format!("metadata.{}", "k".repeat(41)),
            "1",
            PARAM_INVALID,
        ),
        field_case(
            "long",
            &format!("metadata.{}", "k".repeat(60_000)),
            "1",
            PARAM_INVALID,
        ),
        field_case(
            "long",
            "policy.allowedMerchants",
            &format!("[{}]", s("m".repeat(201))),
            PARAM_INVALID,
        ),
        field_case(
            "long",
            "policy.allowedMerchants",
            &format!("[{}]", s("m".repeat(60_000))),
            PARAM_INVALID,
        ),
        field_case(
            "long",
            "policy.allowedMccs",
            &format!("[{}]", s("5".repeat(10_000))),
            PARAM_INVALID,
        ),
        field_case(
            "many",
            "policy.allowedMccs",
            &Value::from(
                (0..1001)
                    .map(|i| format!("{i:04}"))
                    .collect::<Vec<String>>(),
            )
            .to_string(),
            PARAM_INVALID,
        ),
        field_case(
            "many",
            "policy.allowedMerchants",
            &Value::from((0..101).map(|i| format!("m{i}")).collect::<Vec<String>>()).to_string(),
            PARAM_INVALID,
        ),
        field_case(
            "many",
            "metadata",
            &Value::Object((0..51).map(|i| (format!("k{i}"), json!(i))).collect()).to_string(),
            PARAM_INVALID,
        ),
        case(
            "long unknown key",
            format!("{{{}:1}}", s("x".repeat(60_000))),
            PARAM_UNKNOWN,
        ),
        case(
            "70,000-byte email",
            at("email", &s("a".repeat(70_000))),
            TOO_LARGE,
        ),
        case(
            "a valid body padded to 70,000 bytes",
            format!("{{\"email\":\"pad@example.com\"{}}}", " ".repeat(70_000)),
            TOO_LARGE,
        ),
    ];
    for c in &mut cases {
        c.name = format!("long: {}", c.name);
    }
    cases
}
