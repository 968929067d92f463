//! Events are append-only for the service's role (migration 8): bound to a tenant, it may read
//! and insert that tenant's events, never update or delete them, whatever it sets in its
//! session. Only the retention function deletes, and nothing younger than the retention.

use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

use crate::support::*;

/// A connection as the service's pooled ones (the role `customers_app`) with `ORG`'s test mode
/// bound for the session, as a statement binds it for its transaction.
async fn bound_to_org(app: &TestApp) -> PgConnection {
    let mut conn = PgConnection::connect_with(&app.db_options)
        .await
        .expect("connect to the test database");
    conn.execute("SET ROLE customers_app")
        .await
        .expect("the role exists");
    sqlx::query("SELECT set_config('app.tenant', $1, false)")
        .bind(format!("test/{ORG}"))
        .execute(&mut conn)
        .await
        .expect("the tenant bound");
    conn
}

async fn events_stored(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM customer_events")
        .fetch_one(&app.db)
        .await
        .expect("a count")
}

/// The statement fails with `insufficient_privilege`.
async fn refused(conn: &mut PgConnection, sql: &str) {
    let error = conn
        .execute(sql)
        .await
        .expect_err(&format!("{sql} must be refused"));
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("42501"), "{sql}: {error}");
}

#[tokio::test]
async fn the_service_role_can_neither_delete_nor_update_events() {
    let app = spawn_app().await;
    let id = app.create_id(json!({"metadata": {"v": 1}})).await;
    assert_eq!(
        app.patch(&id, json!({"metadata": {"v": 2}})).await.status(),
        200
    );
    let before = events_stored(&app).await;
    assert_eq!(before, 2);

    let mut conn = bound_to_org(&app).await;
    // It sees its tenant's events (reading is allowed)...
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM customer_events")
        .fetch_one(&mut conn)
        .await
        .expect("reading is allowed");
    assert_eq!(seen, 2);
    // ...and cannot delete or change them, nor by setting what the old retention policy opened.
    refused(&mut conn, "DELETE FROM customer_events").await;
    refused(
        &mut conn,
        "UPDATE customer_events SET body = '{}'::json, recorded_at = now()",
    )
    .await;
    refused(&mut conn, "TRUNCATE customer_events").await;
    conn.execute(
        "SELECT set_config('app.retention', 'on', false), set_config('app.relay', 'on', false)",
    )
    .await
    .expect("settings");
    refused(&mut conn, "DELETE FROM customer_events").await;
    assert_eq!(events_stored(&app).await, before, "nothing deleted");

    // The retention function deletes nothing younger than the retention it is given, and
    // refuses none at all.
    let deleted: i64 =
        sqlx::query_scalar("SELECT delete_events_past_retention(interval '1 hour', false, 1000)")
            .fetch_one(&mut conn)
            .await
            .expect("the service role may call the retention function");
    assert_eq!(deleted, 0);
    let error = sqlx::query_scalar::<_, i64>(
        "SELECT delete_events_past_retention(interval '0', false, 1000)",
    )
    .fetch_one(&mut conn)
    .await
    .expect_err("a retention of zero is refused");
    assert!(error.to_string().contains("above zero"), "{error}");
    assert_eq!(events_stored(&app).await, before);

    // Writes through the API still record events (INSERT is allowed).
    assert_eq!(
        app.patch(&id, json!({"metadata": {"v": 3}})).await.status(),
        200
    );
    assert_eq!(events_stored(&app).await, before + 1);
}

#[tokio::test]
async fn another_tenants_events_cannot_be_inserted() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    let mut conn = bound_to_org(&app).await;
    let error = sqlx::query(
        "INSERT INTO customer_events (org_id, mode, customer_id, version, id, type, occurred_at,
                                      feed_xid, body)
         VALUES ('org_b', 'test', $1, 99, 'evt_01JD7Q4X2V6W8Y9Z0A1B2C3D4E', 'customer.updated',
                 now(), 0, '{}')",
    )
    .bind(&id)
    .execute(&mut conn)
    .await
    .expect_err("another tenant's row is refused");
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("42501"), "{error}");
}
