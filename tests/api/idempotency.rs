//! Contract §8: `Idempotency-Key` — every row of the table, races (one server and two), a
//! duplicate arriving while the first request still runs, retention and the sweeper, and a
//! server killed with SIGKILL while it holds a key in an open transaction.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_customers-api");
/// A customer id that is well formed but exists nowhere.
const UNKNOWN_ID: &str = "cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E";

// ---------------------------------------------------------------------------------------------
// Helpers of this file
// ---------------------------------------------------------------------------------------------

/// A response read to the end, so its body can be compared byte for byte.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    async fn read(response: Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("a body").to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn id(&self) -> String {
        self.json()["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {}", self.text()))
            .to_owned()
    }

    /// Checks the error envelope of contract §6; returns the `error` object.
    fn error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "unexpected status: {}", self.text());
        assert!(
            self.headers.contains_key("x-request-id"),
            "every response carries X-Request-Id"
        );
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "errors are JSON: {:?}",
            self.header("content-type")
        );
        let error = self.json()["error"].clone();
        assert_eq!(error["code"], code, "unexpected error: {}", self.text());
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(error["requestId"].as_str().is_some());
        error
    }
}

async fn send(request: RequestBuilder) -> Reply {
    Reply::read(request.send().await.expect("request sent")).await
}

/// A request with the admin token of `ORG` and an `Idempotency-Key`.
fn keyed(app: &TestApp, method: Method, path: &str, key: &str) -> RequestBuilder {
    app.request(method, path).header("idempotency-key", key)
}

