//! Bodies that are not JSON, or not the JSON object a write takes: malformed and truncated
//! text, nesting beyond any limit, repeated keys, other JSON values, other content types.

use serde_json::json;

use super::*;

pub(super) fn malformed() -> Vec<BodyCase> {
    let texts: &[&[u8]] = &[
        b"{",
        b"}",
        b"{{}}",
        b"{\"email\"",
        b"{\"email\":}",
        b"{\"email\":\"a@example.com\"",
        b"{\"email\" \"a@example.com\"}",
        b"{'email':'a@example.com'}",
        b"{email:\"a@example.com\"}",
        b"{\"email\":'a@example.com'}",
        b"{\"email\":\"a@example.com\",}",
        b"{,}",
        b"{\"a\":1}}",
        b"{} {}",
        b"{}x",
        b"{}\x00",
        b"\x00",
        b"nul",
        b"tru",
        b"NaN",
        b" ",
        b"\n\t\r ",
        b"/*c*/{}",
        b"{}//c",
        b"{\"metadata\":{\"a\":NaN}}",
        b"{\"metadata\":{\"a\":Infinity}}",
        b"{\"metadata\":{\"a\":-Infinity}}",
        b"{\"metadata\":{\"a\":undefined}}",
        b"{\"metadata\":{\"a\":True}}",
        b"{\"metadata\":{\"a\":None}}",
        b"{\"policy\":{\"ttlDays\":0x10}}",
        b"{\"policy\":{\"ttlDays\":010}}",
        b"{\"policy\":{\"ttlDays\":+1}}",
        b"{\"policy\":{\"ttlDays\":.5}}",
        b"{\"policy\":{\"ttlDays\":1.}}",
        b"{\"policy\":{\"ttlDays\":1e}}",
        b"{\"policy\":{\"ttlDays\":--1}}",
        b"{\"policy\":{\"ttlDays\":1_000}}",
        b"{\"email\":\"a\\qb@example.com\"}",
        b"{\"email\":\"\\u12\"}",
        b"{\"email\":\"\\uZZZZ\"}",
        b"{\"email\":\"\\\"}",
        b"{\"email\":\"line\nbreak@example.com\"}",
        b"{\"email\":\"tab\tin@example.com\"}",
        b"{\"email\":\"nul\x00in@example.com\"}",
        b"{\"email\":\"\x1f@example.com\"}",
        b"\xEF\xBB\xBF{}",
        b"\xFF\xFE{\x00}\x00",
        b"{\"email\":\"\xc3\x28@example.com\"}",
        b"{\"email\":\"\xff@example.com\"}",
        b"{\"metadata\":{\"\xc0\xaf\":1}}",
        b"{\"a\":[1,2,]}",
        b"{\"a\":[,1]}",
        b"{\"metadata\":{\"a\":[1 2]}}",
        b"{\"metadata\":{\"a\" 1}}",
        b"{\"metadata\":{:1}}",
        b"{\"metadata\":{1:1}}",
        b"{null:1}",
        b"\"unterminated",
        b"[",
        b"]",
    ];
    texts
        .iter()
        .map(|t| {
            case(
                format!("malformed {}", String::from_utf8_lossy(t).escape_debug()),
                t.to_vec(),
                INVALID_JSON,
            )
        })
        .collect()
}

/// Every strict prefix of a valid body: an unclosed object is never valid JSON.
pub(super) fn truncated() -> Vec<BodyCase> {
    let full = json!({
        "email": "trunc@example.com",
        "phone": "+14155550101",
        "name": {"first": "Trudy", "last": "Cutoff"},
        "policy": {"requireIntent": true, "limits": {"perDay": 5000, "perMonth": 50000}, "allowedMccs": ["5411"]},
        "metadata": {"k": "v", "n": [1.5, null, {"x": "\u{e9}\u{1F600}"}]}
    })
    .to_string();
    let bytes = full.as_bytes();
    // Prefixes of length 0 are an empty body, which reads as `{}` (and creates a customer).
    (1..bytes.len())
        .map(|n| {
            case(
                format!("truncated to {n} of {} bytes", bytes.len()),
                bytes[..n].to_vec(),
                INVALID_JSON,
            )
        })
        .collect()
}

