//! Keyset pagination while others insert and delete: no customer is served twice or skipped.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::*;

/// Every fifth customer in list order, alternating from the newest and the oldest end, so that
/// deletions happen both behind and ahead of the pager's position.
fn every_fifth_from_both_ends(in_list_order: &[String]) -> Vec<String> {
    let every_fifth: Vec<String> = in_list_order.iter().step_by(5).cloned().collect();
    let mut to_delete = Vec::new();
    let (mut lo, mut hi) = (0usize, every_fifth.len());
    while lo < hi {
        to_delete.push(every_fifth[lo].clone());
        lo += 1;
        if lo < hi {
            hi -= 1;
            to_delete.push(every_fifth[hi].clone());
        }
    }
    to_delete
}

/// Deletes `to_delete` one by one and creates a customer each step, until `done`; counts its
/// steps. Returns (deleted, inserted).
fn mutate_until_done(
    app: Arc<TestApp>,
    to_delete: Vec<String>,
    steps: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
) -> JoinHandle<(Vec<String>, Vec<String>)> {
    tokio::spawn(async move {
        let mut deleted = Vec::new();
        let mut inserted = Vec::new();
        let mut pending = to_delete.into_iter();
        // Runs until the pager is done, so that the two overlap from start to end.
        while !done.load(Ordering::SeqCst) {
            if let Some(id) = pending.next() {
                delete_ok(&app, &id).await;
                deleted.push(id);
            }
            inserted.push(app.create_id(json!({})).await);
            steps.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (deleted, inserted)
    })
}

/// Pages through the list 7 at a time, slowly; returns (createdAt, id) of each customer served.
async fn page_slowly(app: &TestApp) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("limit", "7")];
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        let page = list_ok(app, &query).await;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 7);
        for c in data {
            seen.push((
                c["createdAt"].as_str().unwrap().to_owned(),
                c["id"].as_str().unwrap().to_owned(),
            ));
        }
        pages += 1;
        assert!(pages < 200, "paging never ended");
        if page["hasMore"] == json!(true) {
            assert_eq!(data.len(), 7, "a page that is not the last is full");
            cursor = Some(next_cursor(&page));
        } else {
            assert_eq!(page["nextCursor"], Value::Null);
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What was served against what existed: no repeats, every customer that existed throughout
/// and was not deleted exactly once, nothing that never existed, newest first throughout.
fn check_served(
    seen: &[(String, String)],
    initial: &[String],
    deleted: &HashSet<String>,
    inserted: &HashSet<String>,
) {
    // No repeats at all.
    let mut counted = HashMap::new();
    for (_, id) in seen {
        *counted.entry(id.clone()).or_insert(0) += 1;
    }
    let repeated: Vec<_> = counted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "served more than once: {repeated:?}");

    // Every customer that existed throughout and was not deleted: exactly once.
    let missing: Vec<&String> = initial
        .iter()
        .filter(|id| !deleted.contains(*id) && !counted.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "{} skipped: {missing:?}", missing.len());
    // Nothing that never existed.
    for id in counted.keys() {
        assert!(
            initial.contains(id) || inserted.contains(id),
            "unknown id {id}"
        );
    }
    // Served newest first throughout.
    for pair in seen.windows(2) {
        assert!(pair[0] > pair[1], "out of order: {pair:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_while_others_insert_and_delete_never_repeats_or_skips() {
    let app = Arc::new(spawn_app().await);
    let initial = create_many(&app, 250).await;
    let initial_set: HashSet<String> = initial.iter().cloned().collect();
    assert_eq!(initial_set.len(), 250);
    let in_list_order = page_through(&app, &[], 100).await;
    assert_eq!(in_list_order.len(), 250);
    let to_delete = every_fifth_from_both_ends(&in_list_order);

    let steps = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mutator = mutate_until_done(app.clone(), to_delete, steps.clone(), done.clone());
    while steps.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let steps_at_start = steps.load(Ordering::SeqCst);
    let seen = page_slowly(&app).await;
    let steps_at_end = steps.load(Ordering::SeqCst);
    done.store(true, Ordering::SeqCst);
    let (deleted, inserted) = mutator.await.expect("the mutator finished");
    assert!(
        steps_at_end > steps_at_start && !deleted.is_empty(),
        "the writes overlapped the paging ({steps_at_start}..{steps_at_end}, {} deleted)",
        deleted.len()
    );

    let deleted: HashSet<String> = deleted.into_iter().collect();
    let inserted: HashSet<String> = inserted.into_iter().collect();
    check_served(&seen, &initial, &deleted, &inserted);

    // The database agrees with what the mutator did.
    let stored_deleted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM customers WHERE status = 'deleted'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stored_deleted as usize, deleted.len());
    assert_eq!(app.count_customers().await as usize, 250 + inserted.len());
}
