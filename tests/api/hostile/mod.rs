//! Hostile input: a corpus of malformed, truncated, absurdly nested, ill-typed, oversized and
//! malicious requests, sent over HTTP to create, PATCH and the list.
//!
//! Every answer must be the error envelope (see `docs/api-rules.md`) with a 4xx status — a 5xx
//! means the service let client garbage reach a place that cannot handle it — and the database
//! must be exactly as it was (customers incl. version and updated_at, and idempotency keys): a
//! refused request writes nothing and stores no idempotent response. The one corpus that must
//! succeed is SQL text in strings, which must be stored and returned byte for byte.
//!
//! The bodies are grouped by input family (`json`, `numbers`, `strings`, `fields`) and sent by
//! the one test below; ids and query strings, raw heads and framing, and SQL have their own
//! files.

mod fields;
mod headers;
mod ids;
mod json;
mod numbers;
mod sql;
mod strings;

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

// ---------------------------------------------------------------------------------------------
// What an answer must be
// ---------------------------------------------------------------------------------------------

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

fn body_corpus() -> Vec<BodyCase> {
    [
        json::malformed(),
        json::truncated(),
        json::deep_nesting(),
        numbers::numbers(),
        strings::nul_characters(),
        strings::lone_surrogates(),
        strings::long_strings(),
        json::duplicate_keys(),
        fields::wrong_types(),
        json::not_objects(),
        fields::unknown_and_read_only(),
        json::content_types(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The sizes of the corpora, printed so that the figure can be reported.
fn print_corpus_size() {
    let bodies = body_corpus().len();
    let ids = ids::hostile_ids().len();
    let queries = ids::hostile_queries().len() + ids::harmless_queries().len();
    let headers = headers::HEADER_CASES;
    let sql = sql::SQL_FRAGMENTS.len();
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
    let app = spawn_app_without_rate_limits().await;
    let base = app.create_ok(rich_customer()).await;
    let id = base["id"].as_str().expect("an id").to_owned();
    let before = app.db_state().await;
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
            app.db_state().await,
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