/// Nesting far beyond the parser's depth limit, within the 64 KiB body limit (and one beyond
/// it, which the size check must answer before any parsing).
pub(super) fn deep_nesting() -> Vec<BodyCase> {
    let mut cases = vec![
        case("60,000 unclosed [", "[".repeat(60_000), INVALID_JSON),
        case(
            "30,000-deep closed arrays in metadata",
            format!(
                "{{\"metadata\":{{\"a\":{}{}}}}}",
                "[".repeat(30_000),
                "]".repeat(30_000)
            ),
            INVALID_JSON,
        ),
        case(
            "10,000-deep objects",
            format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)),
            INVALID_JSON,
        ),
        case(
            "12,000-deep unclosed objects",
            "{\"a\":".repeat(12_000),
            INVALID_JSON,
        ),
        case(
            "200-deep metadata value",
            format!(
                "{{\"metadata\":{{\"a\":{}{}}}}}",
                "[".repeat(200),
                "]".repeat(200)
            ),
            INVALID_JSON,
        ),
        case(
            "200-deep policy",
            format!(
                "{{\"policy\":{}1{}}}",
                "{\"a\":".repeat(200),
                "}".repeat(200)
            ),
            INVALID_JSON,
        ),
        case(
            "100,000-deep arrays (200 kB)",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            TOO_LARGE,
        ),
        case(
            "100,000-deep objects in metadata (500 kB)",
            format!(
                "{{\"metadata\":{}1{}}}",
                "{\"a\":".repeat(100_000),
                "}".repeat(100_000)
            ),
            TOO_LARGE,
        ),
    ];
    for c in &mut cases {
        c.name = format!("nesting: {}", c.name);
    }
    cases
}

pub(super) fn duplicate_keys() -> Vec<BodyCase> {
    [
        r#"{"email":"a@example.com","email":"b@example.com"}"#,
        r#"{"email":"a@example.com","email":"a@example.com"}"#,
        r#"{"email":"a@example.com","\u0065mail":"b@example.com"}"#,
        r#"{"email":null,"email":"b@example.com"}"#,
        r#"{"name":{"first":"A","first":"B"}}"#,
        r#"{"name":{},"name":{"first":"B"}}"#,
        r#"{"policy":{"limits":{"perDay":1,"perDay":2}}}"#,
        r#"{"policy":{"limits":{"perDay":1},"limits":{"perMonth":2}}}"#,
        r#"{"policy":{"requireIntent":true,"requireIntent":false}}"#,
        r#"{"policy":{},"policy":{}}"#,
        r#"{"metadata":{"k":"a","k":"b"}}"#,
        r#"{"metadata":{"k":{"x":1,"x":2}}}"#,
        r#"{"metadata":{"a":[{"b":1,"b":1}]}}"#,
        r#"{"type":"consumer","type":"corporate"}"#,
        r#"{"x":1,"x":2}"#,
    ]
    .into_iter()
    .map(|raw| case(format!("duplicate keys: {raw}"), raw, INVALID_JSON))
    .collect()
}

pub(super) fn not_objects() -> Vec<BodyCase> {
    [
        "[]",
        "[{}]",
        "[{\"email\":\"a@example.com\"}]",
        "\"x\"",
        "1",
        "-0",
        "1.5",
        "null",
        "true",
        "  null  ",
    ]
    .into_iter()
    .map(|raw| case(format!("not an object: {raw}"), raw, INVALID_REQUEST))
    .collect()
}

pub(super) fn content_types() -> Vec<BodyCase> {
    let body = br#"{"email":"ct@example.com"}"#.to_vec();
    let mut cases: Vec<BodyCase> = [
        Some("text/plain"),
        Some("application/xml"),
        Some("application/json-patch+json"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        Some("json"),
        Some(""),
        None,
    ]
    .into_iter()
    .map(|ct| BodyCase {
        name: format!("content type {ct:?}"),
        body: body.clone(),
        content_type: ct,
        create: UNSUPPORTED,
        patch: UNSUPPORTED,
    })
    .collect();
    // A JSON content type does not make UTF-16 or form data JSON.
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in "{\"email\":\"u@example.com\"}".encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    cases.push(BodyCase {
        name: "UTF-16 body labelled charset=utf-16".into(),
        body: utf16,
        content_type: Some("application/json; charset=utf-16"),
        create: INVALID_JSON,
        patch: INVALID_JSON,
    });
    cases.push(BodyCase {
        name: "form data labelled JSON".into(),
        body: b"email=f%40example.com".to_vec(),
        content_type: Some("application/json"),
        create: INVALID_JSON,
        patch: INVALID_JSON,
    });
    cases
}
