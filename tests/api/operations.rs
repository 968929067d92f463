//! What operators and API users get around the routes: the OpenAPI document and /docs, metrics,
//! rate limits, logs, and the container files.

use std::process::{Command, Stdio};

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

fn resolve<'a>(spec: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        schema = spec
            .pointer(reference.trim_start_matches('#'))
            .expect("the $ref resolves");
    }
    schema
}

/// The JSON type of a schema, looking through `oneOf`/`anyOf`/`allOf` and ignoring `null`.
fn json_type(spec: &Value, schema: &Value) -> Option<String> {
    let schema = resolve(spec, schema);
    match &schema["type"] {
        Value::String(t) => return Some(t.clone()),
        Value::Array(types) => {
            return types
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .map(str::to_owned)
        }
        _ => {}
    }
    ["oneOf", "anyOf", "allOf"]
        .iter()
        .filter_map(|k| schema[*k].as_array())
        .flatten()
        .find_map(|s| json_type(spec, s).filter(|t| t != "null"))
}

fn properties<'a>(spec: &'a Value, schema: &'a Value) -> &'a serde_json::Map<String, Value> {
    let schema = resolve(spec, schema);
    if let Some(p) = schema["properties"].as_object() {
        return p;
    }
    ["oneOf", "anyOf", "allOf"]
        .iter()
        .filter_map(|k| schema[*k].as_array())
        .flatten()
        .map(|s| resolve(spec, s))
        .find_map(|s| s["properties"].as_object())
        .expect("an object schema")
}

/// Every property of Proxy's schemas exists in ours with the same type, nested ones too.
fn assert_schemas_compatible(reference: &Value, ours: &Value) {
    for (theirs, mine) in [
        ("Customer", "Customer"),
        ("Policy", "Policy"),
        ("CreateCustomerRequest", "CustomerIn"),
        ("UpdateCustomerRequest", "CustomerPatch"),
    ] {
        let their_schema = &reference["components"]["schemas"][theirs];
        let my_schema = &ours["components"]["schemas"][mine];
        assert!(my_schema.is_object(), "our document has {mine}");
        let mut stack = vec![(theirs.to_owned(), their_schema, my_schema)];
        while let Some((path, t, m)) = stack.pop() {
            for (name, their_prop) in properties(reference, t) {
                let my_prop = properties(ours, m)
                    .get(name)
                    .unwrap_or_else(|| panic!("{path}.{name} is missing from our document"));
                let (tt, mt) = (json_type(reference, their_prop), json_type(ours, my_prop));
                assert_eq!(
                    tt, mt,
                    "{path}.{name}: type {tt:?} in Proxy's, {mt:?} in ours"
                );
                if tt.as_deref() == Some("object")
                    && resolve(reference, their_prop)["properties"].is_object()
                {
                    stack.push((format!("{path}.{name}"), their_prop, my_prop));
                }
            }
        }
    }
}

/// The five Proxy operations exist, with the same success codes.
fn assert_operations_exist(reference: &Value, ours: &Value) {
    for (path, methods) in reference["paths"].as_object().unwrap() {
        let our_path = format!("/v1{}", path.replace("{customerId}", "{id}"));
        for (method, operation) in methods.as_object().unwrap() {
            let mine = &ours["paths"][&our_path][method];
            assert!(mine.is_object(), "{method} {our_path} is missing");
            assert_eq!(mine["operationId"], operation["operationId"]);
            for code in operation["responses"].as_object().unwrap().keys() {
                if code.starts_with('2') {
                    assert!(
                        mine["responses"][code].is_object(),
                        "{method} {our_path} lacks {code}"
                    );
                }
            }
        }
    }
}

/// Our own additions are described too.
fn assert_own_additions_described(ours: &Value) {
    let patch = &ours["paths"]["/v1/customers/{id}"]["patch"];
    let params: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(params.contains(&"Idempotency-Key") && params.contains(&"If-Match"));
    let headers = patch["responses"]["200"]["headers"].as_object().unwrap();
    for h in [
        "ETag",
        "X-Request-Id",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
    ] {
        assert!(headers.contains_key(h), "PATCH 200 documents {h}");
    }
    for code in [
        "400", "401", "403", "404", "409", "412", "415", "422", "429", "503",
    ] {
        assert!(
            patch["responses"][code].is_object(),
            "PATCH documents {code}"
        );
    }
    assert!(ours["paths"]["/v1/customers/{id}/activate"]["post"].is_object());
}

