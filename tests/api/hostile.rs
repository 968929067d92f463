//! Hostile input (issue 6): a corpus of malformed, truncated, absurdly nested, ill-typed,
//! oversized and malicious requests, sent over HTTP to create, PATCH and the list.
//!
//! Every answer must be the contract's error envelope (§6) with a 4xx status — a 5xx means the
//! service let client garbage reach a place that cannot handle it — and the database must be
//! exactly as it was (customers incl. version and updated_at, and idempotency keys): a refused
//! request writes nothing and stores no idempotent response. The one corpus that must succeed is
//! SQL text in strings, which must be stored and returned byte for byte.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::*;

// ---------------------------------------------------------------------------------------------
// What an answer must be
// ---------------------------------------------------------------------------------------------

/// The status and envelope code a hostile request must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expect {
    status: u16,
    code: &'static str,
}

const INVALID_JSON: Expect = Expect {
    status: 400,
    code: "invalid_json",
};
const INVALID_REQUEST: Expect = Expect {
    status: 400,
    code: "invalid_request",
};
const PARAM_INVALID: Expect = Expect {
    status: 400,
    code: "parameter_invalid",
};
const PARAM_UNKNOWN: Expect = Expect {
    status: 400,
    code: "parameter_unknown",
};
const NOT_UPDATABLE: Expect = Expect {
    status: 400,
    code: "parameter_not_updatable",
};
const INVALID_CURSOR: Expect = Expect {
    status: 400,
    code: "invalid_cursor",
};
const KEY_INVALID: Expect = Expect {
    status: 400,
    code: "idempotency_key_invalid",
};
const NOT_FOUND: Expect = Expect {
    status: 404,
    code: "not_found",
};
const PRECONDITION: Expect = Expect {
    status: 412,
    code: "precondition_failed",
};
const TOO_LARGE: Expect = Expect {
    status: 413,
    code: "payload_too_large",
};
const UNSUPPORTED: Expect = Expect {
    status: 415,
    code: "unsupported_media_type",
};

/// The codes §6 allows for each status, and the `type` each code belongs to.
fn code_fits_status(status: u16, code: &str) -> bool {
    let allowed: &[&str] = match status {
        400 => &[
            "invalid_json",
            "invalid_request",
            "parameter_invalid",
            "parameter_unknown",
            "parameter_not_updatable",
            "invalid_cursor",
            "idempotency_key_invalid",
        ],
        401 => &["unauthorized"],
        403 => &["insufficient_scope"],
        404 => &["not_found"],
        405 => &["method_not_allowed"],
        409 => &["customer_deleted", "idempotency_request_in_progress"],
        412 => &["precondition_failed"],
        413 => &["payload_too_large"],
        415 => &["unsupported_media_type"],
        422 => &["idempotency_key_reused"],
        429 => &["rate_limited"],
        _ => &[],
    };
    allowed.contains(&code)
}

/// Checks that `response` is a 4xx in the §6 envelope, one of `allowed`; returns the error.
async fn assert_envelope(response: Response, allowed: &[Expect], what: &str) -> Value {
    let status = response.status().as_u16();
    assert!(
        (400..500).contains(&status),
        "{what}: expected a 4xx, got {status}: {:?}",
        response.text().await
    );
    let header_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{what}: no X-Request-Id"));
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: errors are JSON, got {content_type:?}"
    );
    let text = response.text().await.expect("a body");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: the error is not JSON ({e}): {text}"));
    let error = &body["error"];
    let code = error["code"].as_str().unwrap_or("");
    assert!(
        allowed.iter().any(|e| e.status == status && e.code == code),
        "{what}: expected one of {allowed:?}, got {status} {code}: {text}"
    );
    assert!(
        code_fits_status(status, code),
        "{what}: {code} is not a {status} code"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{what}: {text}");
    let kind = error["type"].as_str().unwrap_or("");
    assert!(
        [
            "invalid_request_error",
            "authentication_error",
            "permission_error",
            "idempotency_error",
            "rate_limit_error",
        ]
        .contains(&kind),
        "{what}: type {kind:?}"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: message: {text}"
    );
    assert_eq!(
        error["requestId"].as_str(),
        Some(header_id.as_str()),
        "{what}: the envelope's requestId is the X-Request-Id"
    );
    if code.starts_with("parameter_") {
        assert!(
            error["param"].is_string(),
            "{what}: {code} names its param: {text}"
        );
    }
    let allowed_keys: BTreeSet<&str> = ["type", "code", "message", "param", "details", "requestId"]
        .into_iter()
        .collect();
    for key in error.as_object().expect("error is an object").keys() {
        assert!(
            allowed_keys.contains(key.as_str()),
            "{what}: unexpected member {key}"
        );
    }
    error.clone()
}

