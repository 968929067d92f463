//! The feed's guarantee under concurrency: a follower that starts without a cursor and keeps
//! following `nextCursor` sees every committed event of its tenant exactly once, each
//! customer's in version order, never an uncommitted one — also when a transaction that took
//! its place in the feed early commits after others (here: keyed PATCHes that claimed their key,
//! and so their transaction id, then wait on a row the test holds locked, while 8 writers
//! commit later events).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

const WRITERS: usize = 8;
const CUSTOMERS: usize = 12;
const RUN: Duration = Duration::from_secs(4);
const HOLDS: usize = 3;

/// Follows the feed until `stop` is set and every stored event was seen (or, bounded, none
/// comes any more: the feed holds events back while an older transaction anywhere on the
/// server is open); returns every event seen, in the order seen, and the number of pages.
async fn follow(app: Arc<TestApp>, stop: Arc<AtomicBool>) -> (Vec<Value>, usize) {
    let (mut seen, mut pages, mut after) = (Vec::new(), 0, String::new());
    let mut give_up = None;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let page = send(app.request(Method::GET, &format!("/v1/events?limit=100{after}"))).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        pages += 1;
        after = format!("&after={}", page["nextCursor"].as_str().expect("a cursor"));
        let data = page["data"].as_array().unwrap();
        if data.is_empty() {
            if stopping {
                let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM customer_events")
                    .fetch_one(&app.db)
                    .await
                    .unwrap();
                let deadline = *give_up.get_or_insert(Instant::now() + Duration::from_secs(30));
                if seen.len() as i64 >= stored || Instant::now() > deadline {
                    return (seen, pages);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen.extend(data.iter().cloned());
    }
}

/// PATCHes and creates as fast as it can until the run ends; returns how many succeeded.
async fn write(app: Arc<TestApp>, writer: usize, ids: Arc<Vec<String>>, until: Instant) -> usize {
    let mut done = 0;
    while Instant::now() < until {
        let n = done + writer;
        let request = if n.is_multiple_of(10) {
            app.request(Method::POST, "/v1/customers")
                .json(&json!({"metadata": {"writer": writer}}))
        } else {
            let id = &ids[n % ids.len()];
            let mut request = app
                .request(Method::PATCH, &format!("/v1/customers/{id}"))
                .json(&json!({"metadata": {format!("w{writer}"): n}}));
            if n.is_multiple_of(2) {
                request = request.header("idempotency-key", format!("w{writer}-{done}"));
            }
            request
        };
        let reply = send(request).await;
        assert!(
            reply.status == 200 || reply.status == 201,
            "{}",
            reply.text()
        );
        done += 1;
    }
    done
}

/// Holds a customer's row while a keyed PATCH of it waits inside its transaction (which has
/// claimed its key, and so taken its transaction id, before the others' commit); returns the ids
/// of the events committed while it was held, and the held PATCH's event version.
async fn hold_one(app: &TestApp, id: &str, round: usize) -> (HashSet<String>, i64) {
    let mut locks = hold_row_lock(&app.db, id).await;
    let holder: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *locks)
        .await
        .unwrap();
    let patch = app
        .request(Method::PATCH, &format!("/v1/customers/{id}"))
        .header("idempotency-key", format!("held-{round}"))
        .json(&json!({"metadata": {"held": round}}))
        .send();
    let patch = tokio::spawn(patch);
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(5),
        async || {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            )
            .bind(holder)
            .fetch_one(&app.db)
            .await
            .unwrap();
            (waiting > 0)
                .then_some(())
                .ok_or_else(|| "the held PATCH never waited on the row".to_owned())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let committed_meanwhile: HashSet<String> = sqlx::query_scalar("SELECT id FROM customer_events")
        .fetch_all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .collect();
    locks.commit().await.unwrap();
    let response = patch.await.unwrap().expect("the held PATCH answers");
    assert_eq!(response.status(), 200);
    let version: i64 = response.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap();
    (committed_meanwhile, version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_sees_every_committed_event_once_in_version_order_per_customer() {
    let app = Arc::new(spawn_app_without_rate_limits().await);
    let mut ids = Vec::new();
    for _ in 0..CUSTOMERS {
        ids.push(app.create_id(json!({})).await);
    }
    let held = ids.pop().unwrap();
    let ids = Arc::new(ids);
    let stop = Arc::new(AtomicBool::new(false));
    let follower = tokio::spawn(follow(app.clone(), stop.clone()));
    let until = Instant::now() + RUN;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write(app.clone(), w, ids.clone(), until)))
        .collect();

    let mut overtaken = 0;
    for round in 0..HOLDS {
        let (committed_meanwhile, version) = hold_one(&app, &held, round).await;
        // The held event's place in the feed is before events that committed while it waited.
        let (event_id, feed_xid, seq): (String, i64, i64) = sqlx::query_as(
            "SELECT id, feed_xid, seq FROM customer_events WHERE customer_id = $1 AND version = $2",
        )
        .bind(&held)
        .bind(version)
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert!(!committed_meanwhile.contains(&event_id));
        let later_positions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM customer_events WHERE id = ANY($1) AND (feed_xid, seq) > ($2, $3)",
        )
        .bind(committed_meanwhile.iter().cloned().collect::<Vec<_>>())
        .bind(feed_xid)
        .bind(seq)
        .fetch_one(&app.db)
        .await
        .unwrap();
        overtaken += later_positions;
    }
    let mut writes = 0;
    for writer in writers {
        writes += writer.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let (seen, pages) = follower.await.unwrap();

    let stored: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT id, customer_id, version FROM customer_events ORDER BY feed_xid, seq",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    println!(
        "feed under concurrency: {writes} writes by {WRITERS} writers + {HOLDS} held PATCHes, \
         {} events stored, {} seen in {pages} pages; {overtaken} events committed while an \
         earlier-placed transaction was still open",
        stored.len(),
        seen.len()
    );
    assert!(
        overtaken > 0,
        "the run must include events placed after a transaction that committed later"
    );

    // Exactly once: the same events, no duplicate, none missing, none that did not commit.
    let seen_ids: Vec<String> = seen
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let unique: HashSet<&String> = seen_ids.iter().collect();
    assert_eq!(unique.len(), seen_ids.len(), "an event was seen twice");
    let stored_ids: HashSet<&String> = stored.iter().map(|(id, _, _)| id).collect();
    let missed = stored_ids.difference(&unique).count();
    let uncommitted = unique.difference(&stored_ids).count();
    assert_eq!(
        (missed, uncommitted),
        (0, 0),
        "committed events the follower missed, and events it saw that are not stored"
    );

    // Each customer's events in version order, with no version missing.
    let mut last: HashMap<String, i64> = HashMap::new();
    for event in &seen {
        let customer = event["customerId"].as_str().unwrap().to_owned();
        let version = event["version"].as_i64().unwrap();
        let previous = last.insert(customer.clone(), version).unwrap_or(0);
        assert_eq!(
            version,
            previous + 1,
            "{customer}: version {version} after {previous}"
        );
    }
}
