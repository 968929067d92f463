//! PostgreSQL down while deliveries are pending: once it is back they complete, nothing lost,
//! none attempted twice. Needs a PostgreSQL the test may stop (a scratch one of its own).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::receiver::{Answer, Receiver};
use super::*;

/// Deliveries pending across the outage.
const N: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_pending_while_postgres_is_down_complete_once_it_is_back() {
    if let Err(e) = find_postgres_programs() {
        if uses_database_url() {
            println!("webhooks: the PostgreSQL-down test needs the server programs: {e}");
            return;
        }
        panic!("{e}");
    }
    let mut pg = tokio::task::spawn_blocking(ScratchPostgres::start)
        .await
        .expect("the start-up task");
    let db_options = pg.create_database("webhooks_down").await;
    let app = spawn_app_on(
        db_options,
        test_settings_with(|s| {
            hooks_settings(s);
            // Each first attempt fails; the next falls due 4 to 6 s later, while PostgreSQL is
            // down.
            s.webhooks.retry_schedule = vec![Duration::from_secs(5); 3];
            s.database.acquire_timeout = Duration::from_secs(1);
        }),
    )
    .await;
    let receiver = Receiver::start().await;
    receiver.script(vec![Answer::status(500); N]);
    let webhook = create_webhook(&app, json!({"url": receiver.url("/")})).await;
    let webhook_id = webhook["id"].as_str().unwrap().to_owned();
    for _ in 0..N {
        app.create_id(customer()).await;
    }
    // Every first attempt made and recorded: nothing is in flight when PostgreSQL stops.
    deliveries_until(&app, &webhook_id, |d| {
        d.len() == N
            && d.iter()
                .all(|d| d["attempts"].as_array().unwrap().len() == 1)
    })
    .await;
    assert_eq!(receiver.received().len(), N);

    pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .expect("the stop task");
    // Down past the moment every delivery fell due (at most 6 s after its first attempt).
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        receiver.received().len(),
        N,
        "nothing is attempted while no claim can be made"
    );
    pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .expect("the restart task");

    let received = receiver.wait_for(2 * N, Duration::from_secs(30)).await;
    let deliveries = deliveries_until(&app, &webhook_id, |d| {
        d.len() == N && d.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    for d in &deliveries {
        let codes: Vec<&Value> = d["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["statusCode"])
            .collect();
        assert_eq!(codes, [500, 200], "{d:#}");
    }
    // Each event reached the receiver twice (the failure, then the success), never more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for r in receiver.received() {
        *by_id
            .entry(header(&r, "webhook-id").to_owned())
            .or_default() += 1;
    }
    assert_eq!(by_id.len(), N, "every event was delivered");
    assert!(by_id.values().all(|&n| n == 2), "{by_id:?}");
    assert_eq!(received.len(), 2 * N);
    let events: std::collections::HashSet<&str> = deliveries
        .iter()
        .map(|d| d["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(events.len(), N, "one delivery per event");
    tokio::task::spawn_blocking(move || drop(pg))
        .await
        .expect("the stop task");
}
