//! What holds the feed back: a transaction left open. The service's sessions end one left idle
//! (`database.idle_in_transaction_timeout`), and /metrics shows how far the feed's horizon
//! lags (docs/operations.md).

use std::time::Duration;

use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

use crate::support::*;

#[tokio::test]
async fn the_services_sessions_end_a_transaction_left_idle() {
    let app = spawn_app().await;
    let shown: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(&app.service_pool())
        .await
        .expect("a pooled connection answers");
    assert_eq!(shown, "30s", "the default reaches the connection");

    let mut settings = app.settings.database.clone();
    settings.idle_in_transaction_timeout = Duration::from_millis(300);
    let options = customers_api::db::connection_options(app.db_options.clone(), &settings);
    let mut conn = PgConnection::connect_with(&options).await.expect("connect");
    conn.execute("BEGIN").await.expect("BEGIN");
    conn.execute("SELECT pg_current_xact_id()")
        .await
        .expect("a transaction id");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let after = conn.execute("SELECT 1").await;
    assert!(
        after.is_err(),
        "the session idle in its transaction was ended"
    );
}

#[tokio::test]
async fn metrics_show_how_far_an_open_transaction_holds_the_feed_back() {
    let app = spawn_app().await;
    // A transaction that took an id and stays open, as a stuck session anywhere would.
    let mut open = PgConnection::connect_with(&app.db_options)
        .await
        .expect("connect");
    open.execute("BEGIN").await.expect("BEGIN");
    open.execute("SELECT pg_current_xact_id()")
        .await
        .expect("a transaction id");
    // Committed after it began: held back by it.
    app.create_id(json!({})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let text = app.get_anonymous("/metrics").await.text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .trim()
            .parse()
            .expect("a number")
    };
    assert!(
        value("events_feed_horizon_lag_transactions") >= 1.0,
        "{text}"
    );
    assert!(value("events_feed_held_back_seconds") >= 0.1, "{text}");
    open.execute("ROLLBACK").await.expect("ROLLBACK");
}
