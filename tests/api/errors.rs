//! Errors (contract §6): every failure, framework-level ones included, answers the JSON envelope
//! and every response carries X-Request-Id.

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::*;

fn request_id(response: &Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .expect("X-Request-Id is present")
        .to_str()
        .expect("X-Request-Id is ASCII")
        .to_owned()
}

/// A generated id: `req_` and something after it, plain enough to log.
fn assert_generated(id: &str) {
    let rest = id
        .strip_prefix("req_")
        .unwrap_or_else(|| panic!("a generated request id starts with req_: {id:?}"));
    assert!(
        rest.len() >= 16 && rest.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{id:?}"
    );
}

/// Checks the error envelope and that `error.requestId` is the header's id; returns the error.
async fn envelope(response: Response, status: u16, code: &str) -> Value {
    let header = request_id(&response);
    let error = error_body(response, status, code).await;
    assert_eq!(error["requestId"], header.as_str(), "{error}");
    error
}

async fn created_id(app: &TestApp) -> String {
    app.create_ok(json!({"email": "keep@example.com"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn stored(app: &TestApp, id: &str) -> (i64, String, Option<String>) {
    sqlx::query_as("SELECT version, status, email FROM customers WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .expect("the customer is stored")
}

#[tokio::test]
async fn an_unknown_route_is_404_not_found_in_the_envelope() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/nope"),
        (Method::GET, "/v1"),
        (Method::GET, "/v1/customer"),
        (Method::GET, "/v2/customers"),
        (Method::POST, "/v1/unknown"),
        (
            Method::GET,
            "/v1/customers/cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E/activate/extra",
        ),
        (
            Method::DELETE,
            "/v1/customers/cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E/x",
        ),
    ] {
        // With and without a token: an unknown route is an unknown route.
        let response = app
            .request(method.clone(), path)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let error = envelope(response, 404, "not_found").await;
        assert_eq!(error["type"], "invalid_request_error", "{method} {path}");
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        envelope(response, 404, "not_found").await;
    }
    assert_eq!(app.count_customers().await, 0);
}

#[tokio::test]
async fn a_wrong_method_is_405_method_not_allowed_in_the_envelope() {
    let app = spawn_app().await;
    let id = created_id(&app).await;
    let one = format!("/v1/customers/{id}");
    let activate = format!("/v1/customers/{id}/activate");

    let response = app
        .request(Method::PUT, &one)
        .json(&json!({"email": "changed@example.com"}))
        .send()
        .await
        .unwrap();
    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let error = envelope(response, 405, "method_not_allowed").await;
    assert_eq!(error["type"], "invalid_request_error");
    for method in ["GET", "PATCH", "DELETE"] {
        assert!(allow.contains(method), "Allow: {allow:?} lacks {method}");
    }
    assert!(!allow.contains("PUT"), "Allow: {allow:?}");

    for (method, path) in [
        (Method::POST, one.as_str()),
        (Method::DELETE, "/v1/customers"),
        (Method::PATCH, "/v1/customers"),
        (Method::PUT, "/v1/customers"),
        (Method::GET, activate.as_str()),
        (Method::DELETE, activate.as_str()),
    ] {
        let response = app
            .request(method.clone(), path)
            .json(&json!({"email": "changed@example.com"}))
            .send()
            .await
            .unwrap();
        assert!(
            response.headers().contains_key("allow"),
            "{method} {path}: a 405 names the allowed methods"
        );
        envelope(response, 405, "method_not_allowed").await;
    }

    // Nothing happened to the customer, and nothing was created.
    assert_eq!(
        stored(&app, &id).await,
        (1, "pending".into(), Some("keep@example.com".into()))
    );
    assert_eq!(app.count_customers().await, 1);
}

#[tokio::test]
async fn a_wrong_method_on_an_operational_route_is_405_too() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::POST, "/healthz"),
        (Method::DELETE, "/healthz"),
        (Method::POST, "/readyz"),
        (Method::PUT, "/metrics"),
    ] {
        let response = app.request(method.clone(), path).send().await.unwrap();
        assert_eq!(
            response.status(),
            405,
            "{method} {path}: the route exists, the method does not"
        );
        let allow = response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(allow.contains("GET"), "{method} {path}: Allow: {allow:?}");
        envelope(response, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn a_bad_query_is_400_in_the_envelope() {
    let app = spawn_app().await;
    app.create_ok(json!({})).await;

    for query in ["limit=abc", "limit=0", "limit=101", "limit=5&limit=6"] {
        let response = app
            .request(Method::GET, &format!("/v1/customers?{query}"))
            .send()
            .await
            .unwrap();
        let error = envelope(response, 400, "parameter_invalid").await;
        assert_eq!(error["param"], "limit", "{query}: {error}");
        assert_eq!(error["type"], "invalid_request_error");
    }

    for (query, param) in [
        ("foo=bar", "foo"),
        ("limit=5&starting_after=x", "starting_after"),
    ] {
        let response = app
            .request(Method::GET, &format!("/v1/customers?{query}"))
            .send()
            .await
            .unwrap();
        let error = envelope(response, 400, "parameter_unknown").await;
        assert_eq!(error["param"], param, "{query}: {error}");
    }

    // Query strings that do not even decode are still answered with the envelope.
    for query in ["limit=%FF", "status=%C3%28", "type=%ZZ"] {
        let response = app
            .request(Method::GET, &format!("/v1/customers?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let code = response.status();
        let header = request_id(&response);
        let body: Value = response.json().await.expect("a JSON error");
        assert_eq!(body["error"]["requestId"], header.as_str(), "{code} {body}");
        assert!(body["error"]["code"].as_str().is_some(), "{body}");
    }
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json_and_nothing_is_written() {
    let app = spawn_app().await;
    let id = created_id(&app).await;
    let bodies = [
        r#"{"email":"#,
        r#"{email: "a@example.com"}"#,
        "not json",
        r#"{"email":"a@example.com"}}"#,
        r#"{"email":"a@example.com",}"#,
        r#"{"email":"a@example.com","email":"b@example.com"}"#,
        "{\"email\":\"a@example.com\"\u{0}}",
    ];
    for body in bodies {
        let response = app
            .request(Method::POST, "/v1/customers")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let error = envelope(response, 400, "invalid_json").await;
        assert_eq!(error["type"], "invalid_request_error", "{body}");

        let response = app
            .request(Method::PATCH, &format!("/v1/customers/{id}"))
            .header("content-type", "application/merge-patch+json")
            .body(body)
            .send()
            .await
            .unwrap();
        envelope(response, 400, "invalid_json").await;
    }
    // Valid JSON that is not an object is another error.
    for body in ["[]", "\"a@example.com\"", "42", "null"] {
        let response = app
            .request(Method::POST, "/v1/customers")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        envelope(response, 400, "invalid_request").await;
    }
    assert_eq!(app.count_customers().await, 1);
    assert_eq!(
        stored(&app, &id).await,
        (1, "pending".into(), Some("keep@example.com".into()))
    );
}

#[tokio::test]
async fn a_wrong_content_type_is_415_unsupported_media_type() {
    let app = spawn_app().await;
    let id = created_id(&app).await;
    let body = json!({"email": "new@example.com"}).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/xml"),
        Some("application/jsonx"),
        None,
    ] {
        for (method, path) in [
            (Method::POST, "/v1/customers".to_owned()),
            (Method::PATCH, format!("/v1/customers/{id}")),
        ] {
            let mut request = app.request(method.clone(), &path).body(body.clone());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = request.send().await.unwrap();
            let error = envelope(response, 415, "unsupported_media_type").await;
            assert_eq!(
                error["type"], "invalid_request_error",
                "{method} {content_type:?}"
            );
        }
    }
    assert_eq!(app.count_customers().await, 1);
    assert_eq!(
        stored(&app, &id).await,
        (1, "pending".into(), Some("keep@example.com".into()))
    );

    // The JSON types are accepted, parameters and case notwithstanding.
    let response = app
        .request(Method::POST, "/v1/customers")
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = app
        .request(Method::PATCH, &format!("/v1/customers/{id}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        stored(&app, &id).await,
        (2, "pending".into(), Some("new@example.com".into()))
    );
}

/// POSTs `body` with `Transfer-Encoding: chunked` (no Content-Length) over a raw connection;
/// returns the status, the head and the body of the answer.
async fn chunked_post(app: &TestApp, body: String) -> (u16, String, String) {
    use std::io::{Read, Write};
    let port = app.port;
    let auth = token(ORG, "test", ADMIN);
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut request = format!(
            "POST /v1/customers HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {auth}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n"
        )
        .into_bytes();
        for chunk in body.as_bytes().chunks(4096) {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        // The server may answer and close before reading everything; that is its right.
        let _ = stream.write_all(&request);
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("an HTTP answer: {answer:?}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {head:?}"));
        (status, head.to_owned(), body.to_owned())
    })
    .await
    .expect("the raw request ran")
}

/// `{"metadata":{"k":"xxx…"}}` of exactly `size` bytes.
fn body_of(size: usize) -> String {
    let shell = r#"{"metadata":{"k":""}}"#.len();
    let body = format!(r#"{{"metadata":{{"k":"{}"}}}}"#, "x".repeat(size - shell));
    assert_eq!(body.len(), size);
    body
}

#[tokio::test]
async fn a_body_over_64_kib_is_413_payload_too_large() {
    let app = spawn_app().await;
    let id = created_id(&app).await;
    for size in [64 * 1024 + 1, 200 * 1024] {
        let response = app
            .request(Method::POST, "/v1/customers")
            .header("content-type", "application/json")
            .body(body_of(size))
            .send()
            .await
            .unwrap();
        let error = envelope(response, 413, "payload_too_large").await;
        assert_eq!(error["type"], "invalid_request_error");

        let response = app
            .request(Method::PATCH, &format!("/v1/customers/{id}"))
            .header("content-type", "application/merge-patch+json")
            .body(body_of(size))
            .send()
            .await
            .unwrap();
        envelope(response, 413, "payload_too_large").await;
    }
    assert_eq!(app.count_customers().await, 1);
    assert_eq!(app.stored_version(&id).await, 1);

    // Announced nowhere: a chunked body is counted as it arrives.
    let (status, head, body) = chunked_post(&app, body_of(70 * 1024)).await;
    assert_eq!(status, 413, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("x-request-id: "),
        "{head}"
    );
    let body: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_eq!(app.count_customers().await, 1);

    // Exactly 64 KiB is not too large: it gets as far as validation (the value is too long).
    let response = app
        .request(Method::POST, "/v1/customers")
        .header("content-type", "application/json")
        .body(body_of(64 * 1024))
        .send()
        .await
        .unwrap();
    let error = envelope(response, 400, "parameter_invalid").await;
    assert_eq!(error["param"], "metadata.k");
    assert_eq!(app.count_customers().await, 1);
}

#[tokio::test]
async fn a_valid_client_request_id_is_echoed_in_the_header_and_the_error() {
    let app = spawn_app().await;
    for sent in [
        "trace-1234",
        "0f8e7c1a-7d6b-4a51-9b8e-3f0c2e1d4a5b",
        "req_client.supplied:1_x",
    ] {
        // On an error.
        let response = app
            .request(Method::GET, "/v1/customers/cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E")
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        assert_eq!(request_id(&response), sent);
        let error = envelope(response, 404, "not_found").await;
        assert_eq!(error["requestId"], sent);

        // On a framework error.
        let response = app
            .request(Method::GET, "/nope")
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        assert_eq!(request_id(&response), sent);
        let error = envelope(response, 404, "not_found").await;
        assert_eq!(error["requestId"], sent);

        // On a success.
        let response = app
            .request(Method::POST, "/v1/customers")
            .header("x-request-id", sent)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        assert_eq!(request_id(&response), sent);
    }
}

#[tokio::test]
async fn without_a_valid_client_request_id_one_is_made() {
    let app = spawn_app().await;
    let too_long = "a".repeat(300);
    let mut made = Vec::new();
    for sent in [
        None,
        Some(""),
        Some("has space"),
        Some("semi;colon"),
        Some("new\tline"),
        Some("<script>"),
        Some(too_long.as_str()),
    ] {
        let mut request = app.request(Method::GET, "/v1/customers/nope");
        if let Some(sent) = sent {
            request = request.header("x-request-id", sent);
        }
        let response = request.send().await.unwrap();
        let id = request_id(&response);
        assert_generated(&id);
        let error = envelope(response, 404, "not_found").await;
        assert_eq!(error["requestId"], id.as_str());
        made.push(id);
    }
    // A framework error and an auth error get one too.
    let response = app
        .client
        .get(app.url("/v1/customers"))
        .send()
        .await
        .unwrap();
    let id = request_id(&response);
    assert_generated(&id);
    envelope(response, 401, "unauthorized").await;
    made.push(id);
    let response = app
        .request(Method::PUT, "/v1/customers")
        .send()
        .await
        .unwrap();
    let id = request_id(&response);
    assert_generated(&id);
    envelope(response, 405, "method_not_allowed").await;
    made.push(id);

    // Every request gets its own.
    let mut unique = made.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), made.len(), "{made:?}");
}

#[tokio::test]
async fn success_responses_carry_a_request_id_too() {
    let app = spawn_app().await;

    let response = app.create(json!({"email": "ok@example.com"})).await;
    assert_eq!(response.status(), 201);
    assert_generated(&request_id(&response));
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(body.get("error").is_none());

    let response = app.get(&id).await;
    assert_eq!(response.status(), 200);
    assert_generated(&request_id(&response));

    let response = app.patch(&id, json!({"phone": "+14155551234"})).await;
    assert_eq!(response.status(), 200);
    assert_generated(&request_id(&response));

    let response = app
        .request(Method::GET, "/v1/customers")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_generated(&request_id(&response));

    let response = app
        .request(Method::POST, &format!("/v1/customers/{id}/activate"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_generated(&request_id(&response));

    let response = app
        .request(Method::DELETE, &format!("/v1/customers/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_generated(&request_id(&response));
    assert_eq!(stored(&app, &id).await.1, "deleted");

    for path in ["/healthz", "/readyz"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_generated(&request_id(&response));
    }
}
