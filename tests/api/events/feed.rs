//! `GET /v1/events`: the tenant's feed, oldest first, with `after`, `type` and `customerId`; a
//! caught-up consumer gets `data: []` and a cursor to poll with.

use reqwest::Method;
use serde_json::{json, Value};

use super::{feed_all, feed_until, get_ok, history};
use crate::support::*;

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_feed_is_oldest_first_filtered_and_polls_from_where_it_stopped() {
    let app = spawn_app().await;
    let a = app.create_id(json!({"email": "a@example.com"})).await;
    let b = app.create_id(json!({})).await;
    assert_eq!(
        app.patch(&a, json!({"metadata": {"n": 1}})).await.status(),
        200
    );
    assert_eq!(app.activate(&b, None).await.status(), 200);
    assert_eq!(app.delete(&a, None).await.status(), 200);

    let admin = token(ORG, "test", READ);
    let all = feed_until(&app, "", &admin, 5).await;
    let kinds: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "customer.created",
            "customer.created",
            "customer.updated",
            "customer.activated",
            "customer.deleted"
        ]
    );
    // The feed holds the same events as the histories, byte for byte the same JSON.
    let mut a_history = history(&app, &a).await;
    a_history.reverse();
    let of_a: Vec<Value> = all
        .iter()
        .filter(|e| e["customerId"] == a)
        .cloned()
        .collect();
    assert_eq!(of_a, a_history);

    let created = feed_until(&app, "&type=customer.created", &admin, 2).await;
    assert_eq!(ids(&created), ids(&all[..2]));
    let only_b = feed_until(&app, &format!("&customerId={b}"), &admin, 2).await;
    assert_eq!(
        ids(&only_b),
        vec![ids(&all)[1].clone(), ids(&all)[3].clone()]
    );
    for nobody in [MISSING_ID, "not-an-id"] {
        assert!(feed_all(&app, &format!("&customerId={nobody}"), &admin)
            .await
            .is_empty());
    }

    // Caught up: an empty page and a cursor; new events come after it, once.
    let page = get_ok(&app, "/v1/events?limit=100").await;
    assert_eq!(ids(page["data"].as_array().unwrap()), ids(&all));
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    let caught_up = get_ok(&app, &format!("/v1/events?after={cursor}")).await;
    assert_eq!(caught_up["data"], json!([]));
    assert_eq!(caught_up["hasMore"], false);
    let poll_cursor = caught_up["nextCursor"].as_str().unwrap().to_owned();
    let c = app.create_id(json!({})).await;
    let mut polled = Vec::new();
    eventually(
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(20),
        async || {
            let next = get_ok(&app, &format!("/v1/events?after={poll_cursor}")).await;
            polled = next["data"].as_array().unwrap().clone();
            (!polled.is_empty())
                .then_some(())
                .ok_or("not yet".to_owned())
        },
    )
    .await;
    assert_eq!(polled.len(), 1);
    assert_eq!(polled[0]["customerId"], c);
}

#[tokio::test]
async fn the_feed_pages_by_limit_and_refuses_foreign_cursors_and_bad_parameters() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    for i in 0..4 {
        assert_eq!(
            app.patch(&id, json!({"metadata": {"i": i}})).await.status(),
            200
        );
    }
    feed_until(&app, "", &token(ORG, "test", READ), 5).await;
    let first = get_ok(&app, "/v1/events?limit=2").await;
    assert_eq!(first["hasMore"], true);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = get_ok(&app, &format!("/v1/events?limit=2&after={cursor}")).await;
    let versions: Vec<i64> = [&first, &second]
        .iter()
        .flat_map(|p| {
            p["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["version"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    let third = get_ok(
        &app,
        &format!(
            "/v1/events?limit=2&after={}",
            second["nextCursor"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(third["data"][0]["version"], 5);
    for (path, code) in [
        (
            format!("/v1/events?type=customer.updated&after={cursor}"),
            "invalid_cursor",
        ),
        (
            format!("/v1/events?customerId={id}&after={cursor}"),
            "invalid_cursor",
        ),
        ("/v1/events?after=garbage".to_owned(), "invalid_cursor"),
        ("/v1/events?limit=0".to_owned(), "parameter_invalid"),
        (
            "/v1/events?type=customer.renamed".to_owned(),
            "parameter_invalid",
        ),
        ("/v1/events?cursor=x".to_owned(), "parameter_unknown"),
        ("/v1/events?limit=1&limit=2".to_owned(), "parameter_invalid"),
    ] {
        error_body(app.call(Method::GET, &path).await, 400, code).await;
    }
    // Another tenant's cursor does not open here.
    let foreign = send(app.request_as(
        Method::GET,
        &format!("/v1/events?after={cursor}"),
        &token("org_b", "test", READ),
    ))
    .await;
    foreign.error(400, "invalid_cursor");
}

#[tokio::test]
async fn the_feed_never_shows_another_tenants_events_and_needs_the_read_scope() {
    let app = spawn_app().await;
    let tenants = [(ORG, "test"), (ORG, "live"), ("org_b", "test")];
    let mut mine = Vec::new();
    for (org, mode) in tenants {
        for i in 0..3 {
            let reply = send(
                app.request_as(Method::POST, "/v1/customers", &token(org, mode, WRITE))
                    .json(&json!({"metadata": {"owner": format!("{org}/{mode}"), "i": i}})),
            )
            .await;
            assert_eq!(reply.status, 201);
            mine.push(((org, mode), reply.id()));
        }
    }
    for (org, mode) in tenants {
        let feed = feed_until(&app, "", &token(org, mode, READ), 3).await;
        let expected: Vec<&String> = mine
            .iter()
            .filter(|(t, _)| *t == (org, mode))
            .map(|(_, id)| id)
            .collect();
        let seen: Vec<String> = feed
            .iter()
            .map(|e| e["customerId"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(seen.iter().collect::<Vec<_>>(), expected, "{org}/{mode}");
        for event in &feed {
            assert_eq!(
                event["data"]["object"]["metadata"]["owner"],
                format!("{org}/{mode}")
            );
        }
    }
    let none = send(app.request_as(Method::GET, "/v1/events", &token(ORG, "test", ""))).await;
    none.error(403, "insufficient_scope");
    assert_401(
        app.get_anonymous("/v1/events").await,
        "the feed without a token",
    )
    .await;
}
