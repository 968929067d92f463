//! Coalesced GETs by id (`database.coalesce_reads`, `customers::coalesce`): GETs of one tenant
//! that arrive while another GET of that tenant is in flight reach the database as one
//! statement once it returns, and each is answered exactly as a GET alone would be.
//!
//! To have reads in flight for as long as the test needs, the test holds an ACCESS EXCLUSIVE
//! lock on `customers` in a transaction of its own: the statement of a GET waits for it in
//! PostgreSQL, where `pg_stat_activity` shows how many statements are waiting — one per tenant
//! when the others queue in the service, one per GET without coalescing.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use sqlx::PgPool;

use crate::support::*;

const OTHER_ORG: &str = "org_coalesce_other";

/// What a client sees of a GET: status, ETag and the body's bytes.
type Answer = (u16, Option<String>, Vec<u8>);

/// An answer as two GETs of the same customer can be compared: an error names its own request
/// (`requestId`), which is left out; a customer is compared byte for byte.
fn comparable(answer: &Answer) -> Answer {
    let (status, etag, body) = answer.clone();
    if status == 200 {
        return (status, etag, body);
    }
    let mut error: Value = serde_json::from_slice(&body).expect("a JSON error");
    error["error"]
        .as_object_mut()
        .expect("an error object")
        .remove("requestId");
    (status, etag, serde_json::to_vec(&error).expect("JSON"))
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().expect("an ASCII ETag").to_owned());
    let body = response.bytes().await.expect("a body").to_vec();
    (status, etag, body)
}

async fn get_as(app: &TestApp, token: &str, id: &str) -> Answer {
    let response = app
        .request_as(Method::GET, &format!("/v1/customers/{id}"), token)
        .send()
        .await
        .expect("request sent");
    answer(response).await
}

async fn create_as(app: &TestApp, token: &str, n: usize) -> String {
    let mut body = full_customer();
    body["email"] = Value::from(format!("coalesce.{n}@example.com"));
    let response = app
        .request_as(Method::POST, "/v1/customers", token)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.expect("JSON");
    created["id"].as_str().expect("an id").to_owned()
}

/// Statements of the service waiting for the test's lock on `customers`.
async fn waiting_reads(db: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'
            AND query LIKE '%FROM customers%'",
    )
    .fetch_one(db)
    .await
    .expect("pg_stat_activity")
}