/// The whole state a refused request must not touch: every customer row (version and updated_at
/// included) and every idempotency key row, as text.
async fn db_state(app: &TestApp) -> (String, String) {
    let customers: String = sqlx::query_scalar(
        "SELECT coalesce(jsonb_agg(to_jsonb(c) ORDER BY c.org_id, c.mode, c.id), '[]')::text \
         FROM customers c",
    )
    .fetch_one(&app.db)
    .await
    .expect("customers snapshot");
    let keys: String = sqlx::query_scalar(
        "SELECT coalesce(jsonb_agg(to_jsonb(k) ORDER BY k.org_id, k.mode, k.key), '[]')::text \
         FROM idempotency_keys k",
    )
    .fetch_one(&app.db)
    .await
    .expect("idempotency keys snapshot");
    (customers, keys)
}

/// The corpus sends thousands of requests as one tenant; the rate limit is not under test.
async fn app_without_rate_limits() -> TestApp {
    spawn_app_with(|settings| settings.rate_limit.enabled = false).await
}

/// A customer with every field set, so that a patch has something to merge into.
fn rich_customer() -> Value {
    json!({
        "email": "hostile.base@example.com",
        "phone": "+14155550100",
        "name": {"first": "Basil", "last": "Hostile"},
        "policy": {
            "requireIntent": true,
            "autoApproveBelow": 1000,
            "cooldownMinutes": 5,
            "limits": {"perAuth": 1000, "perDay": 5000, "perMonth": 50000},
            "allowedMccs": ["5411"],
            "blockedMccs": ["7995"],
            "allowedMerchants": ["Acme"]
        },
        "metadata": {"plan": "pro", "nested": {"a": [1, 2]}}
    })
}

// ---------------------------------------------------------------------------------------------
// The body corpus
// ---------------------------------------------------------------------------------------------

struct BodyCase {
    name: String,
    body: Vec<u8>,
    /// None: no Content-Type header.
    content_type: Option<&'static str>,
    create: Expect,
    patch: Expect,
}

fn case(name: impl Into<String>, body: impl Into<Vec<u8>>, expect: Expect) -> BodyCase {
    BodyCase {
        name: name.into(),
        body: body.into(),
        content_type: Some("application/json"),
        create: expect,
        patch: expect,
    }
}

/// `raw` placed at a dotted path: `at("policy.limits.perDay", "1")` is
/// `{"policy":{"limits":{"perDay":1}}}`.
fn at(path: &str, raw: &str) -> String {
    let segments: Vec<&str> = path.split('.').collect();
    let mut out = String::new();
    for s in &segments {
        out.push_str(&format!("{{{}:", Value::String((*s).to_owned())));
    }
    out.push_str(raw);
    out.push_str(&"}".repeat(segments.len()));
    out
}

/// `type` may be set on create only; on a PATCH any `type` is read-only.
fn on_patch(path: &str, create: Expect) -> Expect {
    if path == "type" || path.starts_with("type.") {
        NOT_UPDATABLE
    } else {
        create
    }
}

fn field_case(name: &str, path: &str, raw: &str, create: Expect) -> BodyCase {
    BodyCase {
        name: format!("{name} at {path}: {}", preview(raw)),
        body: at(path, raw).into_bytes(),
        content_type: Some("application/json"),
        create,
        patch: on_patch(path, create),
    }
}

fn preview(raw: &str) -> String {
    let mut s: String = raw.chars().take(40).collect();
    if raw.chars().count() > 40 {
        s.push_str(&format!("…({} bytes)", raw.len()));
    }
    s
}