#[tokio::test]
async fn openapi_json_is_a_compatible_superset_of_the_proxy_reference() {
    let app = spawn_app().await;
    let response = app.get_anonymous("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let ours: Value = response.json().await.unwrap();
    assert!(ours["openapi"].as_str().unwrap().starts_with("3."));
    let reference: Value =
        serde_json::from_str(include_str!("../fixtures/proxy-customers-openapi.json")).unwrap();
    assert_schemas_compatible(&reference, &ours);
    assert_operations_exist(&reference, &ours);
    assert_own_additions_described(&ours);
}

/// Headless Chromium (Debian's) driven by playwright-core. Where either is missing the test
/// says so and passes, except in CI (`CI` set), where `.ci/run` installs both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_works_offline_in_a_browser() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let ready = std::path::Path::new("/usr/bin/chromium").exists()
        && dir.join("node_modules/playwright-core").exists();
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium and tests/browser's node modules"
        );
        eprintln!("skipping: needs /usr/bin/chromium and `npm ci` in tests/browser");
        return;
    }
    let app = spawn_app().await;
    let address = app.address.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("docs.mjs")
            .arg(address)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
    })
    .await
    .unwrap()
    .expect("node runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    app.get_json(&id).await;
    let response = app.get_anonymous("/metrics").await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for needle in [
        r#"http_requests_total{method="GET",route="/v1/customers/{id}",status="200"}"#,
        r#"http_requests_total{method="POST",route="/v1/customers",status="201"}"#,
        "http_request_duration_seconds_bucket",
        r#"db_pool_connections{state="idle"}"#,
        r#"db_pool_connections{state="in_use"}"#,
        r#"db_pool_connections{state="waiting"}"#,
        "idempotency_sweeper_deleted_total",
        "rate_limited_total",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    assert!(!text.contains(&id), "a raw id reached the metrics");
}

#[tokio::test]
async fn idempotency_outcomes_are_counted() {
    let app = spawn_app().await;
    let before = metric(&app, r#"idempotency_events_total{event="replay"}"#).await;
    for _ in 0..2 {
        let response = app
            .request(Method::POST, "/v1/customers")
            .header("Idempotency-Key", format!("metrics-{}", app.port))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let after = metric(&app, r#"idempotency_events_total{event="replay"}"#).await;
    // Other tests in this process replay too, so only a lower bound is exact.
    assert!(after >= before + 1.0, "{before} → {after}");
}

async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.get_anonymous("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_rate_limit_is_per_tenant_with_headers_and_429() {
    let app = spawn_app_with(|s| {
        s.rate_limit.enabled = true;
        s.rate_limit.per_second = 1;
        s.rate_limit.burst = 3;
    })
    .await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let response = app.call(Method::GET, "/v1/customers").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit-limit"], "3");
        assert!(response.headers().contains_key("ratelimit-reset"));
        remaining.push(
            response.headers()["ratelimit-remaining"]
                .to_str()
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
    }
    assert_eq!(remaining, vec![2, 1, 0]);
    let limited = app.call(Method::GET, "/v1/customers").await;
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
    let error = error_body(limited, 429, "rate_limited").await;
    assert_eq!(error["type"], "rate_limit_error");
    // A write over the limit writes nothing.
    let response = app.create(json!({})).await;
    assert_eq!(response.status(), 429);
    assert_eq!(app.count_customers().await, 0);
    // Another tenant (another org, or the live mode of the same org) has its own bucket.
    for tenant in [token("org_other", "test", ADMIN), token(ORG, "live", ADMIN)] {
        let response = app
            .request_as(Method::GET, "/v1/customers", &tenant)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Unauthenticated routes carry no rate-limit headers.
    let health = app.get_anonymous("/healthz").await;
    assert!(!health.headers().contains_key("ratelimit-limit"));
}

#[tokio::test]
async fn with_rate_limits_off_there_are_no_headers() {
    let app = spawn_app_with(|s| s.rate_limit.enabled = false).await;
    let response = app.call(Method::GET, "/v1/customers").await;
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("ratelimit-limit"));
}

#[test]
fn the_dockerfile_builds_offline_and_runs_unprivileged() {
    let dockerfile = include_str!("../../Dockerfile");
    for needle in [
        "SQLX_OFFLINE=true",
        "COPY .sqlx ./.sqlx",
        "COPY migrations ./migrations",
        "USER 10001",
        "HEALTHCHECK",
        "/readyz",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle}");
    }
    assert!(
        dockerfile.matches("FROM ").count() >= 2,
        "a multi-stage build"
    );
    let compose = include_str!("../../docker-compose.yml");
    for needle in [
        "postgres:",
        "healthcheck:",
        "migrate",
        "service_completed_successfully",
        "pgdata:",
    ] {
        assert!(
            compose.contains(needle),
            "docker-compose.yml lacks {needle}"
        );
    }
}
