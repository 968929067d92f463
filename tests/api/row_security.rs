//! Row-level security (migration 3): the second wall behind the tenant filter of every query.
//! These tests work on the database directly as the service's role, doing what a buggy query
//! would do, and check that the policies stop it.

use serde_json::json;
use sqlx::{Connection, Executor, PgConnection, Row};

use crate::support::*;

/// A connection acting like one of the service's pooled connections: the role the pool
/// switches to (src/db.rs), with no tenant bound.
async fn as_service_role(db_options: &sqlx::postgres::PgConnectOptions) -> PgConnection {
    let mut conn = PgConnection::connect_with(db_options)
        .await
        .expect("connect to the test database");
    conn.execute("SET ROLE customers_app")
        .await
        .expect("the role exists after the migrations");
    conn
}

/// Two tenants with customers of their own, created over HTTP.
async fn two_tenants(app: &TestApp) -> (String, String) {
    let mine = app.create_ok(json!({"metadata": {"who": "org_a"}})).await;
    let theirs: serde_json::Value = app
        .request_as(
            reqwest::Method::POST,
            "/v1/customers",
            &token("org_b", "test", "customers:write"),
        )
        .json(&json!({"metadata": {"who": "org_b"}}))
        .send()
        .await
        .expect("create as org_b")
        .json()
        .await
        .expect("JSON");
    (
        mine["id"].as_str().expect("id").to_owned(),
        theirs["id"].as_str().expect("id").to_owned(),
    )
}

#[tokio::test]
async fn the_service_pool_works_as_the_restricted_role() {
    let app = spawn_app().await;
    let pool = app.service_pool();
    let (user, bypass): (String, bool) = sqlx::query_as(
        "SELECT current_user::text, rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&pool)
    .await
    .expect("a pooled connection answers");
    assert_eq!(user, "customers_app");
    assert!(
        !bypass,
        "the service role must not bypass row-level security"
    );
}

#[tokio::test]
async fn a_query_without_a_tenant_sees_nothing() {
    let app = spawn_app().await;
    two_tenants(&app).await;
    // An idempotent write leaves a key row too.
    let response = app
        .request(reqwest::Method::POST, "/v1/customers")
        .header("Idempotency-Key", "rls-key")
        .json(&json!({}))
        .send()
        .await
        .expect("create with a key");
    assert_eq!(response.status(), 201);
    assert_eq!(app.count_customers().await, 3, "the rows are there");

    let mut conn = as_service_role(&app.db_options).await;
    let customers: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&mut conn)
        .await
        .expect("count customers");
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&mut conn)
        .await
        .expect("count keys");
    assert_eq!((customers, keys), (0, 0));
    let updated = conn
        .execute("UPDATE customers SET metadata = '{\"x\": 1}'")
        .await
        .expect("an update that matches nothing");
    let deleted = conn
        .execute("DELETE FROM idempotency_keys")
        .await
        .expect("a delete that matches nothing");
    assert_eq!((updated.rows_affected(), deleted.rows_affected()), (0, 0));
    assert_eq!(app.count_customers().await, 3, "nothing changed");
}

#[tokio::test]
async fn a_query_that_forgot_its_tenant_filter_sees_only_the_bound_tenant() {
    let app = spawn_app().await;
    let (mine, theirs) = two_tenants(&app).await;
    let mut conn = as_service_role(&app.db_options).await;
    let mut tx = conn.begin().await.expect("begin");
    tx.execute("SELECT set_config('app.tenant', 'test/org_a', true)")
        .await
        .expect("bind org_a");

    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM customers")
        .fetch_all(&mut *tx)
        .await
        .expect("list without a filter");
    assert_eq!(ids, vec![mine.clone()]);
    let touched = tx
        .execute(
            format!("UPDATE customers SET metadata = '{{}}' WHERE id IN ('{mine}', '{theirs}')")
                .as_str(),
        )
        .await
        .expect("update without a tenant filter");
    assert_eq!(touched.rows_affected(), 1, "only org_a's customer");

    // Writing a row for another tenant is refused outright.
    let err = tx
        .execute(
            "INSERT INTO customers (org_id, mode, id, created_at, updated_at) \
             VALUES ('org_b', 'test', 'cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E', now(), now())",
        )
        .await
        .expect_err("a row of another tenant violates the policy");
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501"),
        "{err}"
    );
    tx.rollback().await.ok();

    // The binding was transaction-local: the same connection sees nothing again.
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(after, 0);

    // And org_b's customer is untouched.
    let theirs_metadata: serde_json::Value =
        sqlx::query_scalar("SELECT metadata FROM customers WHERE id = $1")
            .bind(&theirs)
            .fetch_one(&app.db)
            .await
            .expect("org_b's customer");
    assert_eq!(theirs_metadata, json!({"who": "org_b"}));
}

#[tokio::test]
async fn the_sweeper_marker_reaches_expired_keys_only() {
    // A database without a server: the service's own sweeper must not get to the key first.
    let db_options = fresh_database().await;
    let admin = sqlx::PgPool::connect_with(db_options.clone())
        .await
        .expect("connect as the owner");
    for (key, expired) in [("old", true), ("fresh", false)] {
        sqlx::query(
            "INSERT INTO idempotency_keys (org_id, mode, key, fingerprint, status_code, body, \
             expires_at) VALUES ('org_x', 'live', $1, $2, 200, '{}', \
             now() + CASE WHEN $3 THEN interval '-1 hour' ELSE interval '1 hour' END)",
        )
        .bind(key)
        .bind(vec![0u8; 32])
        .bind(expired)
        .execute(&admin)
        .await
        .expect("insert a key");
    }
    let mut conn = as_service_role(&db_options).await;
    let mut tx = conn.begin().await.expect("begin");
    tx.execute("SELECT set_config('app.sweeper', 'on', true)")
        .await
        .expect("mark the sweeper");
    let visible: Vec<String> = sqlx::query("SELECT key FROM idempotency_keys")
        .fetch_all(&mut *tx)
        .await
        .expect("select keys")
        .iter()
        .map(|r| r.get("key"))
        .collect();
    assert_eq!(visible, vec!["old".to_owned()]);
    let changed = tx
        .execute("UPDATE idempotency_keys SET status_code = 201")
        .await;
    assert!(
        changed.is_err() || changed.as_ref().is_ok_and(|r| r.rows_affected() == 0),
        "the sweeper may not rewrite keys"
    );
    tx.rollback().await.ok();

    // A sweep with the marker deletes the expired key only.
    let mut tx = conn.begin().await.expect("begin");
    tx.execute("SELECT set_config('app.sweeper', 'on', true)")
        .await
        .expect("mark the sweeper");
    let deleted = tx
        .execute("DELETE FROM idempotency_keys")
        .await
        .expect("delete");
    tx.commit().await.expect("commit");
    assert_eq!(deleted.rows_affected(), 1);
    let left: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_all(&admin)
        .await
        .expect("keys left");
    assert_eq!(left, vec!["fresh".to_owned()]);
}