const STRING_FIELDS: &[&str] = &["email", "phone", "name.first", "name.last", "type"];
const INT_FIELDS: &[&str] = &[
    "policy.autoApproveBelow",
    "policy.attestationWindowMinutes",
    "policy.cooldownMinutes",
    "policy.ttlMinutes",
    "policy.ttlDays",
    "policy.limits.perAuth",
    "policy.limits.perDay",
    "policy.limits.perMonth",
];
const BOOL_FIELDS: &[&str] = &[
    "policy.requireIntent",
    "policy.requireAttestation",
    "policy.requireApproval",
    "policy.lockToFirstMerchant",
];
const ARRAY_FIELDS: &[&str] = &[
    "policy.allowedMccs",
    "policy.blockedMccs",
    "policy.allowedMerchants",
];
const OBJECT_FIELDS: &[&str] = &["name", "policy", "policy.limits", "metadata"];

fn malformed() -> Vec<BodyCase> {
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
fn truncated() -> Vec<BodyCase> {
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
fn deep_nesting() -> Vec<BodyCase> {
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

/// Numbers that are not an integer of cents or minutes, or not one in range. (Integers written
/// as `12.0`, `1e3` or `-0` are integers: see `integers.rs`.)
fn numbers() -> Vec<BodyCase> {
    let values: &[(&str, Expect)] = &[
        ("1e400", INVALID_JSON),
        ("-1e400", INVALID_JSON),
        ("9007199254740993", PARAM_INVALID),
        ("12.5", PARAM_INVALID),
        ("1e-400", PARAM_INVALID),
        ("-1", PARAM_INVALID),
        ("1000000000001", PARAM_INVALID),
        ("9223372036854775807", PARAM_INVALID),
        ("9223372036854775808", PARAM_INVALID),
        ("18446744073709551615", PARAM_INVALID),
        ("18446744073709551616", PARAM_INVALID),
        ("-9223372036854775808", PARAM_INVALID),
        ("-9223372036854775809", PARAM_INVALID),
        ("123456789012345678901234567890", PARAM_INVALID),
        ("0.000000000000000000001", PARAM_INVALID),
    ];
    INT_FIELDS
        .iter()
        .flat_map(|path| {
            values
                .iter()
                .map(move |(raw, expect)| field_case("number", path, raw, *expect))
        })
        .collect()
}

/// PostgreSQL cannot store U+0000 in text or jsonb: every place a string can be must refuse it.
fn nul_characters() -> Vec<BodyCase> {
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
fn lone_surrogates() -> Vec<BodyCase> {
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

fn long_strings() -> Vec<BodyCase> {
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

fn duplicate_keys() -> Vec<BodyCase> {
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

fn wrong_types() -> Vec<BodyCase> {
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

fn not_objects() -> Vec<BodyCase> {
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

fn unknown_and_read_only() -> Vec<BodyCase> {
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

fn content_types() -> Vec<BodyCase> {
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

fn body_corpus() -> Vec<BodyCase> {
    [
        malformed(),
        truncated(),
        deep_nesting(),
        numbers(),
        nul_characters(),
        lone_surrogates(),
        long_strings(),
        duplicate_keys(),
        wrong_types(),
        not_objects(),
        unknown_and_read_only(),
        content_types(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

// ---------------------------------------------------------------------------------------------
// Path and query corpus
// ---------------------------------------------------------------------------------------------

/// Ids that cannot name a customer: malformed percent-encoding, NUL, traversal, SQL, huge.
fn hostile_ids() -> Vec<String> {
    let mut ids: Vec<String> = [
        "%ZZ",
        "%C0%AF",
        "%",
        "%%",
        "%E2%82",
        "%FF%FE",
        "%00",
        "cus_%00",
        "cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4%00",
        "cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E%00",
        "cus_01JD7Q4X2V6W8Y9Z0A1B2C3D%C0%AF",
        "cus_%F0%9F%92%A9",
        "cus_01jd7q4x2v6w8y9z0a1b2c3d4e",
        "cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E%27--",
        "%27%20OR%20%271%27%3D%271",
        "cus_'%20OR%20'1'='1",
        "..%2F..%2Fhealthz",
        "%2F",
        "cus_%2A",
        "cus_%25",
        "cus_________________________",
        "%E2%80%AE",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    ids.push(format!("cus_{}", "A".repeat(10_000)));
    ids.push("%41".repeat(3_000));
    ids
}

/// Query strings the list must refuse, with the error each must get.
fn hostile_queries() -> Vec<(String, Expect)> {
    let mut queries: Vec<(String, Expect)> = [
        ("limit=%FF", PARAM_INVALID),
        ("limit=%", PARAM_INVALID),
        ("limit=%ZZ", PARAM_INVALID),
        ("limit=1%00", PARAM_INVALID),
        ("limit=%00", PARAM_INVALID),
        ("limit=99999999999999999999", PARAM_INVALID),
        ("limit=-1", PARAM_INVALID),
        ("limit=0", PARAM_INVALID),
        ("limit=101", PARAM_INVALID),
        ("limit=1.5", PARAM_INVALID),
        ("limit=1e1", PARAM_INVALID),
        ("limit=0x10", PARAM_INVALID),
        ("limit=", PARAM_INVALID),
        ("limit", PARAM_INVALID),
        ("limit=1&limit=2", PARAM_INVALID),
        ("limit=%EF%BC%91", PARAM_INVALID),
        ("starting_after=%", PARAM_UNKNOWN),
        (
            "starting_after=cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E",
            PARAM_UNKNOWN,
        ),
        ("ending_before=%ZZ", PARAM_UNKNOWN),
        ("%00=1", PARAM_UNKNOWN),
        ("%ZZ=1", PARAM_UNKNOWN),
        ("%C0%AF=1", PARAM_UNKNOWN),
        ("=", PARAM_UNKNOWN),
        ("limit%00=1", PARAM_UNKNOWN),
        ("LIMIT=1", PARAM_UNKNOWN),
        ("cursor=%ZZ", INVALID_CURSOR),
        ("cursor=%00", INVALID_CURSOR),
        ("cursor=%", INVALID_CURSOR),
        ("cursor=", INVALID_CURSOR),
        ("cursor=%C0%AF", INVALID_CURSOR),
        ("cursor=eyJhbGciOiJub25lIn0.e30.", INVALID_CURSOR),
        ("cursor='%20OR%201=1--", INVALID_CURSOR),
        ("status=%00", PARAM_INVALID),
        ("status=PENDING", PARAM_INVALID),
        ("status=pending%00", PARAM_INVALID),
        ("status=%ZZ", PARAM_INVALID),
        ("type=%C0%AF", PARAM_INVALID),
        ("type=consumer'--", PARAM_INVALID),
        ("email=%00", PARAM_INVALID),
        ("email=a%00b@example.com", PARAM_INVALID),
        ("email=", PARAM_INVALID),
        ("status=pending&status=active", PARAM_INVALID),
    ]
    .into_iter()
    .map(|(q, e)| (q.to_owned(), e))
    .collect();
    queries.push((format!("cursor={}", "A".repeat(10_000)), INVALID_CURSOR));
    queries.push((format!("email={}", "e".repeat(300)), PARAM_INVALID));
    queries.push((format!("{}=1", "x".repeat(5_000)), PARAM_UNKNOWN));
    queries
}

/// Filters that are odd but legal: a 200 that must find nothing (the table is not empty), since
/// the email filter is an exact match — no wildcard, no injection.
fn harmless_queries() -> Vec<String> {
    [
        "email=%25",
        "email=_%25",
        "email=*",
        "email=%27%20OR%20%271%27%3D%271",
        "email=x%27%20OR%201%3D1--",
        "email=%5C",
        "email=%C0%AF",
        "email=%ZZ",
        "email=%",
        "email=hostile.base%40example.com%27--",
        "email=%E2%80%AE",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP (for what a client library will not send)
// ---------------------------------------------------------------------------------------------

/// What the server did with a raw request.
#[derive(Debug)]
enum RawOutcome {
    Answered {
        status: u16,
        text: String,
    },
    /// Closed or reset without a response: allowed for requests the server will not read.
    Closed,
}

/// Sends `head` and `body` on a fresh connection; the server may stop reading at any point.
fn raw_exchange(port: u16, head: String, body: Vec<u8>) -> RawOutcome {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // Not an assertion on timing: a bound so that a server that hangs fails the test instead
    // of hanging it.
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("set a read timeout");
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(&body));
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    match text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|s| s.parse().ok())
    {
        Some(status) => RawOutcome::Answered { status, text },
        None => {
            assert!(
                response.is_empty(),
                "an answer that is not HTTP/1.1: {text:?}"
            );
            RawOutcome::Closed
        }
    }
}

async fn raw(app: &TestApp, head: String, body: Vec<u8>) -> RawOutcome {
    let port = app.port;
    tokio::task::spawn_blocking(move || raw_exchange(port, head, body))
        .await
        .expect("the raw request thread")
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(8192) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

async fn assert_alive(app: &TestApp, what: &str) {
    let response = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: the server is gone: {e}"));
    assert_eq!(response.status(), 200, "{what}: /healthz");
}

/// A raw request's answer: a 4xx (with the envelope if it got as far as the application) or a
/// closed connection — never a 5xx, never a success.
fn assert_refused_raw(outcome: &RawOutcome, what: &str) {
    if let RawOutcome::Answered { status, text } = outcome {
        assert!(
            (400..500).contains(status),
            "{what}: expected a 4xx or a closed connection, got {status}: {}",
            preview(text)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// The sizes of the corpora, printed so that the figure can be reported.
fn print_corpus_size() {
    let bodies = body_corpus().len();
    let ids = hostile_ids().len();
    let queries = hostile_queries().len() + harmless_queries().len();
    let headers = HEADER_CASES;
    let sql = SQL_FRAGMENTS.len();
    println!(
        "hostile corpus: {bodies} bodies (x2: create and PATCH), {ids} ids (x4 routes), \
         {queries} list queries, {headers} raw header/framing cases, {sql} SQL fragments; \
         {} cases, {} requests",
        bodies + ids + queries + headers + sql,
        bodies * 2 + ids * 4 + queries + headers + sql
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_are_4xx_envelopes_and_change_nothing() {
    print_corpus_size();
    let app = app_without_rate_limits().await;
    let base = app.create_ok(rich_customer()).await;
    let id = base["id"].as_str().expect("an id").to_owned();
    let before = db_state(&app).await;
    let corpus = body_corpus();
    let mut seen_codes = BTreeSet::new();
    for (n, case) in corpus.iter().enumerate() {
        for (method, path, expect, default_type) in [
            (
                Method::POST,
                "/v1/customers".to_owned(),
                case.create,
                "application/json",
            ),
            (
                Method::PATCH,
                format!("/v1/customers/{id}"),
                case.patch,
                "application/merge-patch+json",
            ),
        ] {
            // A key on every write: a refused request must not store a response under it.
            let mut request = app
                .request(method.clone(), &path)
                .header("idempotency-key", format!("hostile-{n}-{method}"))
                .body(case.body.clone());
            match case.content_type {
                Some("application/json") => {
                    request = request.header("content-type", default_type);
                }
                Some(ct) => request = request.header("content-type", ct),
                None => {}
            }
            let response = request.send().await.expect("request sent");
            let what = format!("{method} #{n} {}", case.name);
            let error = assert_envelope(response, &[expect], &what).await;
            seen_codes.insert(error["code"].as_str().unwrap_or("").to_owned());
        }
        assert_eq!(
            db_state(&app).await,
            before,
            "#{n} {}: the database changed",
            case.name
        );
    }
    assert_alive(&app, "after the body corpus").await;
    // The customer the patches aimed at is intact.
    let after = app.get_json(&id).await;
    assert_eq!(after, base);
    println!(
        "hostile bodies: {} cases, {} requests, codes {seen_codes:?}",
        corpus.len(),
        corpus.len() * 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_and_query_strings_are_4xx_envelopes() {
    let app = app_without_rate_limits().await;
    let base = app.create_ok(rich_customer()).await;
    let before = db_state(&app).await;
    let ids = hostile_ids();
    for (n, id) in ids.iter().enumerate() {
        for (method, path) in [
            (Method::GET, format!("/v1/customers/{id}")),
            (Method::PATCH, format!("/v1/customers/{id}")),
            (Method::DELETE, format!("/v1/customers/{id}")),
            (Method::POST, format!("/v1/customers/{id}/activate")),
        ] {
            let mut request = app.request(method.clone(), &path);
            if method == Method::PATCH {
                request = request
                    .header("content-type", "application/merge-patch+json")
                    .body(r#"{"email":"stolen@example.com"}"#);
            }
            let response = request.send().await.expect("request sent");
            let what = format!("{method} id #{n} {}", preview(id));
            // A malformed id names no customer: the same 404 as any other missing one.
            assert_envelope(response, &[NOT_FOUND], &what).await;
        }
        assert_eq!(db_state(&app).await, before, "id {}", preview(id));
    }

    let queries = hostile_queries();
    for (query, expect) in &queries {
        let response = app
            .request(Method::GET, &format!("/v1/customers?{query}"))
            .send()
            .await
            .expect("request sent");
        assert_envelope(response, &[*expect], &format!("GET ?{}", preview(query))).await;
    }
    let harmless = harmless_queries();
    for query in &harmless {
        let response = app
            .request(Method::GET, &format!("/v1/customers?{query}"))
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        if status == 200 {
            let page: Value = response.json().await.expect("a page");
            assert_eq!(
                page["data"],
                json!([]),
                "?{query} must match no customer (exact email match)"
            );
            assert_eq!(page["hasMore"], false, "?{query}");
        } else {
            assert_envelope(
                response,
                &[PARAM_INVALID, INVALID_REQUEST],
                &format!("GET ?{query}"),
            )
            .await;
        }
    }
    assert_eq!(db_state(&app).await, before);
    assert_alive(&app, "after the path and query corpus").await;
    assert_eq!(
        app.get_json(base["id"].as_str().expect("an id")).await,
        base
    );
    println!(
        "hostile ids and queries: {} ids x 4 routes (all 404), {} refused \
         queries, {} harmless queries",
        ids.len(),
        queries.len(),
        harmless.len()
    );
}

const HEADER_CASES: usize = 14;
const SERVED_64_KIB: &str = "a 64 KiB header of a name the service ignores";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_malformed_headers_are_never_a_5xx() {
    let app = app_without_rate_limits().await;
    let base = app.create_ok(rich_customer()).await;
    let id = base["id"].as_str().expect("an id").to_owned();
    let before = db_state(&app).await;
    let auth = token(ORG, "test", ADMIN);
    let port = app.port;
    let head = |method: &str, path: &str, extra: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {auth}\r\n\
             Connection: close\r\n{extra}\r\n"
        )
    };
    let body = br#"{"email":"smuggled@example.com"}"#.to_vec();
    // actix-web answers 431 only past a 128 KiB request head (a constant it does not let us
    // change), so a 64 KiB header of a name the service ignores is served: that one may get a
    // 2xx, the heads past the limit must be refused.
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        (
            SERVED_64_KIB,
            head("GET", "/v1/customers", &format!("X-Big: {}\r\n", "a".repeat(65_536))),
            vec![],
        ),
        (
            "a 200 KiB header on a create",
            head(
                "POST",
                "/v1/customers",
                &format!(
                    "X-Big: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                    "a".repeat(200 * 1024),
                    body.len()
                ),
            ),
            body.clone(),
        ),
        (
            "a 64 KiB Authorization header",
            format!(
                "GET /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                "a".repeat(65_536)
            ),
            vec![],
        ),
        (
            "a 1 MiB header",
            head("GET", "/v1/customers", &format!("X-Big: {}\r\n", "b".repeat(1 << 20))),
            vec![],
        ),
        (
            "300 headers",
            head(
                "GET",
                "/v1/customers",
                &(0..300).map(|i| format!("X-H-{i}: v\r\n")).collect::<String>(),
            ),
            vec![],
        ),
        (
            "a 64 KiB request line",
            head("GET", &format!("/v1/customers?email={}", "e".repeat(65_536)), ""),
            vec![],
        ),
        (
            "two different Content-Lengths",
            head(
                "POST",
                "/v1/customers",
                &format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\nContent-Length: 5\r\n",
                    body.len()
                ),
            ),
            body.clone(),
        ),
        (
            "Content-Length and chunked together",
            head(
                "POST",
                "/v1/customers",
                &format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                    body.len()
                ),
            ),
            chunked(&body),
        ),
        (
            "a negative Content-Length",
            head(
                "POST",
                "/v1/customers",
                "Content-Type: application/json\r\nContent-Length: -1\r\n",
            ),
            body.clone(),
        ),
        (
            "a 20-digit Content-Length",
            head(
                "POST",
                "/v1/customers",
                "Content-Type: application/json\r\nContent-Length: 99999999999999999999\r\n",
            ),
            body.clone(),
        ),
        (
            "an unknown Transfer-Encoding",
            head(
                "POST",
                "/v1/customers",
                "Content-Type: application/json\r\nTransfer-Encoding: gzip, identity\r\n",
            ),
            body.clone(),
        ),
        (
            "a bad chunk size",
            head(
                "POST",
                "/v1/customers",
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
            ),
            b"zz\r\n{}\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "100,000-deep nesting sent chunked (no Content-Length)",
            head(
                "POST",
                "/v1/customers",
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
            ),
            chunked(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes()),
        ),
        (
            "a header with a NUL in its value",
            head("GET", "/v1/customers", "X-Evil: a\0b\r\n"),
            vec![],
        ),
    ];
    assert_eq!(cases.len(), HEADER_CASES);
    for (what, head, body) in cases {
        let outcome = raw(&app, head, body).await;
        match &outcome {
            RawOutcome::Answered { status, .. } if what == SERVED_64_KIB => {
                assert!(*status < 500, "{what}: {status}");
            }
            _ => assert_refused_raw(&outcome, what),
        }
        match &outcome {
            RawOutcome::Answered { status, .. } => println!("raw: {what}: {status}"),
            RawOutcome::Closed => println!("raw: {what}: closed"),
        }
        if let RawOutcome::Answered { status: 413, text } = &outcome {
            assert!(text.contains("payload_too_large"), "{what}: {text}");
        }
        assert_alive(&app, what).await;
        assert_eq!(db_state(&app).await, before, "{what}: the database changed");
    }

    // Header values the application reads: each refused with the envelope (no key is stored).
    let big = "k".repeat(8 * 1024);
    let response = app
        .request(Method::POST, "/v1/customers")
        .header("idempotency-key", &big)
        .json(&json!({"email": "key@example.com"}))
        .send()
        .await
        .expect("sent");
    assert_envelope(response, &[KEY_INVALID], "an 8 KiB Idempotency-Key").await;
    let response = app
        .request(Method::POST, "/v1/customers")
        .header(
            "idempotency-key",
            reqwest::header::HeaderValue::from_bytes(b"caf\xe9-key").expect("obs-text is allowed"),
        )
        .json(&json!({"email": "key@example.com"}))
        .send()
        .await
        .expect("sent");
    assert_envelope(response, &[KEY_INVALID], "a Latin-1 Idempotency-Key").await;
    let response = app
        .request(Method::PATCH, &format!("/v1/customers/{id}"))
        .header("if-match", format!("\"{}\"", "9".repeat(8 * 1024)))
        .json(&json!({"email": "ifmatch@example.com"}))
        .send()
        .await
        .expect("sent");
    assert_envelope(response, &[PRECONDITION], "an 8 KiB If-Match").await;
    let response = app
        .request(Method::PATCH, &format!("/v1/customers/{id}"))
        .header(
            "if-match",
            reqwest::header::HeaderValue::from_bytes(b"\"1\xff\"").expect("obs-text is allowed"),
        )
        .json(&json!({"email": "ifmatch@example.com"}))
        .send()
        .await
        .expect("sent");
    assert_envelope(
        response,
        &[PRECONDITION, INVALID_REQUEST],
        "a non-ASCII If-Match",
    )
    .await;
    let response = app
        .request(Method::POST, "/v1/customers")
        .header(
            "content-type",
            format!("application/{}", "x".repeat(8 * 1024)),
        )
        .body(r#"{"email":"ct@example.com"}"#)
        .send()
        .await
        .expect("sent");
    assert_envelope(response, &[UNSUPPORTED], "an 8 KiB Content-Type").await;
    assert_eq!(db_state(&app).await, before);

    // A hostile request id is not echoed (it would reach the log line); a fresh one is made.
    let response = app
        .request(Method::GET, &format!("/v1/customers/{id}"))
        .header("x-request-id", format!("{}!", "r".repeat(8 * 1024)))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let echoed = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(echoed.starts_with("req_"), "{}", preview(&echoed));
    assert_eq!(app.get_json(&id).await, base);
}

/// SQL in strings is data: stored and returned byte for byte, and the tables are still there.
const SQL_FRAGMENTS: &[&str] = &[
    "'; DROP TABLE customers; --",
    "'; DROP TABLE idempotency_keys; --",
    "' OR '1'='1",
    "\" OR \"\"=\"",
    "1; DELETE FROM customers WHERE '1'='1",
    "' UNION SELECT org_id, id, email FROM customers --",
    "Robert'); DROP TABLE customers;--",
    "$$; SELECT pg_sleep(10); $$",
    "$tag$ $1 $2 ::jsonb",
    "/* comment */ -- comment",
    "\\'; \\x00 \\u0000 \\\\",
    "%_%' ESCAPE '\\",
    "$.metadata ? (@ == 1)",
    "{\"$ne\": null}",
    "'||(SELECT current_user)||'",
    "'; COPY customers TO '/tmp/x'; --",
    "\u{2028}\u{2029}\u{feff} e\u{301} \u{1F600} \u{202e}",
    "\r\n\t'\"`;",
];

#[tokio::test]
async fn sql_fragments_are_stored_and_returned_verbatim() {
    let app = app_without_rate_limits().await;
    let mut metadata = serde_json::Map::new();
    for (i, fragment) in SQL_FRAGMENTS.iter().enumerate() {
        metadata.insert(format!("sql{i}"), json!(fragment));
    }
    metadata.insert("quote'key\"".into(), json!("a\"b'c"));
    metadata.insert("semi;colon -- key".into(), json!(";"));
    metadata.insert(
        "nested".into(),
        json!({"sql": ["'; DROP TABLE idempotency_keys; --", {"x'": "1; SELECT 1"}]}),
    );
    metadata.insert(
        "numbers".into(),
        json!([9007199254740993_u64, -9223372036854775808_i64, 1.5e300, 0.1]),
    );
    let body = json!({
        "email": "o'brien+sql@example.com",
        "name": {"first": "Robert'); DROP TABLE customers;--", "last": "' OR '1'='1"},
        "policy": {"allowedMerchants": SQL_FRAGMENTS[..10].to_vec()},
        "metadata": Value::Object(metadata.clone())
    });
    // Keys are visible ASCII, so no spaces: comments stand in for them.
    let key = "';DROP/**/TABLE/**/idempotency_keys;--";
    let response = app
        .request(Method::POST, "/v1/customers")
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    let created_text = response.text().await.expect("a body");
    assert_eq!(status, 201, "{created_text}");
    let created: Value = serde_json::from_str(&created_text).expect("JSON");
    let id = created["id"].as_str().expect("an id").to_owned();
    for (field, expected) in [
        ("email", &body["email"]),
        ("name", &body["name"]),
        ("metadata", &body["metadata"]),
    ] {
        assert_eq!(&created[field], expected, "{field} as answered");
    }
    assert_eq!(
        created["policy"]["allowedMerchants"],
        body["policy"]["allowedMerchants"]
    );
    assert_eq!(app.get_json(&id).await, created, "GET shows the same");

    // Straight from the database: the columns hold the input, not an escaped variant.
    let (email, first, last, stored_metadata, policy): (String, String, String, Value, Value) =
        sqlx::query_as(
            "SELECT email, first_name, last_name, metadata, policy FROM customers WHERE id = $1",
        )
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .expect("stored");
    assert_eq!(email, "o'brien+sql@example.com");
    assert_eq!(first, "Robert'); DROP TABLE customers;--");
    assert_eq!(last, "' OR '1'='1");
    assert_eq!(stored_metadata, body["metadata"]);
    assert_eq!(
        policy["allowedMerchants"],
        body["policy"]["allowedMerchants"]
    );
    let stored_key: String = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_one(&app.db)
        .await
        .expect("the key is stored");
    assert_eq!(stored_key, key);

    // The replay of the SQL-named key is the same bytes.
    let response = app
        .request(Method::POST, "/v1/customers")
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);
    assert_eq!(
        response
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(response.text().await.expect("a body"), created_text);

    // A PATCH with more SQL merges it in verbatim and removes a key by null.
    let patch = json!({"metadata": {
        "sql0": null,
        "added": "' ; TRUNCATE customers CASCADE; --",
        "nested": {"sql": ["x"], "more": "'); --"}
    }});
    let response = app.patch(&id, patch).await;
    assert_eq!(response.status(), 200);
    let patched: Value = response.json().await.expect("JSON");
    let mut expected = metadata.clone();
    expected.remove("sql0");
    expected.insert("added".into(), json!("' ; TRUNCATE customers CASCADE; --"));
    expected.insert("nested".into(), json!({"sql": ["x"], "more": "'); --"}));
    assert_eq!(patched["metadata"], Value::Object(expected));

    // Filtering by a quoted email finds exactly it; the injection-shaped one finds nothing.
    let response = app
        .request(
            Method::GET,
            "/v1/customers?email=o%27brien%2Bsql%40example.com",
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.expect("a page");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["data"][0]["id"], id.as_str());

    // The tables survived all of it.
    for table in ["customers", "idempotency_keys"] {
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&app.db)
            .await
            .unwrap_or_else(|e| panic!("{table} is gone: {e}"));
        assert_eq!(count, 1, "{table}");
    }
}
