//! Paths and query strings: ids that cannot name a customer, and list queries that must be
//! refused or must find nothing.

use reqwest::Method;
use serde_json::{json, Value};

use super::*;

/// Ids that cannot name a customer: malformed percent-encoding, NUL, traversal, SQL, huge.
pub(super) fn hostile_ids() -> Vec<String> {
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
pub(super) fn hostile_queries() -> Vec<(String, Expect)> {
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
pub(super) fn harmless_queries() -> Vec<String> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_and_query_strings_are_4xx_envelopes() {
    let app = spawn_app_without_rate_limits().await;
    let base = app.create_ok(rich_customer()).await;
    let before = app.db_state().await;
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
        assert_eq!(app.db_state().await, before, "id {}", preview(id));
    }

    let queries = hostile_queries();
    for (query, expect) in &queries {
        let response = app
            .call(Method::GET, &format!("/v1/customers?{query}"))
            .await;
        assert_envelope(response, &[*expect], &format!("GET ?{}", preview(query))).await;
    }
    let harmless = harmless_queries();
    for query in &harmless {
        let response = app
            .call(Method::GET, &format!("/v1/customers?{query}"))
            .await;
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
    assert_eq!(app.db_state().await, before);
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
