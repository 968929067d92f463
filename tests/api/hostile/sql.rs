//! SQL in strings is data: stored and returned byte for byte, and the tables are still there.

use reqwest::Method;
use serde_json::{json, Map, Value};

use super::*;

/// SQL in strings is data: stored and returned byte for byte, and the tables are still there.
pub(super) const SQL_FRAGMENTS: &[&str] = &[
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

/// Keys are visible ASCII, so no spaces: comments stand in for them.
const SQL_KEY: &str = "';DROP/**/TABLE/**/idempotency_keys;--";

/// Metadata of SQL fragments, in keys and values, nested, with numbers at the edges of JSON's.
fn sql_metadata() -> Map<String, Value> {
    let mut metadata = Map::new();
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
    metadata
}

/// Creates `body` under the SQL-named key; checks the answer and GET show it verbatim. Returns
/// the id and the answer's text.
async fn create_verbatim(app: &TestApp, body: &Value) -> (String, String) {
    let response = app
        .request(Method::POST, "/v1/customers")
        .header("idempotency-key", SQL_KEY)
        .json(body)
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
    (id, created_text)
}

/// Straight from the database: the columns hold the input, not an escaped variant, and the key
/// is stored as sent.
async fn assert_stored_verbatim(app: &TestApp, id: &str, body: &Value) {
    let (email, first, last, stored_metadata, policy): (String, String, String, Value, Value) =
        sqlx::query_as(
            "SELECT email, first_name, last_name, metadata, policy FROM customers WHERE id = $1",
        )
        .bind(id)
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
    assert_eq!(stored_key, SQL_KEY);
}

#[tokio::test]
async fn sql_fragments_are_stored_and_returned_verbatim() {
    let app = spawn_app_without_rate_limits().await;
    let metadata = sql_metadata();
    let body = json!({
        "email": "o'brien+sql@example.com",
        "name": {"first": "Robert'); DROP TABLE customers;--", "last": "' OR '1'='1"},
        "policy": {"allowedMerchants": SQL_FRAGMENTS[..10].to_vec()},
        "metadata": Value::Object(metadata.clone())
    });
    let (id, created_text) = create_verbatim(&app, &body).await;
    assert_stored_verbatim(&app, &id, &body).await;

    // The replay of the SQL-named key is the same bytes.
    let response = app
        .request(Method::POST, "/v1/customers")
        .header("idempotency-key", SQL_KEY)
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
    let mut expected = metadata;
    expected.remove("sql0");
    expected.insert("added".into(), json!("' ; TRUNCATE customers CASCADE; --"));
    expected.insert("nested".into(), json!({"sql": ["x"], "more": "'); --"}));
    assert_eq!(patched["metadata"], Value::Object(expected));

    // Filtering by a quoted email finds exactly it; the injection-shaped one finds nothing.
    let response = app.list_raw("?email=o%27brien%2Bsql%40example.com").await;
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
