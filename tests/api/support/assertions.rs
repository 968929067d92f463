//! What every answer of a kind must be. The error envelope is the one `docs/api-rules.md`
//! describes: a JSON body `{"error": {type, code, message, param?, details?, requestId}}` whose
//! `requestId` is the response's `X-Request-Id` (but for a replayed answer, which is the stored
//! one byte for byte, with the request id of the request that ran).

use std::collections::BTreeSet;

use reqwest::header::HeaderMap;
use reqwest::Response;
use serde_json::{json, Value};

use super::app::TestApp;

/// Checks an error answer: the status, `X-Request-Id`, a JSON body with the envelope and `code`,
/// a message, a type and a request id (replays included). Returns the `error` object.
pub fn check_error(
    status: u16,
    headers: &HeaderMap,
    text: &str,
    expected: u16,
    code: &str,
) -> Value {
    assert_eq!(status, expected, "unexpected status: {text}");
    let error = check_envelope(headers, text, "", false);
    assert_eq!(error["code"], code, "unexpected error: {text}");
    error
}

/// The checks every error answer passes, whatever its status; `what` prefixes the messages.
/// With `own_id`, the envelope's `requestId` must be the response's `X-Request-Id` (as it is for
/// any answer that is not a replay).
fn check_envelope(headers: &HeaderMap, text: &str, what: &str, own_id: bool) -> Value {
    let header_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{what}: every response carries X-Request-Id"));
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "{what}: errors are JSON, got {content_type:?}"
    );
    let body: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{what}: the error is not JSON ({e}): {text}"));
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: message: {text}"
    );
    assert!(error["type"].as_str().is_some(), "{what}: type: {text}");
    assert!(
        error["requestId"].as_str().is_some(),
        "{what}: requestId: {text}"
    );
    if own_id {
        assert_eq!(
            error["requestId"].as_str(),
            Some(header_id),
            "{what}: the envelope's requestId is the X-Request-Id: {text}"
        );
    }
    error.clone()
}

async fn read(response: Response) -> (u16, HeaderMap, String) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    (status, headers, text)
}

/// Reads an error response and checks the envelope; returns the `error` object.
pub async fn error_body(response: Response, status: u16, code: &str) -> Value {
    let (actual, headers, text) = read(response).await;
    check_error(actual, &headers, &text, status, code)
}

/// [`error_body`] of an answer that is not a replay: its `requestId` must also be its
/// `X-Request-Id`.
pub async fn own_error_body(response: Response, status: u16, code: &str) -> Value {
    let (actual, headers, text) = read(response).await;
    assert_eq!(actual, status, "unexpected status: {text}");
    let error = check_envelope(&headers, &text, "", true);
    assert_eq!(error["code"], code, "unexpected error: {text}");
    error
}

/// The `param`s of `details.errors`.
pub fn error_params(error: &Value) -> Vec<String> {
    error["details"]["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["param"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The error object without its request id, for comparing two answers.
pub async fn error_shape(response: Response, status: u16, code: &str) -> Value {
    let mut error = error_body(response, status, code).await;
    error.as_object_mut().map(|o| o.remove("requestId"));
    error
}

/// A 401 in the envelope (`authentication_error`, no `param`) with `WWW-Authenticate: Bearer`.
pub async fn assert_401(response: Response, what: &str) {
    let (status, headers, text) = read(response).await;
    assert_eq!(status, 401, "{what}: {text}");
    let challenge = headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
    assert!(
        challenge == "Bearer" || challenge.starts_with("Bearer "),
        "{what}: WWW-Authenticate: {challenge}"
    );
    let error = check_error(status, &headers, &text, 401, "unauthorized");
    assert_eq!(error["type"], "authentication_error", "{what}");
    assert!(error.get("param").is_none(), "{what}: {error}");
}

/// The Authorization value is refused with 401 on a read and on a write, and nothing is
/// written.
pub async fn assert_authorization_refused(app: &TestApp, authorization: &str, what: &str) {
    let before = app.count_customers().await;
    let response = app
        .client
        .get(app.url("/v1/customers"))
        .header("authorization", authorization)
        .send()
        .await
        .expect("sent");
    assert_401(response, &format!("{what} (GET)")).await;
    let response = app
        .client
        .post(app.url("/v1/customers"))
        .header("authorization", authorization)
        .json(&json!({"email": "attacker@example.com"}))
        .send()
        .await
        .expect("sent");
    assert_401(response, &format!("{what} (POST)")).await;
    assert_eq!(
        app.count_customers().await,
        before,
        "{what}: a write got in"
    );
}

/// The bearer token is refused with 401 on a read and on a write, and nothing is written.
pub async fn assert_token_refused(app: &TestApp, token: &str, what: &str) {
    assert_authorization_refused(app, &format!("Bearer {token}"), what).await;
}

/// The control for each refusal: the same kind of token, right in every respect, creates.
pub async fn assert_token_accepted(app: &TestApp, token: &str, what: &str) {
    let response = app
        .client
        .post(app.url("/v1/customers"))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response.status(),
        201,
        "{what}: {:?}",
        response.text().await
    );
}

/// A status and envelope code an answer may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub status: u16,
    pub code: &'static str,
}

/// The codes each status may carry.
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

/// The strict form of the envelope check: `response` is a 4xx, one of `allowed`, whose body has
/// the `error` member only, with a known `type`, a `param` for the `parameter_` codes, and no
/// member the envelope does not define. Returns the error.
pub async fn assert_envelope(response: Response, allowed: &[Expect], what: &str) -> Value {
    let (status, headers, text) = read(response).await;
    assert!(
        (400..500).contains(&status),
        "{what}: expected a 4xx, got {status}: {text}"
    );
    let error = check_envelope(&headers, &text, what, true);
    let code = error["code"].as_str().unwrap_or("");
    assert!(
        allowed.iter().any(|e| e.status == status && e.code == code),
        "{what}: expected one of {allowed:?}, got {status} {code}: {text}"
    );
    assert!(
        code_fits_status(status, code),
        "{what}: {code} is not a {status} code"
    );
    let body: Value = serde_json::from_str(&text).expect("JSON, as checked");
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
    error
}

/// The server still answers `/healthz` with 200.
pub async fn assert_alive(app: &TestApp, what: &str) {
    let response = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: the server is gone: {e}"));
    assert_eq!(response.status(), 200, "{what}: /healthz");
}
