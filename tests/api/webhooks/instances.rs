//! Several instances and several endpoints: no delivery is attempted by two instances at once,
//! and a slow endpoint does not delay another's deliveries.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use super::receiver::{Answer, Receiver};
use super::*;

#[tokio::test]
async fn two_instances_attempt_each_delivery_once() {
    let db = fresh_database().await;
    let settings = test_settings_with(hooks_settings);
    let first = spawn_app_on(db.clone(), settings.clone()).await;
    let _second = spawn_app_on(db, settings).await;
    let receiver = Receiver::start().await;
    // Slow answers keep attempts in flight while the other instance claims.
    receiver.otherwise(Answer::status(200).delayed(Duration::from_millis(200)));
    let webhook = create_webhook(&first, json!({"url": receiver.url("/")})).await;
    let secret = webhook["secret"].as_str().unwrap();
    const CUSTOMERS: usize = 24;
    for _ in 0..CUSTOMERS {
        first.create_id(customer()).await;
    }
    let received = receiver.wait_for(CUSTOMERS, Duration::from_secs(30)).await;
    // Give a duplicate time to arrive, if there were one.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let received_now = receiver.received();
    assert_eq!(
        received_now.len(),
        CUSTOMERS,
        "each delivery attempted once"
    );
    let mut per_event: HashMap<&str, usize> = HashMap::new();
    for r in &received {
        *per_event.entry(header(r, "webhook-id")).or_default() += 1;
        verify(r, secret).unwrap();
    }
    assert_eq!(per_event.len(), CUSTOMERS);
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_attempts")
        .fetch_one(&first.db)
        .await
        .unwrap();
    assert_eq!(attempts, CUSTOMERS as i64);
}

#[tokio::test]
async fn a_slow_endpoint_does_not_delay_another() {
    let app = spawn_hooks_app().await;
    let slow = Receiver::start().await;
    slow.otherwise(Answer::status(200).delayed(Duration::from_secs(8)));
    let fast = Receiver::start().await;
    create_webhook(&app, json!({"url": slow.url("/slow")})).await;
    create_webhook(&app, json!({"url": fast.url("/fast")})).await;
    const CUSTOMERS: usize = 12;
    for _ in 0..CUSTOMERS {
        app.create_id(customer()).await;
    }
    // The slow endpoint holds at most its own slots (4) for 8 s each: all of the fast one's
    // deliveries arrive while the slow one has not answered a single request.
    fast.wait_for(CUSTOMERS, Duration::from_secs(6)).await;
    assert!(slow.most_at_once() <= 4, "{}", slow.most_at_once());
}
