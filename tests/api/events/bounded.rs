//! The feed's filtered reads resume where they stopped: a follower of a rare type moves past
//! the events it read through (an empty page carries a cursor further on), and one customer's
//! feed resumes after its last version. Neither may skip an event, also one written after the
//! poll. (What a page costs at depth is measured by `scripts/bench`, scenario `history`.)

use reqwest::Method;
use serde_json::{json, Value};

use super::get_ok;
use crate::support::*;

/// Polls `path` + `&after=cursor` until a page holds events (bounded: the feed holds events
/// back while an older transaction is open anywhere on the shared test server); returns them
/// and the next cursor.
async fn poll(app: &TestApp, path: &str, cursor: &str) -> (Vec<Value>, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let page = get_ok(app, &format!("{path}&after={cursor}")).await;
        let data = page["data"].as_array().unwrap().clone();
        let next = page["nextCursor"].as_str().unwrap().to_owned();
        if !data.is_empty() || std::time::Instant::now() > deadline {
            return (data, next);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_follower_of_a_rare_type_moves_past_what_it_read_and_misses_nothing() {
    let app = spawn_app_without_rate_limits().await;
    let ids = [
        app.create_id(json!({})).await,
        app.create_id(json!({})).await,
    ];
    for n in 0..5 {
        for id in &ids {
            let patched = app.patch(id, json!({"metadata": {"n": n}})).await;
            assert_eq!(patched.status(), 200);
        }
    }
    let path = "/v1/events?type=customer.deleted&limit=5";
    let first = get_ok(&app, path).await;
    assert_eq!(first["data"], json!([]));
    assert_eq!(first["hasMore"], false);
    let cursor = first["nextCursor"].as_str().unwrap().to_owned();
    // More events of other types, then the rare one.
    for id in &ids {
        assert_eq!(
            app.patch(id, json!({"name": {"first": "A"}}))
                .await
                .status(),
            200
        );
    }
    let moved = get_ok(&app, &format!("{path}&after={cursor}")).await;
    assert_eq!(moved["data"], json!([]));
    let moved_cursor = moved["nextCursor"].as_str().unwrap().to_owned();
    assert_eq!(app.delete(&ids[1], None).await.status(), 200);
    let (deleted, after_delete) = poll(&app, path, &moved_cursor).await;
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0]["type"], "customer.deleted");
    assert_eq!(deleted[0]["customerId"], ids[1].as_str());
    // The older cursor finds the same event: the moved one skipped nothing.
    let (again, _) = poll(&app, path, &cursor).await;
    assert_eq!(again, deleted);
    // And after it, nothing more until the next deletion.
    let after = get_ok(&app, &format!("{path}&after={after_delete}")).await;
    assert_eq!(after["data"], json!([]));
    assert_eq!(app.delete(&ids[0], None).await.status(), 200);
    let (next, _) = poll(&app, path, after["nextCursor"].as_str().unwrap()).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0]["customerId"], ids[0].as_str());
}

#[tokio::test]
async fn one_customers_feed_pages_by_version_and_resumes_after_its_last_poll() {
    let app = spawn_app_without_rate_limits().await;
    let id = app.create_id(json!({})).await;
    let other = app.create_id(json!({})).await;
    for n in 1..25 {
        let patched = app.patch(&id, json!({"metadata": {"n": n}})).await;
        assert_eq!(patched.status(), 200);
        if n % 5 == 0 {
            assert_eq!(
                app.patch(&other, json!({"metadata": {"n": n}}))
                    .await
                    .status(),
                200
            );
        }
    }
    let path = format!("/v1/events?customerId={id}&limit=7");
    // Every version once, in order, page after page (held back events show on a later poll).
    let mut versions = Vec::new();
    let mut cursor = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while versions.len() < 25 && std::time::Instant::now() < deadline {
        let page = get_ok(&app, &format!("{path}{cursor}")).await;
        for event in page["data"].as_array().unwrap() {
            assert_eq!(event["customerId"], id.as_str());
            versions.push(event["version"].as_i64().unwrap());
        }
        cursor = format!("&after={}", page["nextCursor"].as_str().unwrap());
    }
    assert_eq!(versions, (1..=25).collect::<Vec<i64>>());
    // Caught up: empty, then the next versions after it, once.
    let caught_up = get_ok(&app, &format!("{path}{cursor}")).await;
    assert_eq!(caught_up["data"], json!([]));
    assert_eq!(caught_up["hasMore"], false);
    let poll_cursor = caught_up["nextCursor"].as_str().unwrap().to_owned();
    assert_eq!(
        app.patch(&id, json!({"metadata": {"n": null}}))
            .await
            .status(),
        200
    );
    assert_eq!(app.delete(&id, None).await.status(), 200);
    let mut newer = Vec::new();
    let mut cursor = poll_cursor.clone();
    while newer.len() < 2 {
        let (data, next) = poll(&app, &path, &cursor).await;
        assert!(
            !data.is_empty(),
            "the new versions are shown: {cursor} {:?}",
            sqlx::query_as::<_, (i64, i64, i64)>(
                "SELECT version, feed_xid, seq FROM customer_events WHERE customer_id = $1 \
                  ORDER BY version DESC LIMIT 3"
            )
            .bind(&id)
            .fetch_all(&app.db)
            .await
        );
        newer.extend(data.iter().map(|e| e["version"].as_i64().unwrap()));
        cursor = next;
    }
    assert_eq!(newer, [26, 27]);
    // With a type as well: from the caught-up cursor, only the deletion.
    let typed = format!("/v1/events?customerId={id}&type=customer.deleted");
    let first = get_ok(&app, &typed).await;
    let (deleted, _) = if first["data"].as_array().unwrap().is_empty() {
        poll(&app, &typed, first["nextCursor"].as_str().unwrap()).await
    } else {
        (first["data"].as_array().unwrap().clone(), String::new())
    };
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["version"], 27);
    let reply = send(app.request(Method::GET, &format!("{typed}&limit=1"))).await;
    assert_eq!(reply.status, 200);
}
