//! `/openapi.json` lists, for each operation, exactly the error statuses and codes it can
//! answer — no more (a code copied from another route), no fewer — and the headers and
//! parameters the routes share. The expectation is written here from the API rules, apart
//! from the table in `src/openapi/operations.rs` that produces the document.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::*;

/// Every operation can answer these (a token, its scope, the tenant's rate limit, a fault, the
/// database).
const ANY: &[(u16, &str)] = &[
    (401, "unauthorized"),
    (403, "insufficient_scope"),
    (429, "rate_limited"),
    (500, "internal_error"),
    (503, "service_unavailable"),
];

/// A write that takes an Idempotency-Key.
const KEYED: &[(u16, &str)] = &[
    (400, "idempotency_key_invalid"),
    (409, "idempotency_request_in_progress"),
    (422, "idempotency_key_reused"),
];

/// A write with a JSON body.
const BODY: &[(u16, &str)] = &[
    (400, "invalid_json"),
    (400, "invalid_request"),
    (400, "parameter_invalid"),
    (400, "parameter_unknown"),
    (400, "parameter_not_updatable"),
    (413, "payload_too_large"),
    (415, "unsupported_media_type"),
];

/// An action's JSON body (no read-only members).
const ACTION_BODY: &[(u16, &str)] = &[
    (400, "invalid_json"),
    (400, "invalid_request"),
    (400, "parameter_invalid"),
    (400, "parameter_unknown"),
    (413, "payload_too_large"),
    (415, "unsupported_media_type"),
];

/// A write with If-Match (an unreadable header is `invalid_request`).
const CONDITIONAL: &[(u16, &str)] = &[(400, "invalid_request"), (412, "precondition_failed")];

/// A paged list.
const LIST: &[(u16, &str)] = &[
    (400, "invalid_request"),
    (400, "parameter_invalid"),
    (400, "parameter_unknown"),
    (400, "invalid_cursor"),
];

/// Errors an operation can answer: (status, code).
type Errors = &'static [(u16, &'static str)];

fn expected() -> BTreeMap<(&'static str, &'static str), BTreeSet<(u16, &'static str)>> {
    let routes: [(&str, &str, Vec<Errors>); 18] = [
        ("/v1/customers", "post", vec![BODY, KEYED]),
        ("/v1/customers", "get", vec![LIST]),
        (
            "/v1/customers/{id}",
            "get",
            vec![&[
                (400, "parameter_invalid"),
                (404, "not_found"),
                (422, "history_unavailable"),
            ]],
        ),
        (
            "/v1/customers/{id}",
            "patch",
            vec![
                BODY,
                KEYED,
                CONDITIONAL,
                &[(404, "not_found"), (409, "customer_deleted")],
            ],
        ),
        (
            "/v1/customers/{id}",
            "delete",
            vec![KEYED, CONDITIONAL, &[(404, "not_found")]],
        ),
        (
            "/v1/customers/{id}/activate",
            "post",
            vec![
                KEYED,
                CONDITIONAL,
                &[(404, "not_found"), (409, "customer_deleted")],
            ],
        ),
        (
            "/v1/customers/{id}/events",
            "get",
            vec![LIST, &[(404, "not_found")]],
        ),
        ("/v1/events", "get", vec![LIST]),
        ("/v1/webhooks", "get", vec![LIST]),
        (
            "/v1/webhooks",
            "post",
            vec![BODY, KEYED, &[(404, "not_found")]],
        ),
        ("/v1/webhooks/{id}", "get", vec![&[(404, "not_found")]]),
        (
            "/v1/webhooks/{id}",
            "patch",
            vec![BODY, KEYED, CONDITIONAL, &[(404, "not_found")]],
        ),
        (
            "/v1/webhooks/{id}",
            "delete",
            vec![KEYED, CONDITIONAL, &[(404, "not_found")]],
        ),
        (
            "/v1/webhooks/{id}/secret",
            "get",
            vec![&[(404, "not_found")]],
        ),
        (
            "/v1/webhooks/{id}/rotate-secret",
            "post",
            vec![ACTION_BODY, KEYED, &[(404, "not_found")]],
        ),
        (
            "/v1/webhooks/{id}/recover",
            "post",
            vec![ACTION_BODY, KEYED, &[(404, "not_found")]],
        ),
        (
            "/v1/webhooks/{id}/deliveries",
            "get",
            vec![LIST, &[(404, "not_found")]],
        ),
        (
            "/v1/webhooks/{id}/deliveries/{deliveryId}/retry",
            "post",
            vec![KEYED, &[(404, "not_found")]],
        ),
    ];
    routes
        .into_iter()
        .map(|(path, method, groups)| {
            let codes = groups
                .into_iter()
                .chain([ANY])
                .flat_map(|g| g.iter().copied())
                .collect();
            ((path, method), codes)
        })
        .collect()
}

/// The codes a response's description names (`code: explanation; code: …`).
fn codes_of(description: &str) -> Vec<&str> {
    description
        .split("; ")
        .map(|part| part.split(':').next().unwrap_or("").trim())
        .collect()
}

#[tokio::test]
async fn each_operation_lists_exactly_the_errors_it_can_answer() {
    let app = spawn_app().await;
    let doc: Value = app
        .get_anonymous("/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let expected = expected();
    let mut operations = 0;
    for ((path, method), codes) in &expected {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        let mut documented = BTreeSet::new();
        for (status, response) in operation["responses"].as_object().unwrap() {
            let status: u16 = status.parse().unwrap();
            if status < 400 {
                continue;
            }
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Error",
                "{method} {path} {status} is the error envelope"
            );
            for code in codes_of(response["description"].as_str().unwrap()) {
                documented.insert((status, code.to_owned()));
            }
        }
        let expected: BTreeSet<(u16, String)> =
            codes.iter().map(|(s, c)| (*s, (*c).to_owned())).collect();
        assert_eq!(documented, expected, "{method} {path}");
        operations += 1;
    }
    // No operation is left without an expectation.
    let documented_operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| path.starts_with("/v1/"))
        .map(|(_, item)| item.as_object().unwrap().len())
        .sum();
    assert_eq!(documented_operations, operations);
}

#[tokio::test]
async fn shared_headers_and_parameters_are_where_they_belong() {
    let app = spawn_app().await;
    let doc: Value = app
        .get_anonymous("/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths.iter().filter(|(p, _)| p.starts_with("/v1/")) {
        for (method, operation) in item.as_object().unwrap() {
            let keyed = method != "get";
            let parameters: Vec<&str> = operation["parameters"]
                .as_array()
                .map(|ps| ps.iter().map(|p| p["name"].as_str().unwrap()).collect())
                .unwrap_or_default();
            assert_eq!(
                parameters.contains(&"Idempotency-Key"),
                keyed,
                "{method} {path}: Idempotency-Key on writes only"
            );
            for (status, response) in operation["responses"].as_object().unwrap() {
                let headers = response["headers"].as_object().unwrap();
                assert!(
                    headers.contains_key("X-Request-Id"),
                    "{method} {path} {status}"
                );
                assert_eq!(
                    headers.contains_key("Idempotent-Replayed"),
                    keyed && ["200", "201", "202", "404", "409", "412"].contains(&status.as_str()),
                    "{method} {path} {status}: Idempotent-Replayed on replayable write answers"
                );
            }
        }
    }
    let key = doc["paths"]["/v1/customers"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .unwrap()
        .clone();
    assert!(
        key["description"].as_str().unwrap().contains("kept 1day"),
        "the retention is quoted from the configuration: {key}"
    );
}
