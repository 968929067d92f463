//! `Idempotency-Key` on the writes (the rules are in `docs/api-rules.md`): which keys are
//! valid and whose they are (`keys`), what a replay returns (`replays`), what is stored and what
//! is not (`outcomes`), races on one server and on two (`races`), a duplicate arriving while the
//! first request still runs (`in_flight`), retention and the sweeper (`retention`), and a server
//! killed with SIGKILL while it holds a key in an open transaction (`killed`).

mod in_flight;
mod keys;
mod killed;
mod outcomes;
mod races;
mod replays;
mod retention;

use reqwest::{Method, RequestBuilder};
use sqlx::PgPool;

use crate::support::*;

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

/// `PATCH /v1/customers/{id}` with a key and a raw body sent as `application/json`; not sent.
fn keyed_json_patch(app: &TestApp, id: &str, key: &str, body: &'static str) -> RequestBuilder {
    keyed(app, Method::PATCH, &format!("/v1/customers/{id}"), key)
        .header("content-type", "application/json")
        .body(body)
}

/// `DELETE` or `POST …/activate` of a customer (`action` "delete" or "activate"), with a key.
async fn keyed_action(app: &TestApp, action: &str, id: &str, key: &str) -> Reply {
    let request = match action {
        "delete" => keyed(app, Method::DELETE, &format!("/v1/customers/{id}"), key),
        _ => keyed(
            app,
            Method::POST,
            &format!("/v1/customers/{id}/activate"),
            key,
        ),
    };
    send(request).await
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