/// `POST /v1/customers` with a key and a raw JSON body.
async fn create_keyed(app: &TestApp, key: &str, body: &str) -> Reply {
    send(
        keyed(app, Method::POST, "/v1/customers", key)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

/// `PATCH /v1/customers/{id}` with a key and a raw merge-patch body.
async fn patch_keyed(app: &TestApp, id: &str, key: &str, body: &str) -> Reply {
    send(
        keyed(app, Method::PATCH, &format!("/v1/customers/{id}"), key)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_owned()),
    )
    .await
}

async fn key_rows(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(db)
        .await
        .expect("count keys")
}

/// The stored status of `key` in `org`/test mode, if a row exists.
async fn stored_status(db: &PgPool, org: &str, key: &str) -> Option<Option<i16>> {
    sqlx::query_scalar(
        "SELECT status_code FROM idempotency_keys WHERE org_id = $1 AND mode = 'test' AND key = $2",
    )
    .bind(org)
    .bind(key)
    .fetch_optional(db)
    .await
    .expect("read key")
}

/// Asserts that a replay is the first response again: status, body byte for byte, `Location`,
/// `ETag`, and `Idempotent-Replayed: true` (which the first one does not carry).
fn assert_replay_of(first: &Reply, replay: &Reply) {
    assert!(!first.replayed(), "the first response is not a replay");
    assert!(
        replay.replayed(),
        "a replay carries Idempotent-Replayed: true; got {:?} {}",
        replay.headers,
        replay.text()
    );
    assert_eq!(replay.status, first.status, "replayed status");
    assert_eq!(
        replay.text(),
        first.text(),
        "replayed body must be the stored one"
    );
    assert_eq!(replay.body, first.body, "replayed body, byte for byte");
    assert_eq!(replay.header("location"), first.header("location"));
    assert_eq!(replay.header("etag"), first.header("etag"));
    assert!(replay
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
}

/// Waits (bounded) until `n` requests of the service on this database are blocked on
/// `wait_event_type` (`Lock`: a row or transaction lock; `Timeout`: `pg_sleep`).
async fn wait_until_blocked(db: &PgPool, wait_event_type: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let blocked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'customers-api'
                AND wait_event_type = $1",
        )
        .bind(wait_event_type)
        .fetch_one(db)
        .await
        .expect("read pg_stat_activity");
        if blocked >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no request of the service got blocked ({wait_event_type}) within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Makes every UPDATE of a customer wait at a gate (polling with `pg_sleep`, so without waiting
/// on any lock) until `open_gate` — the way to keep a request in flight for as long as a test
/// needs, inside its transaction, without the request waiting for a lock itself. The gate
/// gives up after 4 s (below the service's statement timeout) so nothing can hang.
async fn install_gate(db: &PgPool) {
    for statement in [
        "CREATE TABLE test_gate (open boolean NOT NULL)",
        "INSERT INTO test_gate VALUES (false)",
        "CREATE FUNCTION test_gate_wait() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           FOR i IN 1..400 LOOP
             EXIT WHEN (SELECT open FROM test_gate);
             PERFORM pg_sleep(0.01);
           END LOOP;
           RETURN NEW;
         END $$",
        "CREATE TRIGGER test_gate BEFORE UPDATE ON customers
           FOR EACH ROW EXECUTE FUNCTION test_gate_wait()",
        // The service works as customers_app (row-level security), which must read the gate.
        "GRANT SELECT ON test_gate TO customers_app",
    ] {
        sqlx::query(statement)
            .execute(db)
            .await
            .expect("install the gate");
    }
}

async fn open_gate(db: &PgPool) {
    sqlx::query("UPDATE test_gate SET open = true")
        .execute(db)
        .await
        .expect("open the gate");
}

// ---------------------------------------------------------------------------------------------
// §8, row by row
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn without_a_key_writes_execute_normally_and_nothing_is_stored() {
    let app = spawn_app().await;
    let body = json!({"email": "nokey@example.com"});
    let first = Reply::read(app.create(body.clone()).await).await;
    let second = Reply::read(app.create(body).await).await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(second.status, 201, "{}", second.text());
    assert!(!first.replayed() && !second.replayed());
    assert_ne!(first.id(), second.id(), "two requests, two customers");
    assert_eq!(app.count_customers().await, 2);

    let id = first.id();
    let patched = Reply::read(app.patch(&id, json!({"metadata": {"a": "1"}})).await).await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert!(!patched.replayed());
    let activated = send(app.request(Method::POST, &format!("/v1/customers/{id}/activate"))).await;
    assert_eq!(activated.status, 200, "{}", activated.text());
    let deleted = send(app.request(Method::DELETE, &format!("/v1/customers/{id}"))).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert!(!deleted.replayed());
    assert_eq!(deleted.json()["status"], "deleted");

    assert_eq!(key_rows(&app.db).await, 0, "no key, nothing stored");
}

#[tokio::test]
async fn invalid_keys_are_rejected_with_400_and_nothing_runs() {
    let app = spawn_app().await;
    let body = r#"{"email":"k@example.com"}"#;
    let too_long = "k".repeat(256);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", b"".to_vec()),
        ("quoted empty", b"\"\"".to_vec()),
        ("256 characters", too_long.as_bytes().to_vec()),
        ("a space inside", b"a b".to_vec()),
        ("a tab inside", b"a\tb".to_vec()),
        ("non-ASCII", "cl\u{e9}".as_bytes().to_vec()),
    ];
    for (what, raw) in cases {
        let value = reqwest::header::HeaderValue::from_bytes(&raw).expect("a header value");
        let reply = send(
            app.request(Method::POST, "/v1/customers")
                .header("idempotency-key", value)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        let error = reply.error(400, "idempotency_key_invalid");
        assert_eq!(error["type"], "idempotency_error", "{what}");
        assert!(!reply.replayed(), "{what}");
    }

    // Sent twice (two header lines), even with the same value.
    let reply = send(
        app.request(Method::POST, "/v1/customers")
            .header("idempotency-key", "twice")
            .header("idempotency-key", "twice")
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    reply.error(400, "idempotency_key_invalid");

    // The same rules on PATCH, DELETE and activate.
    let id = app.create_ok(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = app.stored_version(&id).await;
    patch_keyed(&app, &id, "", r#"{"metadata":{"a":"1"}}"#)
        .await
        .error(400, "idempotency_key_invalid");
    send(keyed(
        &app,
        Method::POST,
        &format!("/v1/customers/{id}/activate"),
        &too_long,
    ))
    .await
    .error(400, "idempotency_key_invalid");
    send(keyed(
        &app,
        Method::DELETE,
        &format!("/v1/customers/{id}"),
        "a b",
    ))
    .await
    .error(400, "idempotency_key_invalid");

    assert_eq!(app.count_customers().await, 1, "no invalid-key create ran");
    assert_eq!(app.stored_version(&id).await, before, "nothing changed");
    assert_eq!(app.get_json(&id).await["status"], "pending");
    assert_eq!(key_rows(&app.db).await, 0);

    // The longest key allowed (255) is fine.
    let longest = "k".repeat(255);
    let reply = create_keyed(&app, &longest, body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(stored_status(&app.db, ORG, &longest).await, Some(Some(201)));
}

#[tokio::test]
async fn a_key_is_ignored_on_get() {
    let app = spawn_app().await;
    let created = create_keyed(&app, "get-key", "{}").await;
    assert_eq!(created.status, 201);
    let id = created.id();
    for key in ["", "get-key", "a b"] {
        let reply = send(keyed(
            &app,
            Method::GET,
            &format!("/v1/customers/{id}"),
            key,
        ))
        .await;
        assert_eq!(reply.status, 200, "key {key:?}: {}", reply.text());
        assert!(!reply.replayed());
        assert_eq!(reply.json()["id"], id.as_str());
    }
    assert_eq!(key_rows(&app.db).await, 1);
}

#[tokio::test]
async fn the_rfc_8941_quoted_form_is_the_same_key() {
    let app = spawn_app().await;
    let body = r#"{"email":"quoted@example.com"}"#;
    let first = create_keyed(&app, "\"abc\"", body).await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert!(!first.replayed());
    let stored: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, vec!["abc".to_owned()], "stored without the quotes");

    let unquoted = create_keyed(&app, "abc", body).await;
    assert_replay_of(&first, &unquoted);
    let quoted_again = create_keyed(&app, "\"abc\"", body).await;
    assert_replay_of(&first, &quoted_again);
    assert_eq!(app.count_customers().await, 1);
}

#[tokio::test]
async fn a_new_key_executes_and_stores_the_response_with_the_write() {
    let app = spawn_app().await;
    let first = create_keyed(
        &app,
        "new-key-1",
        r#"{"email":"new@example.com","metadata":{"plan":"pro"}}"#,
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert!(!first.replayed());
    let id = first.id();
    assert_eq!(
        first.header("location"),
        Some(format!("/v1/customers/{id}").as_str())
    );
    assert_eq!(first.header("etag"), Some("\"1\""));

    let (org, mode, expires_in_hours): (String, String, f64) = sqlx::query_as(
        "SELECT org_id, mode, extract(epoch FROM expires_at - now())::float8 / 3600
           FROM idempotency_keys WHERE key = 'new-key-1'",
    )
    .fetch_one(&app.db)
    .await
    .expect("the key is stored");
    type StoredResponse = (Option<i16>, Option<Vec<u8>>, Option<String>, Option<String>);
    let (status, body, location, etag): StoredResponse = sqlx::query_as(
        "SELECT status_code, body, location, etag FROM idempotency_keys WHERE key = 'new-key-1'",
    )
    .fetch_one(&app.db)
    .await
    .expect("the response is stored");
    assert_eq!((org.as_str(), mode.as_str()), (ORG, "test"));
    assert_eq!(status, Some(201));
    assert_eq!(body.as_deref(), Some(first.body.as_slice()), "stored body");
    assert_eq!(location.as_deref(), first.header("location"));
    assert_eq!(etag.as_deref(), first.header("etag"));
    assert!(
        (23.9..=24.0).contains(&expires_in_hours),
        "default retention is 24 h, row expires in {expires_in_hours} h"
    );
    assert_eq!(app.count_customers().await, 1);
}

#[tokio::test]
async fn a_replay_returns_the_stored_response_and_runs_nothing() {
    let app = spawn_app().await;
    let body = r#"{"email":"replay@example.com","name":{"first":"Ann"}}"#;
    let first = create_keyed(&app, "create-1", body).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let id = first.id();
    for _ in 0..3 {
        let replay = create_keyed(&app, "create-1", body).await;
        assert_replay_of(&first, &replay);
    }
    assert_eq!(app.count_customers().await, 1, "only one customer");

    // PATCH: the replay returns the stored (now stale) response, and does not write again.
    let patch = r#"{"metadata":{"a":"1"}}"#;
    let patched = patch_keyed(&app, &id, "patch-1", patch).await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.header("etag"), Some("\"2\""));
    let undo = app.patch(&id, json!({"metadata": {"a": null}})).await;
    assert_eq!(undo.status(), 200);
    assert_eq!(app.stored_version(&id).await, 3);
    let replay = patch_keyed(&app, &id, "patch-1", patch).await;
    assert_replay_of(&patched, &replay);
    assert_eq!(
        replay.json()["metadata"],
        json!({"a": "1"}),
        "the stored body"
    );
    assert_eq!(app.stored_version(&id).await, 3, "the replay wrote nothing");
    assert_eq!(app.get_json(&id).await["metadata"], json!({}));

    // activate and DELETE replay too.
    let path = format!("/v1/customers/{id}/activate");
    let activated = send(keyed(&app, Method::POST, &path, "activate-1")).await;
    assert_eq!(activated.status, 200, "{}", activated.text());
    assert_eq!(activated.json()["status"], "active");
    assert_replay_of(
        &activated,
        &send(keyed(&app, Method::POST, &path, "activate-1")).await,
    );
    let path = format!("/v1/customers/{id}");
    let deleted = send(keyed(&app, Method::DELETE, &path, "delete-1")).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["status"], "deleted");
    let version = app.stored_version(&id).await;
    assert_replay_of(
        &deleted,
        &send(keyed(&app, Method::DELETE, &path, "delete-1")).await,
    );
    assert_eq!(app.stored_version(&id).await, version);
    assert_eq!(key_rows(&app.db).await, 4);
}

#[tokio::test]
async fn key_order_and_spacing_of_the_body_do_not_matter() {
    let app = spawn_app().await;
    let first = create_keyed(
        &app,
        "order-1",
        r#"{"email":"order@example.com","metadata":{"x":"1","y":"2"},"policy":{"limits":{"perDay":100,"perMonth":200}}}"#,
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let replay = create_keyed(
        &app,
        "order-1",
        "{\n  \"policy\" : { \"limits\" : { \"perMonth\" : 200 , \"perDay\" : 100 } },\n  \"metadata\" : {\"y\":\"2\",\t\"x\":\"1\"},\n  \"email\" : \"order@example.com\"\n}",
    )
    .await;
    assert_replay_of(&first, &replay);
    assert_eq!(app.count_customers().await, 1);

    let id = first.id();
    let patched = patch_keyed(&app, &id, "order-2", r#"{"name":{"first":"A","last":"B"}}"#).await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    let replay = patch_keyed(
        &app,
        &id,
        "order-2",
        r#"  { "name" : { "last" : "B" , "first" : "A" } }  "#,
    )
    .await;
    assert_replay_of(&patched, &replay);
    assert_eq!(app.stored_version(&id).await, 2);
}

#[tokio::test]
async fn the_same_key_with_a_different_request_is_422_and_runs_nothing() {
    let app = spawn_app().await;
    let first = create_keyed(&app, "reuse-1", r#"{"email":"one@example.com"}"#).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let id = first.id();

    // A different body.
    let reply = create_keyed(&app, "reuse-1", r#"{"email":"two@example.com"}"#).await;
    let error = reply.error(422, "idempotency_key_reused");
    assert_eq!(error["type"], "idempotency_error");
    assert!(!reply.replayed());
    // A body that only adds a member.
    create_keyed(
        &app,
        "reuse-1",
        r#"{"email":"one@example.com","metadata":{}}"#,
    )
    .await
    .error(422, "idempotency_key_reused");
    assert_eq!(app.count_customers().await, 1, "nothing was created");

    // A different path and method with the same key.
    let other = app.create_ok(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patch = r#"{"metadata":{"a":"1"}}"#;
    let patched = patch_keyed(&app, &id, "reuse-2", patch).await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    patch_keyed(&app, &other, "reuse-2", patch)
        .await
        .error(422, "idempotency_key_reused");
    send(keyed(
        &app,
        Method::DELETE,
        &format!("/v1/customers/{id}"),
        "reuse-2",
    ))
    .await
    .error(422, "idempotency_key_reused");
    send(keyed(
        &app,
        Method::POST,
        &format!("/v1/customers/{id}/activate"),
        "reuse-2",
    ))
    .await
    .error(422, "idempotency_key_reused");
    // The create's key on a PATCH of the customer it made.
    patch_keyed(&app, &id, "reuse-1", patch)
        .await
        .error(422, "idempotency_key_reused");

    assert_eq!(
        app.stored_version(&id).await,
        2,
        "only the first PATCH wrote"
    );
    assert_eq!(
        app.stored_version(&other).await,
        1,
        "the other is untouched"
    );
    let current = app.get_json(&id).await;
    assert_eq!(
        current["status"], "pending",
        "neither deleted nor activated"
    );
    assert_eq!(current["email"], "one@example.com");
    assert_eq!(app.count_customers().await, 2);

    // The original requests still replay their own results.
    assert_replay_of(
        &first,
        &create_keyed(&app, "reuse-1", r#"{"email":"one@example.com"}"#).await,
    );
    assert_replay_of(&patched, &patch_keyed(&app, &id, "reuse-2", patch).await);
}

#[tokio::test]
async fn rejected_requests_store_nothing_and_the_key_stays_free() {
    let app = spawn_app().await;

    // 400 validation on create, then the corrected create with the same key runs.
    let bad = create_keyed(&app, "fix-400", r#"{"email":"not-an-email"}"#).await;
    bad.error(400, "parameter_invalid");
    assert_eq!(stored_status(&app.db, ORG, "fix-400").await, None);
    assert_eq!(app.count_customers().await, 0);
    let fixed = create_keyed(&app, "fix-400", r#"{"email":"fixed@example.com"}"#).await;
    assert_eq!(
        fixed.status,
        201,
        "the corrected retry runs: {}",
        fixed.text()
    );
    assert!(!fixed.replayed());
    assert_eq!(fixed.json()["email"], "fixed@example.com");
    assert_eq!(app.count_customers().await, 1);
    assert_replay_of(
        &fixed,
        &create_keyed(&app, "fix-400", r#"{"email":"fixed@example.com"}"#).await,
    );
    let id = fixed.id();

    // 400 unknown field and 400 invalid JSON.
    create_keyed(&app, "fix-unknown", r#"{"emial":"x@example.com"}"#)
        .await
        .error(400, "parameter_unknown");
    create_keyed(&app, "fix-json", r#"{"email": "#)
        .await
        .error(400, "invalid_json");
    for key in ["fix-unknown", "fix-json"] {
        assert_eq!(stored_status(&app.db, ORG, key).await, None, "{key}");
        let reply = create_keyed(&app, key, "{}").await;
        assert_eq!(reply.status, 201, "{key}: {}", reply.text());
        assert!(!reply.replayed());
    }

    // 400 on a PATCH whose result is invalid, then corrected.
    let seeded = app
        .patch(&id, json!({"policy": {"limits": {"perDay": 500}}}))
        .await;
    assert_eq!(seeded.status(), 200);
    let version = app.stored_version(&id).await;
    patch_keyed(
        &app,
        &id,
        "fix-patch",
        r#"{"policy":{"limits":{"perAuth":900}}}"#,
    )
    .await
    .error(400, "parameter_invalid");
    assert_eq!(app.stored_version(&id).await, version);
    assert_eq!(stored_status(&app.db, ORG, "fix-patch").await, None);
    let reply = patch_keyed(
        &app,
        &id,
        "fix-patch",
        r#"{"policy":{"limits":{"perAuth":100}}}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(!reply.replayed());
    assert_eq!(app.stored_version(&id).await, version + 1);

    // 401: no valid token.
    let path = "/v1/customers";
    let body = r#"{"email":"auth@example.com"}"#;
    let reply = send(
        app.request_as(Method::POST, path, "not-a-token")
            .header("idempotency-key", "fix-auth")
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    reply.error(401, "unauthorized");
    assert_eq!(stored_status(&app.db, ORG, "fix-auth").await, None);
    // 403: a read-only token.
    let reply = send(
        app.request_as(Method::POST, path, &token(ORG, "test", READ))
            .header("idempotency-key", "fix-auth")
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    reply.error(403, "insufficient_scope");
    assert_eq!(stored_status(&app.db, ORG, "fix-auth").await, None);
    let reply = create_keyed(&app, "fix-auth", body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert!(!reply.replayed());

    // 415: a PATCH with the wrong content type, then with the right one.
    let version = app.stored_version(&id).await;
    let reply = send(
        keyed(
            &app,
            Method::PATCH,
            &format!("/v1/customers/{id}"),
            "fix-415",
        )
        .header("content-type", "text/plain")
        .body(r#"{"metadata":{"m":"1"}}"#),
    )
    .await;
    reply.error(415, "unsupported_media_type");
    assert_eq!(stored_status(&app.db, ORG, "fix-415").await, None);
    assert_eq!(app.stored_version(&id).await, version);
    let reply = patch_keyed(&app, &id, "fix-415", r#"{"metadata":{"m":"1"}}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(!reply.replayed());
    assert_eq!(app.stored_version(&id).await, version + 1);

    // 413: a body over 64 KiB, then a normal one.
    let huge = format!(r#"{{"metadata":{{"big":"{}"}}}}"#, "x".repeat(70_000));
    create_keyed(&app, "fix-413", &huge)
        .await
        .error(413, "payload_too_large");
    assert_eq!(stored_status(&app.db, ORG, "fix-413").await, None);
    let reply = create_keyed(&app, "fix-413", "{}").await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert!(!reply.replayed());

    // One row per request that ran, none for the rejected ones.
    assert_eq!(key_rows(&app.db).await, 7);
    assert_eq!(app.count_customers().await, 5);
}

#[tokio::test]
async fn business_outcomes_404_409_412_are_stored_and_replayed() {
    let app = spawn_app().await;

    // 404: PATCH of a customer that does not exist.
    let patch = r#"{"metadata":{"a":"1"}}"#;
    let missing = patch_keyed(&app, UNKNOWN_ID, "outcome-404", patch).await;
    missing.error(404, "not_found");
    assert_eq!(
        stored_status(&app.db, ORG, "outcome-404").await,
        Some(Some(404))
    );
    let replay = patch_keyed(&app, UNKNOWN_ID, "outcome-404", patch).await;
    assert_replay_of(&missing, &replay);
    replay.error(404, "not_found");

    // 409: activate of a deleted customer.
    let id = app.create_ok(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted = send(app.request(Method::DELETE, &format!("/v1/customers/{id}"))).await;
    assert_eq!(deleted.status, 200);
    let version = app.stored_version(&id).await;
    let path = format!("/v1/customers/{id}/activate");
    let conflict = send(keyed(&app, Method::POST, &path, "outcome-409")).await;
    conflict.error(409, "customer_deleted");
    assert!(conflict.header("retry-after").is_none());
    assert_eq!(
        stored_status(&app.db, ORG, "outcome-409").await,
        Some(Some(409))
    );
    let replay = send(keyed(&app, Method::POST, &path, "outcome-409")).await;
    assert_replay_of(&conflict, &replay);
    assert_eq!(app.stored_version(&id).await, version);
    assert_eq!(app.get_json(&id).await["status"], "deleted");

    // 412: a stale If-Match.
    let live = app.create_ok(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bumped = app.patch(&live, json!({"metadata": {"v": "2"}})).await;
    assert_eq!(bumped.status(), 200);
    let stale = send(
        keyed(
            &app,
            Method::PATCH,
            &format!("/v1/customers/{live}"),
            "outcome-412",
        )
        .header("if-match", "\"1\"")
        .header("content-type", "application/json")
        .body(patch),
    )
    .await;
    stale.error(412, "precondition_failed");
    assert_eq!(
        stored_status(&app.db, ORG, "outcome-412").await,
        Some(Some(412))
    );
    assert_eq!(app.stored_version(&live).await, 2);
    let replay = send(
        keyed(
            &app,
            Method::PATCH,
            &format!("/v1/customers/{live}"),
            "outcome-412",
        )
        .header("if-match", "\"1\"")
        .header("content-type", "application/json")
        .body(patch),
    )
    .await;
    assert_replay_of(&stale, &replay);
    assert_eq!(app.stored_version(&live).await, 2, "nothing was written");
    assert_eq!(app.get_json(&live).await["metadata"], json!({"v": "2"}));
}

#[tokio::test]
async fn keys_are_scoped_to_the_tenant() {
    let app = spawn_app().await;
    let org_b = token("org_b", "test", ADMIN);
    let live_a = token(ORG, "live", ADMIN);
    let post = |token: &str, body: &'static str| {
        app.request_as(Method::POST, "/v1/customers", token)
            .header("idempotency-key", "shared-key")
            .header("content-type", "application/json")
            .body(body)
    };
    let a = send(post(
        &token(ORG, "test", ADMIN),
        r#"{"email":"a@example.com"}"#,
    ))
    .await;
    let b = send(post(&org_b, r#"{"email":"a@example.com"}"#)).await;
    // Another body under the same key in a third tenant is no reuse either.
    let c = send(post(&live_a, r#"{"email":"c@example.com"}"#)).await;
    for (name, reply) in [("org_a", &a), ("org_b", &b), ("org_a live", &c)] {
        assert_eq!(reply.status, 201, "{name}: {}", reply.text());
        assert!(!reply.replayed(), "{name} ran its own request");
    }
    assert_ne!(a.id(), b.id());
    assert_ne!(a.id(), c.id());
    assert_eq!(c.json()["email"], "c@example.com");
    assert_eq!(
        app.count_customers().await,
        3,
        "three tenants, three customers"
    );
    let tenants: Vec<(String, String)> =
        sqlx::query_as("SELECT org_id, mode FROM idempotency_keys ORDER BY org_id, mode")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        tenants,
        vec![
            ("org_a".to_owned(), "live".to_owned()),
            ("org_a".to_owned(), "test".to_owned()),
            ("org_b".to_owned(), "test".to_owned()),
        ]
    );

    // Each tenant replays its own result.
    let a2 = send(post(
        &token(ORG, "test", ADMIN),
        r#"{"email":"a@example.com"}"#,
    ))
    .await;
    let b2 = send(post(&org_b, r#"{"email":"a@example.com"}"#)).await;
    assert_replay_of(&a, &a2);
    assert_replay_of(&b, &b2);
    assert_eq!(app.count_customers().await, 3);
    // org_b cannot see org_a's customer through its replay, nor reach it.
    let hidden =
        send(app.request_as(Method::GET, &format!("/v1/customers/{}", a.id()), &org_b)).await;
    hidden.error(404, "not_found");
}

// ---------------------------------------------------------------------------------------------
// Races
// ---------------------------------------------------------------------------------------------

/// Sends `n` copies of one request at once, round-robin over `apps`; returns every reply.
async fn race(
    apps: &[&TestApp],
    n: usize,
    method: Method,
    path: &str,
    key: &str,
    body: &str,
) -> Vec<Reply> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let request = keyed(apps[i % apps.len()], method.clone(), path, key)
            .header("content-type", "application/json")
            .body(body.to_owned());
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            send(request).await
        }));
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("request task"));
    }
    replies
}

/// All replies: `status`, the same body byte for byte, the same ETag/Location; exactly one not
/// a replay.
fn assert_identical(replies: &[Reply], status: u16) {
    let first = &replies[0];
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, status, "reply {i}: {}", reply.text());
        assert_eq!(
            reply.body,
            first.body,
            "reply {i} differs: {} vs {}",
            reply.text(),
            first.text()
        );
        assert_eq!(reply.header("etag"), first.header("etag"), "reply {i}");
        assert_eq!(
            reply.header("location"),
            first.header("location"),
            "reply {i}"
        );
    }
    let originals = replies.iter().filter(|r| !r.replayed()).count();
    assert_eq!(
        originals, 1,
        "exactly one request executed, the others replayed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_identical_posts_create_one_customer() {
    let app = spawn_app().await;
    let replies = race(
        &[&app],
        20,
        Method::POST,
        "/v1/customers",
        "race-post",
        r#"{"email":"race@example.com"}"#,
    )
    .await;
    assert_identical(&replies, 201);
    assert_eq!(app.count_customers().await, 1, "exactly one customer");
    assert_eq!(key_rows(&app.db).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_identical_patches_move_the_version_once() {
    let app = spawn_app().await;
    let id = app.create_ok(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let replies = race(
        &[&app],
        20,
        Method::PATCH,
        &format!("/v1/customers/{id}"),
        "race-patch",
        r#"{"metadata":{"n":"1"}}"#,
    )
    .await;
    assert_identical(&replies, 200);
    assert_eq!(replies[0].header("etag"), Some("\"2\""));
    assert_eq!(app.stored_version(&id).await, 2, "the version moved once");
    assert_eq!(app.get_json(&id).await["metadata"], json!({"n": "1"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_races_hold_across_two_servers_on_one_database() {
    let db = fresh_database().await;
    let one = spawn_app_on(db.clone(), test_settings()).await;
    let two = spawn_app_on(db, test_settings()).await;
    assert_ne!(one.port, two.port);

    let replies = race(
        &[&one, &two],
        20,
        Method::POST,
        "/v1/customers",
        "race-two-post",
        r#"{"email":"two@example.com"}"#,
    )
    .await;
    assert_identical(&replies, 201);
    assert_eq!(one.count_customers().await, 1, "exactly one customer");

    let id = replies[0].id();
    let replies = race(
        &[&one, &two],
        20,
        Method::PATCH,
        &format!("/v1/customers/{id}"),
        "race-two-patch",
        r#"{"metadata":{"n":"2"}}"#,
    )
    .await;
    assert_identical(&replies, 200);
    assert_eq!(one.stored_version(&id).await, 2, "the version moved once");
    assert_eq!(key_rows(&one.db).await, 2);

    // A replay through either server.
    for app in [&one, &two] {
        let reply = patch_keyed(app, &id, "race-two-patch", r#"{"metadata":{"n":"2"}}"#).await;
        assert_eq!(reply.status, 200);
        assert!(reply.replayed());
        assert_eq!(reply.body, replies[0].body);
    }
}

// ---------------------------------------------------------------------------------------------
// A duplicate while the first request is still running
// ---------------------------------------------------------------------------------------------

/// The scenario of the brief: the test holds the customer's row lock, so the first PATCH blocks
/// inside its transaction (holding the key); a duplicate past the bound gets 409 + Retry-After;
/// once the lock is released the first completes and a retry replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_past_the_wait_bound_gets_409_while_the_first_waits_for_a_row_lock() {
    let app = spawn_app_with(|s| s.idempotency.wait = Duration::from_millis(300)).await;
    let id = app.create_ok(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = r#"{"metadata":{"slow":"1"}}"#;

    let mut lock = app.db.begin().await.unwrap();
    sqlx::query("SELECT id FROM customers WHERE id = $1 FOR UPDATE")
        .bind(&id)
        .fetch_one(&mut *lock)
        .await
        .unwrap();

    let first = tokio::spawn(
        keyed(
            &app,
            Method::PATCH,
            &format!("/v1/customers/{id}"),
            "inflight",
        )
        .header("content-type", "application/json")
        .body(body)
        .send(),
    );
    wait_until_blocked(&app.db, "Lock", 1).await;

    let started = Instant::now();
    let second = patch_keyed(&app, &id, "inflight", body).await;
    let waited = started.elapsed();
    // Keep the lock a little longer than the bound, as a slow request would.
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.rollback().await.unwrap();
    let first = Reply::read(first.await.unwrap().expect("first PATCH answered")).await;

    assert_eq!(
        first.status,
        200,
        "the first PATCH, blocked on a row lock for ~{} ms, must complete once the lock is \
         released: {}\n(the duplicate got {} after {waited:?}: {})",
        waited.as_millis() + 200,
        first.text(),
        second.status,
        second.text()
    );
    assert!(!first.replayed());
    second.error(409, "idempotency_request_in_progress");
    assert_eq!(second.header("retry-after"), Some("1"));
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "the duplicate waited the bound (300 ms), then answered: {waited:?}"
    );
    assert_eq!(app.stored_version(&id).await, 2, "executed once");
    let retry = patch_keyed(&app, &id, "inflight", body).await;
    assert_replay_of(&first, &retry);
    assert_eq!(app.stored_version(&id).await, 2);
}

/// `idempotency.wait` bounds how long a *duplicate* waits (§8); the request that owns the key
/// must not be cut off by it. A keyed PATCH that waits for a row lock longer than the bound
/// must behave like the same PATCH without a key: it completes once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_write_waiting_for_a_row_lock_is_not_cut_off_by_the_wait_bound() {
    let app = spawn_app_with(|s| s.idempotency.wait = Duration::from_millis(300)).await;
    let id = app.create_ok(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/customers/{id}");
    for (what, key) in [("without a key", None), ("with a key", Some("slow-lock"))] {
        let mut lock = app.db.begin().await.unwrap();
        sqlx::query("SELECT id FROM customers WHERE id = $1 FOR UPDATE")
            .bind(&id)
            .fetch_one(&mut *lock)
            .await
            .unwrap();
        let mut request = app
            .request(Method::PATCH, &path)
            .header("content-type", "application/json")
            .body(format!(r#"{{"metadata":{{"{what}":"1"}}}}"#));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let version = app.stored_version(&id).await;
        let pending = tokio::spawn(request.send());
        wait_until_blocked(&app.db, "Lock", 1).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        lock.rollback().await.unwrap();
        let reply = Reply::read(pending.await.unwrap().expect("answered")).await;
        assert_eq!(
            reply.status,
            200,
            "PATCH {what}, blocked 800 ms on a row lock with idempotency.wait = 300 ms: {}",
            reply.text()
        );
        assert_eq!(app.stored_version(&id).await, version + 1, "{what}");
    }
}

/// The same 409 path with the first request held in flight without waiting for any lock (a
/// gate in a trigger), so only the duplicate's bound is tested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_past_the_wait_bound_gets_409_then_the_retry_replays() {
    let app = spawn_app_with(|s| s.idempotency.wait = Duration::from_millis(300)).await;
    let id = app.create_ok(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    install_gate(&app.db).await;
    let body = r#"{"metadata":{"slow":"1"}}"#;

    let first = tokio::spawn(
        keyed(&app, Method::PATCH, &format!("/v1/customers/{id}"), "gated")
            .header("content-type", "application/json")
            .body(body)
            .send(),
    );
    wait_until_blocked(&app.db, "Timeout", 1).await;
    let started = Instant::now();
    let second = patch_keyed(&app, &id, "gated", body).await;
    let waited = started.elapsed();
    second.error(409, "idempotency_request_in_progress");
    assert_eq!(second.header("retry-after"), Some("1"));
    assert_eq!(second.json()["error"]["type"], "idempotency_error");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "the duplicate waited the bound (300 ms), then answered: {waited:?}"
    );
    assert_eq!(
        app.stored_version(&id).await,
        1,
        "the first has not committed yet"
    );

    open_gate(&app.db).await;
    let first = Reply::read(first.await.unwrap().expect("first PATCH answered")).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(!first.replayed());
    assert_eq!(app.stored_version(&id).await, 2);
    let retry = patch_keyed(&app, &id, "gated", body).await;
    assert_replay_of(&first, &retry);
    assert_eq!(app.stored_version(&id).await, 2, "executed once");
}

/// Within the bound, the duplicate waits for the first and replays its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_within_the_wait_bound_waits_and_replays() {
    let app = spawn_app().await; // the default bound, 2 s
    let id = app.create_ok(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    install_gate(&app.db).await;
    let body = r#"{"metadata":{"slow":"2"}}"#;

    let first = tokio::spawn(
        keyed(
            &app,
            Method::PATCH,
            &format!("/v1/customers/{id}"),
            "gated-wait",
        )
        .header("content-type", "application/json")
        .body(body)
        .send(),
    );
    wait_until_blocked(&app.db, "Timeout", 1).await;
    let second = tokio::spawn(
        keyed(
            &app,
            Method::PATCH,
            &format!("/v1/customers/{id}"),
            "gated-wait",
        )
        .header("content-type", "application/json")
        .body(body)
        .send(),
    );
    // The duplicate is waiting for the key.
    wait_until_blocked(&app.db, "Lock", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    open_gate(&app.db).await;

    let first = Reply::read(first.await.unwrap().expect("first answered")).await;
    let second = Reply::read(second.await.unwrap().expect("second answered")).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_replay_of(&first, &second);
    assert_eq!(app.stored_version(&id).await, 2, "executed once");
}

// ---------------------------------------------------------------------------------------------
// Retention and the sweeper
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_retention_a_key_runs_anew_and_the_sweeper_deletes_expired_rows() {
    let app = spawn_app_with(|s| {
        s.idempotency.retention = Duration::from_secs(2);
        s.idempotency.sweep_interval = Duration::from_millis(500);
        s.idempotency.sweep_batch = 1;
    })
    .await;
    let body = r#"{"email":"retained@example.com"}"#;
    let first = create_keyed(&app, "retained", body).await;
    assert_eq!(first.status, 201, "{}", first.text());
    for key in ["other-1", "other-2"] {
        assert_eq!(create_keyed(&app, key, "{}").await.status, 201);
    }
    assert_replay_of(&first, &create_keyed(&app, "retained", body).await);
    assert_eq!(key_rows(&app.db).await, 3);
    // Not expired yet: the sweeper (every 500 ms) leaves the rows alone.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(key_rows(&app.db).await, 3, "unexpired keys are kept");

    // Past the retention (whether or not the sweeper got there first), the key is free.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM idempotency_keys WHERE key = 'retained' AND expires_at > now()",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        if live == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the key never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = create_keyed(&app, "retained", body).await;
    assert_eq!(again.status, 201, "{}", again.text());
    assert!(!again.replayed(), "an expired key executes anew");
    assert_ne!(again.id(), first.id(), "a second customer");
    assert_eq!(app.count_customers().await, 4);
    assert_replay_of(&again, &create_keyed(&app, "retained", body).await);

    // The sweeper deletes every expired row, in batches of one.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = key_rows(&app.db).await;
        if rows == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sweeper left {rows} expired key(s) behind"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.count_customers().await,
        4,
        "the sweeper deletes keys only"
    );
}

// ---------------------------------------------------------------------------------------------
// A server killed while it holds a key
// ---------------------------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A URL for the binary's `DATABASE_URL` naming the database of `options`.
fn database_url(options: &PgConnectOptions) -> String {
    let database = options.get_database().expect("a database name");
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let mut url = reqwest::Url::parse(&url).expect("DATABASE_URL is a URL");
            url.set_path(&format!("/{database}"));
            url.to_string()
        }
        _ => {
            // The private test server listens on a Unix socket only.
            let socket = options
                .get_socket()
                .expect("the private server's socket directory");
            let mut url = reqwest::Url::parse(&format!(
                "postgres://{}@localhost:{}/{database}",
                options.get_username(),
                options.get_port()
            ))
            .expect("a URL");
            url.query_pairs_mut()
                .append_pair("host", &socket.to_string_lossy());
            url.to_string()
        }
    }
}

/// The real binary; killed when dropped so a failing test leaves nothing running.
struct Service {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Service {
    fn start(dir: &Path, database_url: &str, name: &str) -> Self {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(BIN)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", database_url)
            .env("CUSTOMERS_API__DATABASE__MIGRATE_ON_START", "false")
            .env("CUSTOMERS_API__SERVER__WORKERS", "2")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("spawn the service");
        Service { child, port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the service exited early with {status}: {}", self.log());
            }
            let ready = client
                .get(self.url("/readyz"))
                .send()
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not become ready: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn sigkill(&mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL).expect("SIGKILL sent");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(!status.success(), "killed, not exited: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "the service survived SIGKILL");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_while_holding_a_key_leaves_it_free_and_the_retry_runs_once() {
    let options = fresh_database().await;
    let db = PgPoolOptions::new()
        .max_connections(3)
        .connect_with(options.clone())
        .await
        .expect("connect to the test database");
    let url = database_url(&options);
    let dir = tempfile::tempdir().expect("a temp dir");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let admin = token(ORG, "test", ADMIN);

    let mut service = Service::start(dir.path(), &url, "first");
    service.wait_ready(&client).await;
    let created = client
        .post(service.url("/v1/customers"))
        .bearer_auth(&admin)
        .json(&json!({"email": "killed@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let version: i64 = sqlx::query_scalar("SELECT version FROM customers WHERE id = $1")
        .bind(&id)
        .fetch_one(&db)
        .await
        .unwrap();

    // Hold the customer's row, so the PATCH blocks inside its transaction, holding the key.
    let mut lock = db.begin().await.unwrap();
    sqlx::query("SELECT id FROM customers WHERE id = $1 FOR UPDATE")
        .bind(&id)
        .fetch_one(&mut *lock)
        .await
        .unwrap();
    let patch = |service: &Service| {
        client
            .patch(service.url(&format!("/v1/customers/{id}")))
            .bearer_auth(&admin)
            .header("idempotency-key", "killed-key")
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"metadata":{"attempt":"1"}}"#)
    };
    let first = tokio::spawn(patch(&service).send());
    wait_until_blocked(&db, "Lock", 1).await;
    // Its transaction has written the key's (uncommitted) row.
    let holding: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
          WHERE a.datname = current_database() AND a.application_name = 'customers-api'
            AND l.relation = 'idempotency_keys'::regclass AND l.mode = 'RowExclusiveLock'
            AND l.granted",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        holding, 1,
        "the blocked PATCH holds its key in an open transaction"
    );
    service.sigkill().await;
    let answered = first.await.unwrap();
    assert!(
        answered.is_err(),
        "the killed server cannot have answered: {answered:?}"
    );
    lock.rollback().await.unwrap();

    // The killed server's sessions end (the blocked one once the lock is gone), and with them
    // its transaction: no write, no key.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sessions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'customers-api'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if sessions == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{sessions} session(s) of the killed server are still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(key_rows(&db).await, 0, "the killed request left no key");
    let (after_kill, metadata): (i64, Value) =
        sqlx::query_as("SELECT version, metadata FROM customers WHERE id = $1")
            .bind(&id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(after_kill, version, "the killed request wrote nothing");
    assert_eq!(metadata, json!({}));

    // Restart and retry with the same key: it runs, once.
    let mut service = Service::start(dir.path(), &url, "second");
    service.wait_ready(&client).await;
    let retry = send(patch(&service)).await;
    assert_eq!(retry.status, 200, "{}\n{}", retry.text(), service.log());
    assert!(!retry.replayed(), "the key was free, so the retry executed");
    assert_eq!(retry.json()["metadata"], json!({"attempt": "1"}));
    assert_eq!(
        retry.header("etag"),
        Some(format!("\"{}\"", version + 1).as_str())
    );
    let stored: i64 = sqlx::query_scalar("SELECT version FROM customers WHERE id = $1")
        .bind(&id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, version + 1, "applied exactly once");
    assert_eq!(stored_status(&db, ORG, "killed-key").await, Some(Some(200)));

    let again = send(patch(&service)).await;
    assert_replay_of(&retry, &again);
    let stored: i64 = sqlx::query_scalar("SELECT version FROM customers WHERE id = $1")
        .bind(&id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, version + 1, "the replay wrote nothing");
}
