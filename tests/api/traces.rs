//! OpenTelemetry traces (docs/operations.md#tracing): the binary, with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, exports its spans over OTLP/HTTP to a receiver this test
//! runs. One request → its server span (a child of the request's `traceparent`, or the root of a
//! new trace) with the database statements as its children, named by what they do; no
//! personal data in any attribute; the event of a write keeps the request's trace context, and
//! its publication to NATS is a span of that trace whose context the message carries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};

use crate::support::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const EMAIL: &str = "alice.traced@example.com";

/// An OTLP/HTTP receiver (JSON encoding) on 127.0.0.1 that keeps every span it is sent.
struct Receiver {
    port: u16,
    spans: Arc<Mutex<Vec<Value>>>,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (kept, raw) = (spans.clone(), bodies.clone());
        let server = HttpServer::new(move || {
            let (kept, raw) = (kept.clone(), raw.clone());
            App::new().route(
                "/v1/traces",
                web::post().to(move |body: web::Bytes| {
                    let (kept, raw) = (kept.clone(), raw.clone());
                    async move {
                        let text = String::from_utf8_lossy(&body).into_owned();
                        let request: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        raw.lock().unwrap().push(text);
                        let mut kept = kept.lock().unwrap();
                        for resource in request["resourceSpans"].as_array().into_iter().flatten() {
                            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                                kept.extend(
                                    scope["spans"].as_array().into_iter().flatten().cloned(),
                                );
                            }
                        }
                        HttpResponse::Ok().json(json!({}))
                    }
                }),
            )
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("a port for the receiver");
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Receiver {
            port,
            spans,
            bodies,
        }
    }

    /// The spans received so far, once at least one named `name` is there (waits up to 20 s).
    async fn spans_once(&self, name: &str) -> Vec<Value> {
        for _ in 0..200 {
            let spans = self.spans.lock().unwrap().clone();
            if spans.iter().any(|s| s["name"] == name) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no span named {name:?} was exported");
    }
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

fn children<'a>(spans: &'a [Value], parent: &Value) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| s["parentSpanId"] == parent["spanId"] && s["traceId"] == parent["traceId"])
        .collect()
}

/// An integer attribute (OTLP's JSON has int64 as a string; some encoders write a number).
fn int_attribute(span: &Value, key: &str) -> Option<i64> {
    let value = &attribute(span, key)?["intValue"];
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[tokio::test]
async fn a_request_is_traced_into_its_statements_with_no_personal_data() {
    let receiver = Receiver::start();
    let (db, url) = fresh_database_for_binaries().await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let nats_url = shared_nats_url();
    let stream = TestStream::new(&nats_url).await;
    let mut env = stream.env(&nats_url);
    env.extend(
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned())),
    );
    let mut service = Service::start_with_env(dir.path(), &url, "traced", &env);
    let client = reqwest::Client::new();
    service.wait_ready(&client).await;
    let token = token(ORG, "test", ADMIN);

    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let created = send(
        client
            .post(service.url("/v1/customers"))
            .bearer_auth(&token)
            .header("traceparent", &traceparent)
            .json(&json!({"email": EMAIL, "name": {"first": "Alice", "last": "Traced"}})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.transcript());
    let id = created.id();
    let patched = send(
        client
            .patch(service.url(&format!("/v1/customers/{id}")))
            .bearer_auth(&token)
            .header("Idempotency-Key", "traced-patch")
            .json(&json!({"phone": "+14155550123"})),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.transcript());

    receiver.spans_once("POST /v1/customers").await;
    let spans = receiver.spans_once("PATCH /v1/customers/{id}").await;

    // The create continues the caller's trace: its server span is a child of the caller's span.
    let create = named(&spans, "POST /v1/customers");
    assert_eq!(create.len(), 1, "{spans:#?}");
    let create = create[0];
    assert_eq!(create["traceId"], TRACE_ID);
    assert_eq!(create["parentSpanId"], PARENT_ID);
    assert_eq!(create["kind"], 2, "a server span");
    assert_eq!(
        attribute(create, "http.route"),
        Some(&json!({"stringValue": "/v1/customers"}))
    );
    assert_eq!(
        int_attribute(create, "http.response.status_code"),
        Some(201),
        "{:?}",
        attribute(create, "http.response.status_code")
    );
    let statements: Vec<&Value> = children(&spans, create)
        .into_iter()
        .filter(|s| s["name"] != "CUSTOMER_EVENTS publish")
        .collect();
    let names: Vec<&str> = statements
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(names.contains(&"customers.insert"), "{names:?}");
    for statement in &statements {
        assert_eq!(statement["kind"], 3, "a client span: {statement}");
        assert_eq!(
            attribute(statement, "db.system.name"),
            Some(&json!({"stringValue": "postgresql"}))
        );
    }

    // A request without traceparent starts a trace of its own, with its statements in it.
    let patch = named(&spans, "PATCH /v1/customers/{id}");
    assert_eq!(patch.len(), 1);
    let patch = patch[0];
    assert_ne!(patch["traceId"], TRACE_ID);
    assert!(
        patch["parentSpanId"].as_str().unwrap_or("").is_empty(),
        "{patch}"
    );
    let names: Vec<&str> = children(&spans, patch)
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for expected in ["customers.claim_and_find", "customers.update", "COMMIT"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }

    // No personal data anywhere in what was exported: not the email, names or phone, not the
    // token.
    let exported = receiver.bodies.lock().unwrap().join("\n");
    for secret in [EMAIL, "Alice", "Traced", "+14155550123", token.as_str()] {
        assert!(!exported.contains(secret), "{secret:?} was exported");
    }

    // The events keep the trace context of the requests that made them.
    let stored: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT version, traceparent FROM customer_events WHERE customer_id = $1 ORDER BY version",
    )
    .bind(&id)
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(stored.len(), 2);
    let created_context = stored[0]
        .1
        .as_deref()
        .expect("the creation's trace context");
    assert!(
        created_context.starts_with(&format!("00-{TRACE_ID}-")),
        "{created_context}"
    );
    let patched_context = stored[1].1.as_deref().expect("the PATCH's trace context");
    assert!(
        patched_context.contains(patch["traceId"].as_str().unwrap()),
        "{patched_context}"
    );
    // Each event's publication is a producer span in the trace of the request that made it,
    // and the message carries the publication's context.
    let messages = stream.receive(2, Duration::from_secs(20)).await;
    let spans = receiver.spans_once("CUSTOMER_EVENTS publish").await;
    let spans = if named(&spans, "CUSTOMER_EVENTS publish").len() < 2 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        receiver.spans.lock().unwrap().clone()
    } else {
        spans
    };
    for (message, request) in messages.iter().zip([create, patch]) {
        let publication = named(&spans, "CUSTOMER_EVENTS publish")
            .into_iter()
            .find(|p| p["traceId"] == request["traceId"])
            .unwrap_or_else(|| panic!("no publication span in the trace of {request}"));
        assert_eq!(publication["parentSpanId"], request["spanId"]);
        assert_eq!(publication["kind"], 4, "a producer span");
        let expected = format!(
            "00-{}-{}-01",
            request["traceId"].as_str().unwrap(),
            publication["spanId"].as_str().unwrap()
        );
        assert_eq!(message.traceparent.as_deref(), Some(expected.as_str()));
    }
    service.terminate().await;
}

/// Without the OpenTelemetry variables nothing is exported and events keep no trace context.
#[tokio::test]
async fn without_an_endpoint_nothing_is_traced() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    let context: Option<String> =
        sqlx::query_scalar("SELECT traceparent FROM customer_events WHERE customer_id = $1")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(context, None);
}
