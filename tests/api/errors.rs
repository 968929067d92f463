//! Errors: every failure, framework-level ones included, answers the JSON envelope (see
//! `docs/api-rules.md`) and every response carries X-Request-Id.

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::support::raw::post_chunked;
use crate::support::*;

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

async fn created_id(app: &TestApp) -> String {
    app.create_id(json!({"email": "keep@example.com"})).await
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
        let error = own_error_body(response, 404, "not_found").await;
        assert_eq!(error["type"], "invalid_request_error", "{method} {path}");
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        own_error_body(response, 404, "not_found").await;
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
    let error = own_error_body(response, 405, "method_not_allowed").await;
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
        own_error_body(response, 405, "method_not_allowed").await;
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
        let response = app.call(method.clone(), path).await;
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
        own_error_body(response, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn a_bad_query_is_400_in_the_envelope() {
    let app = spawn_app().await;
    app.create_ok(json!({})).await;

    for query in ["limit=abc", "limit=0", "limit=101", "limit=5&limit=6"] {
        let response = app
            .call(Method::GET, &format!("/v1/customers?{query}"))
            .await;
        let error = own_error_body(response, 400, "parameter_invalid").await;
        assert_eq!(error["param"], "limit", "{query}: {error}");
        assert_eq!(error["type"], "invalid_request_error");
    }

    for (query, param) in [
        ("foo=bar", "foo"),
        ("limit=5&starting_after=x", "starting_after"),
    ] {
        let response = app
            .call(Method::GET, &format!("/v1/customers?{query}"))
            .await;
        let error = own_error_body(response, 400, "parameter_unknown").await;
        assert_eq!(error["param"], param, "{query}: {error}");
    }

    // Query strings that do not even decode are still answered with the envelope.
    for query in ["limit=%FF", "status=%C3%28", "type=%ZZ"] {
        let response = app
            .call(Method::GET, &format!("/v1/customers?{query}"))
            .await;
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
        let response = app.post_raw(body).await;
        let error = own_error_body(response, 400, "invalid_json").await;
        assert_eq!(error["type"], "invalid_request_error", "{body}");

        let response = app.patch_raw(&id, body).await;
        own_error_body(response, 400, "invalid_json").await;
    }
    // Valid JSON that is not an object is another error.
    for body in ["[]", "\"a@example.com\"", "42", "null"] {
        let response = app.post_raw(body).await;
        own_error_body(response, 400, "invalid_request").await;
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
            let error = own_error_body(response, 415, "unsupported_media_type").await;
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
        let response = app.post_raw(body_of(size)).await;
        let error = own_error_body(response, 413, "payload_too_large").await;
        assert_eq!(error["type"], "invalid_request_error");

        let response = app.patch_raw(&id, body_of(size)).await;
        own_error_body(response, 413, "payload_too_large").await;
    }
    assert_eq!(app.count_customers().await, 1);
    assert_eq!(app.stored_version(&id).await, 1);

    // Announced nowhere: a chunked body is counted as it arrives.
    let answer = post_chunked(app.port, body_of(70 * 1024)).await;
    let (status, head, body) = (answer.status, answer.head, answer.body);
    assert_eq!(status, 413, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("x-request-id: "),
        "{head}"
    );
    let body: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_eq!(app.count_customers().await, 1);

    // Exactly 64 KiB is not too large: it gets as far as validation (the value is too long).
    let response = app.post_raw(body_of(64 * 1024)).await;
    let error = own_error_body(response, 400, "parameter_invalid").await;
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
        // On an error, on a framework error, and on a success.
        for (method, path, status) in [
            (
                Method::GET,
                "/v1/customers/cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E",
                404,
            ),
            (Method::GET, "/nope", 404),
            (Method::POST, "/v1/customers", 201),
        ] {
            let mut request = app
                .request(method.clone(), path)
                .header("x-request-id", sent);
            if method == Method::POST {
                request = request.json(&json!({}));
            }
            let response = request.send().await.unwrap();
            assert_eq!(request_id(&response), sent, "{path}");
            if status == 201 {
                assert_eq!(response.status(), 201);
            } else {
                let error = own_error_body(response, status, "not_found").await;
                assert_eq!(error["requestId"], sent);
            }
        }
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
        let error = own_error_body(response, 404, "not_found").await;
        assert_eq!(error["requestId"], id.as_str());
        made.push(id);
    }
    // A framework error and an auth error get one too.
    let response = app.get_anonymous("/v1/customers").await;
    let id = request_id(&response);
    assert_generated(&id);
    own_error_body(response, 401, "unauthorized").await;
    made.push(id);
    let response = app.call(Method::PUT, "/v1/customers").await;
    let id = request_id(&response);
    assert_generated(&id);
    own_error_body(response, 405, "method_not_allowed").await;
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

    let response = app.call(Method::GET, "/v1/customers").await;
    assert_eq!(response.status(), 200);
    assert_generated(&request_id(&response));

    let response = app
        .call(Method::POST, &format!("/v1/customers/{id}/activate"))
        .await;
    assert_eq!(response.status(), 200);
    assert_generated(&request_id(&response));

    let response = app
        .call(Method::DELETE, &format!("/v1/customers/{id}"))
        .await;
    assert_eq!(response.status(), 200);
    assert_generated(&request_id(&response));
    assert_eq!(stored(&app, &id).await.1, "deleted");

    for path in ["/healthz", "/readyz"] {
        let response = app.get_anonymous(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_generated(&request_id(&response));
    }
}