async fn until_waiting(db: &PgPool, count: i64) {
    for _ in 0..200 {
        if waiting_reads(db).await >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{count} reads never reached the database");
}

/// GETs sent while the lock is held: `first` (one per tenant) are sent first and waited for in
/// PostgreSQL, then `rest`; after a pause in which the rest queue, the lock goes. Returns every
/// answer, in the order of `first` then `rest`, and the reads that were waiting in PostgreSQL
/// just before the lock went.
async fn behind_a_lock(
    app: &TestApp,
    first: Vec<(String, String)>,
    rest: Vec<(String, String)>,
) -> (Vec<Answer>, i64) {
    let mut lock = app.db.begin().await.expect("a transaction");
    sqlx::query("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("the lock");
    let send = |(token, id): (String, String)| {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/customers/{id}"));
        tokio::spawn(async move {
            let response = client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("request sent");
            answer(response).await
        })
    };
    let leaders = first.len() as i64;
    let mut sent: Vec<_> = first.into_iter().map(send).collect();
    until_waiting(&app.db, leaders).await;
    sent.extend(rest.into_iter().map(send));
    // The rest reach the service and queue (or, without coalescing, reach PostgreSQL).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = waiting_reads(&app.db).await;
    lock.commit().await.expect("the lock goes");
    let mut answers = Vec::new();
    for task in sent {
        answers.push(task.await.expect("the GET's task"));
    }
    (answers, waiting)
}

/// A server on a PostgreSQL of the test's own: the lock of `behind_a_lock` (ACCESS EXCLUSIVE,
/// WAL-logged) gives its transaction an xid, which on the shared test cluster would hold back the
/// feed's visibility horizon (`pg_snapshot_xmin`, server-wide) of every other test while it lasts.
async fn app_on_own_server(coalesce_reads: bool) -> (TestApp, ScratchPostgres) {
    let server = tokio::task::spawn_blocking(ScratchPostgres::start)
        .await
        .expect("the scratch PostgreSQL starts");
    let options = server.create_database("coalesce").await;
    let settings = test_settings_with(|s| {
        s.database.coalesce_reads = coalesce_reads;
        s.rate_limit.enabled = false;
    });
    (spawn_app_on(options, settings).await, server)
}

async fn coalescing_app() -> (TestApp, ScratchPostgres) {
    app_on_own_server(true).await
}

#[tokio::test]
async fn a_batch_answers_each_get_with_the_bytes_of_a_get_alone_and_404_for_a_missing_id() {
    let (app, _server) = coalescing_app().await;
    let admin = token(ORG, "test", ADMIN);
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(create_as(&app, &admin, n).await);
    }
    ids.push(MISSING_ID.to_owned());
    // A customer asked for twice in one batch.
    ids.push(ids[1].clone());
    let mut alone = Vec::new();
    for id in &ids {
        alone.push(get_as(&app, &admin, id).await);
    }
    assert_eq!(alone[6].0, 404);

    let first = vec![(admin.clone(), ids[0].clone())];
    let rest = ids[1..]
        .iter()
        .map(|id| (admin.clone(), id.clone()))
        .collect();
    let (answers, waiting) = behind_a_lock(&app, first, rest).await;

    assert_eq!(
        waiting, 1,
        "the GETs that arrived while one was in flight must wait in the service, not in PostgreSQL"
    );
    for ((id, alone), batched) in ids.iter().zip(&alone).zip(&answers) {
        assert_eq!(
            comparable(batched),
            comparable(alone),
            "{id}: a batched GET answers as a GET alone"
        );
    }
    // Error answers are the same JSON too (the missing id inside the batch).
    assert_eq!(answers[6].0, 404);
}

#[tokio::test]
async fn the_gets_of_two_tenants_never_share_a_statement() {
    let (app, _server) = coalescing_app().await;
    let a = token(ORG, "test", ADMIN);
    let b = token(OTHER_ORG, "test", ADMIN);
    let mut of_a = Vec::new();
    let mut of_b = Vec::new();
    for n in 0..4 {
        of_a.push(create_as(&app, &a, n).await);
        of_b.push(create_as(&app, &b, 100 + n).await);
    }
    let first = vec![(a.clone(), of_a[0].clone()), (b.clone(), of_b[0].clone())];
    let mut rest = Vec::new();
    for n in 1..4 {
        rest.push((a.clone(), of_a[n].clone()));
        rest.push((b.clone(), of_b[n].clone()));
    }
    // Each tenant's ids asked for by the other: 404 in either batch.
    rest.push((a.clone(), of_b[1].clone()));
    rest.push((b.clone(), of_a[1].clone()));
    let asked: Vec<(String, String)> = first.iter().chain(&rest).cloned().collect();
    let (answers, waiting) = behind_a_lock(&app, first, rest).await;

    assert_eq!(
        waiting, 2,
        "one statement in flight per tenant, and the queued GETs of each wait behind their own"
    );
    for ((token, id), answer) in asked.iter().zip(&answers) {
        let alone = get_as(&app, token, id).await;
        assert_eq!(
            comparable(answer),
            comparable(&alone),
            "{id}: as a GET alone of the same tenant"
        );
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(&statuses[..8], &[200; 8], "{statuses:?}");
    assert_eq!(&statuses[8..], &[404, 404], "{statuses:?}");
}

#[tokio::test]
async fn without_coalescing_each_get_is_a_statement_of_its_own() {
    let (app, _server) = app_on_own_server(false).await;
    let admin = token(ORG, "test", ADMIN);
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(create_as(&app, &admin, n).await);
    }
    let first = vec![(admin.clone(), ids[0].clone())];
    let rest = ids[1..]
        .iter()
        .map(|id| (admin.clone(), id.clone()))
        .collect();
    let (answers, waiting) = behind_a_lock(&app, first, rest).await;
    // What the assertions above tell apart: here every GET waits in PostgreSQL.
    assert_eq!(waiting, 4);
    assert!(answers.iter().all(|a| a.0 == 200));
}

/// The batch's statement probes the primary key once per id, custom and generic plan, on a
/// table that was never analysed (as after a bulk load): `id = ANY($3)` was planned there as a
/// scan of the tenant's whole key range, filtering the ids.
#[tokio::test]
async fn a_batch_probes_the_primary_key_per_id_without_statistics() {
    let app = spawn_app().await;
    sqlx::raw_sql(
        "ALTER TABLE customers SET (autovacuum_enabled = false);
         INSERT INTO customers (org_id, mode, id, created_at, updated_at, version)
         SELECT 'org_a', 'test', 'cus_' || lpad(upper(to_hex(g)), 26, '0'),
                now() - g * interval '1 second', now(), 1
           FROM generate_series(1, 20000) g;",
    )
    .execute(&app.db)
    .await
    .expect("customers");
    let mut conn = app.service_pool().acquire().await.expect("a connection");
    sqlx::raw_sql(&format!(
        "PREPARE batch(text, text, text[]) AS {}",
        customers_api::customers::coalesce::BATCH_STATEMENT
    ))
    .execute(&mut *conn)
    .await
    .expect("the statement prepares");
    for mode in ["force_custom_plan", "force_generic_plan"] {
        let plan: Vec<String> = sqlx::raw_sql(&format!(
            "SET plan_cache_mode = {mode}; EXPLAIN (COSTS OFF) EXECUTE batch('org_a', 'test', \
             '{{cus_00000000000000000000000001,cus_00000000000000000000000002}}')"
        ))
        .fetch_all(&mut *conn)
        .await
        .expect("the plan")
        .iter()
        .map(|row| sqlx::Row::get(row, 0))
        .collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains("Index Scan using customers_pkey")
                && plan.contains("(id = wanted.id))")
                && !plan.contains("ANY"),
            "{mode}: one probe of the primary key per id:\n{plan}"
        );
    }
}
