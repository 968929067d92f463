//! Request heads and framing a client library will not send, sent by hand: huge and numerous
//! headers, conflicting or impossible lengths, broken chunking; and hostile values of the
//! headers the service reads.

use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::Method;

use super::*;
use crate::support::raw::{chunked, exchange, status_of};

pub(super) const HEADER_CASES: usize = 14;
const SERVED_64_KIB: &str = "a 64 KiB header of a name the service ignores";

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
async fn raw(app: &TestApp, head: String, body: Vec<u8>) -> RawOutcome {
    let port = app.port;
    let response =
        tokio::task::spawn_blocking(move || exchange(port, &head, &body, Duration::from_secs(60)))
            .await
            .expect("the raw request thread");
    let text = String::from_utf8_lossy(&response).into_owned();
    match status_of(&text) {
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

/// The raw cases: (what, head, body). actix-web answers 431 only past a 128 KiB request head (a
/// constant it does not let us change), so a 64 KiB header of a name the service ignores is
/// served: that one may get a 2xx, the heads past the limit must be refused.
fn header_cases(port: u16, auth: &str) -> Vec<(&'static str, String, Vec<u8>)> {
    let head = |method: &str, path: &str, extra: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {auth}\r\n\
             Connection: close\r\n{extra}\r\n"
        )
    };
    let body = br#"{"email":"smuggled@example.com"}"#.to_vec();
    vec![
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
            chunked(&body, 8192),
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
            chunked(
                format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes(),
                8192,
            ),
        ),
        (
            "a header with a NUL in its value",
            head("GET", "/v1/customers", "X-Evil: a\0b\r\n"),
            vec![],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_malformed_headers_are_never_a_5xx() {
    let app = spawn_app_without_rate_limits().await;
    app.create_ok(rich_customer()).await;
    let before = app.db_state().await;
    let cases = header_cases(app.port, &token(ORG, "test", ADMIN));
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
        assert_eq!(app.db_state().await, before, "{what}: the database changed");
    }
}

/// A request with one hostile header: (what, method, path, header, value, body, allowed answers).
type HeaderValueCase<'a> = (
    &'a str,
    Method,
    &'a str,
    &'a str,
    HeaderValue,
    &'static str,
    &'a [Expect],
);

/// Header values the application reads: each refused with the envelope, and no key is stored.
#[tokio::test]
async fn hostile_values_of_the_headers_the_service_reads_are_4xx_envelopes() {
    let app = spawn_app_without_rate_limits().await;
    let base = app.create_ok(rich_customer()).await;
    let id = base["id"].as_str().expect("an id");
    let before = app.db_state().await;
    let one = format!("/v1/customers/{id}");
    let value = |bytes: &[u8]| HeaderValue::from_bytes(bytes).expect("obs-text is allowed");
    let cases: Vec<HeaderValueCase> = vec![
        (
            "an 8 KiB Idempotency-Key",
            Method::POST,
            "/v1/customers",
            "idempotency-key",
            value("k".repeat(8 * 1024).as_bytes()),
            r#"{"email":"key@example.com"}"#,
            &[KEY_INVALID],
        ),
        (
            "a Latin-1 Idempotency-Key",
            Method::POST,
            "/v1/customers",
            "idempotency-key",
            value(b"caf\xe9-key"),
            r#"{"email":"key@example.com"}"#,
            &[KEY_INVALID],
        ),
        (
            "an 8 KiB If-Match",
            Method::PATCH,
            &one,
            "if-match",
            value(format!("\"{}\"", "9".repeat(8 * 1024)).as_bytes()),
            r#"{"email":"ifmatch@example.com"}"#,
            &[PRECONDITION],
        ),
        (
            "a non-ASCII If-Match",
            Method::PATCH,
            &one,
            "if-match",
            value(b"\"1\xff\""),
            r#"{"email":"ifmatch@example.com"}"#,
            &[PRECONDITION, INVALID_REQUEST],
        ),
        (
            "an 8 KiB Content-Type",
            Method::POST,
            "/v1/customers",
            "content-type",
            value(format!("application/{}", "x".repeat(8 * 1024)).as_bytes()),
            r#"{"email":"ct@example.com"}"#,
            &[UNSUPPORTED],
        ),
    ];
    for (what, method, path, header, value, body, allowed) in cases {
        let mut request = app.request(method, path);
        if header != "content-type" {
            request = request.header("content-type", "application/json");
        }
        let response = request
            .header(header, value)
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_envelope(response, allowed, what).await;
    }
    assert_eq!(app.db_state().await, before);
    assert_eq!(app.get_json(id).await, base);
}

/// A hostile request id is not echoed (it would reach the log line); a fresh one is made.
#[tokio::test]
async fn a_hostile_request_id_is_replaced_by_a_fresh_one() {
    let app = spawn_app_without_rate_limits().await;
    let base = app.create_ok(rich_customer()).await;
    let id = base["id"].as_str().expect("an id");
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
    assert_eq!(app.get_json(id).await, base);
}
