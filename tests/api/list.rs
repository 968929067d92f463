//! Listing (contract §5): limit, cursors, filters, order and keyset pagination under concurrent
//! writes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::*;

/// `GET /v1/customers` with the given query pairs (properly URL-encoded), as `ORG` admin.
async fn list(app: &TestApp, query: &[(&str, &str)]) -> Response {
    app.request(Method::GET, "/v1/customers")
        .query(query)
        .send()
        .await
        .expect("request sent")
}

/// A list page; panics unless 200.
async fn list_ok(app: &TestApp, query: &[(&str, &str)]) -> Value {
    let response = list(app, query).await;
    assert_eq!(
        response.status(),
        200,
        "list {query:?} failed: {:?}",
        response.text().await
    );
    response.json().await.expect("a JSON page")
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data is an array")
        .iter()
        .map(|c| c["id"].as_str().expect("an id").to_owned())
        .collect()
}

fn next_cursor(page: &Value) -> String {
    page["nextCursor"]
        .as_str()
        .unwrap_or_else(|| panic!("a nextCursor string: {page}"))
        .to_owned()
}

async fn create_id(app: &TestApp, body: Value) -> String {
    app.create_ok(body).await["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

/// Creates `n` customers, ten at a time concurrently (so several share a millisecond).
async fn create_many(app: &TestApp, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let batch = left.min(10);
        let created =
            futures_util::future::join_all((0..batch).map(|_| create_id(app, json!({})))).await;
        out.extend(created);
        left -= batch;
    }
    out
}

/// Pages through a listing to the end; returns every id in the order served.
async fn page_through(app: &TestApp, filters: &[(&str, &str)], limit: usize) -> Vec<String> {
    let limit = limit.to_string();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut query: Vec<(&str, &str)> = filters.to_vec();
        query.push(("limit", &limit));
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        let page = list_ok(app, &query).await;
        seen.extend(ids(&page));
        if page["hasMore"] == json!(true) {
            cursor = Some(next_cursor(&page));
        } else {
            assert_eq!(page["nextCursor"], Value::Null, "last page: {page}");
            return seen;
        }
    }
    panic!("paging never ended");
}

async fn delete(app: &TestApp, id: &str) {
    let response = app
        .request(Method::DELETE, &format!("/v1/customers/{id}"))
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200, "delete {id}");
}

async fn activate(app: &TestApp, id: &str) {
    let response = app
        .request(Method::POST, &format!("/v1/customers/{id}/activate"))
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200, "activate {id}");
}

/// Asserts that the ids are in the service's order: createdAt descending, then id descending.
async fn assert_newest_first(app: &TestApp, ids: &[String]) {
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, created_at FROM customers WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&app.db)
            .await
            .unwrap();
    let created: std::collections::HashMap<String, _> = rows.into_iter().collect();
    for pair in ids.windows(2) {
        let a = (created[&pair[0]], &pair[0]);
        let b = (created[&pair[1]], &pair[1]);
        assert!(a > b, "{a:?} must come before {b:?}");
    }
}

#[tokio::test]
async fn the_default_limit_is_50_and_any_limit_from_1_to_100_is_honoured() {
    let app = spawn_app().await;
    let created = create_many(&app, 105).await;

    let page = list_ok(&app, &[]).await;
    assert_eq!(ids(&page).len(), 50);
    assert_eq!(page["hasMore"], true);
    next_cursor(&page);

    for limit in [1usize, 2, 7, 50, 99, 100] {
        let page = list_ok(&app, &[("limit", limit.to_string().as_str())]).await;
        assert_eq!(ids(&page).len(), limit, "limit={limit}");
        assert_eq!(page["hasMore"], true, "limit={limit}");
    }

    // The second page of 100 holds the remaining 5 and is the last one.
    let first = list_ok(&app, &[("limit", "100")]).await;
    let cursor = next_cursor(&first);
    let second = list_ok(&app, &[("limit", "100"), ("cursor", cursor.as_str())]).await;
    assert_eq!(ids(&second).len(), 5);
    assert_eq!(second["hasMore"], false);
    assert_eq!(second["nextCursor"], Value::Null);

    let mut all: Vec<String> = ids(&first).into_iter().chain(ids(&second)).collect();
    all.sort();
    let mut expected = created;
    expected.sort();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn a_limit_out_of_range_or_not_an_integer_is_parameter_invalid() {
    let app = spawn_app().await;
    app.create_ok(json!({})).await;
    for limit in [
        "0",
        "101",
        "abc",
        "-1",
        "1.5",
        "",
        "1e2",
        "99999999999999999999",
    ] {
        let response = list(&app, &[("limit", limit)]).await;
        let error = error_body(response, 400, "parameter_invalid").await;
        assert_eq!(error["param"], "limit", "limit={limit:?}: {error}");
        assert_eq!(error["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn the_page_shape_and_the_last_page() {
    let app = spawn_app().await;

    // Empty.
    let page = list_ok(&app, &[]).await;
    assert_eq!(
        page,
        json!({"data": [], "nextCursor": null, "hasMore": false})
    );

    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(app.create_ok(json!({"email": "x@example.com"})).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let page = list_ok(&app, &[("limit", "2")]).await;
    let mut keys: Vec<&String> = page.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["data", "hasMore", "nextCursor"]);
    assert_eq!(page["hasMore"], true);
    assert_eq!(page["data"], json!([created[2], created[1]]));
    let cursor = next_cursor(&page);
    assert!(!cursor.is_empty());

    let last = list_ok(&app, &[("limit", "2"), ("cursor", cursor.as_str())]).await;
    assert_eq!(
        last,
        json!({"data": [created[0]], "nextCursor": null, "hasMore": false})
    );

    // Exactly `limit` customers left: no further page is promised.
    let exact = list_ok(&app, &[("limit", "3")]).await;
    assert_eq!(
        exact,
        json!({"data": [created[2], created[1], created[0]], "nextCursor": null, "hasMore": false})
    );

    // The listed objects are the customers as retrieved.
    let id = created[1]["id"].as_str().unwrap();
    assert_eq!(app.get_json(id).await, created[1]);
}

#[tokio::test]
async fn customers_are_listed_newest_first_with_ties_broken_by_id() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for _ in 0..7 {
        created.push(create_id(&app, json!({})).await);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    // Five customers created in the same instant (as can happen under load): c1..c5 share c3's
    // createdAt.
    let tied = &created[1..6];
    sqlx::query(
        "UPDATE customers SET created_at = (SELECT created_at FROM customers WHERE id = $1) \
         WHERE id = ANY($2)",
    )
    .bind(&created[3])
    .bind(tied)
    .execute(&app.db)
    .await
    .unwrap();

    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    let page = list_ok(&app, &[]).await;
    assert_eq!(ids(&page), newest_first);
    let times: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["createdAt"].as_str().unwrap())
        .collect();
    assert_eq!(times[1], times[5], "the tie is visible in createdAt");
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    // Paging through the tie, one or two at a time, keeps the same order: no repeats, no gaps.
    for limit in [1, 2, 3] {
        assert_eq!(
            page_through(&app, &[], limit).await,
            newest_first,
            "limit={limit}"
        );
    }
    assert_newest_first(&app, &newest_first).await;
}

#[tokio::test]
async fn a_cursor_not_issued_by_the_service_is_invalid_cursor() {
    let app = spawn_app().await;
    create_many(&app, 5).await;
    let page = list_ok(&app, &[("limit", "2")]).await;
    let cursor = next_cursor(&page);
    // The real cursor works.
    assert_eq!(
        ids(&list_ok(&app, &[("limit", "2"), ("cursor", cursor.as_str())]).await).len(),
        2
    );

    let (payload, tag) = cursor.split_once('.').expect("payload.tag");
    let decoded = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    let text = String::from_utf8(decoded.clone()).expect("a JSON payload");
    // Moving the position by hand, keeping the old signature.
    let moved = text.replacen("\"t\":", "\"t\":1", 1);
    assert_ne!(moved, text);
    let forged_position = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(moved.as_bytes()));
    let mut flipped = decoded;
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let flipped = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&flipped));
    let short_tag = format!("{payload}.{}", &tag[..4]);
    let no_tag = format!("{payload}.");
    let no_signature = payload.to_owned();
    let offset = URL_SAFE_NO_PAD.encode(br#"{"offset":2}"#);
    let appended = format!("{cursor}x");
    let doubled = format!("{cursor}.{tag}");

    for bad in [
        "",
        "abc",
        "null",
        "2",
        "!!!.???",
        forged_position.as_str(),
        flipped.as_str(),
        short_tag.as_str(),
        no_tag.as_str(),
        no_signature.as_str(),
        offset.as_str(),
        appended.as_str(),
        doubled.as_str(),
    ] {
        let response = list(&app, &[("limit", "2"), ("cursor", bad)]).await;
        let error = error_body(response, 400, "invalid_cursor").await;
        assert_eq!(error["type"], "invalid_request_error", "{bad:?}");
    }

    // A cursor signed by another deployment (another cursor secret) over the same data.
    let other = spawn_app_on(app.db_options.clone(), {
        let mut settings = test_settings();
        settings.pagination.cursor_secret =
            customers_api::configuration::Secret::new("another-cursor-secret-0123456789abcdef");
        settings
    })
    .await;
    let foreign = next_cursor(&list_ok(&other, &[("limit", "2")]).await);
    let response = list(&app, &[("limit", "2"), ("cursor", foreign.as_str())]).await;
    error_body(response, 400, "invalid_cursor").await;
    let response = list(&other, &[("limit", "2"), ("cursor", cursor.as_str())]).await;
    error_body(response, 400, "invalid_cursor").await;
}

#[tokio::test]
async fn a_cursor_used_with_different_filters_is_invalid_cursor() {
    let app = spawn_app().await;
    for _ in 0..3 {
        create_id(&app, json!({"email": "same@example.com"})).await;
        create_id(
            &app,
            json!({"type": "corporate", "email": "same@example.com"}),
        )
        .await;
    }

    let unfiltered = next_cursor(&list_ok(&app, &[("limit", "1")]).await);
    for filters in [
        vec![("status", "pending")],
        vec![("type", "consumer")],
        vec![("type", "corporate")],
        vec![("email", "same@example.com")],
    ] {
        let mut query = filters.clone();
        query.extend([("limit", "1"), ("cursor", unfiltered.as_str())]);
        let response = list(&app, &query).await;
        error_body(response, 400, "invalid_cursor").await;
    }

    let corporate = next_cursor(&list_ok(&app, &[("type", "corporate"), ("limit", "1")]).await);
    for filters in [
        vec![],
        vec![("type", "consumer")],
        vec![("type", "corporate"), ("status", "pending")],
        vec![("type", "corporate"), ("email", "same@example.com")],
    ] {
        let mut query = filters.clone();
        query.extend([("limit", "1"), ("cursor", corporate.as_str())]);
        let response = list(&app, &query).await;
        error_body(response, 400, "invalid_cursor").await;
    }

    let by_email =
        next_cursor(&list_ok(&app, &[("email", "same@example.com"), ("limit", "1")]).await);
    let response = list(
        &app,
        &[
            ("email", "other@example.com"),
            ("limit", "1"),
            ("cursor", by_email.as_str()),
        ],
    )
    .await;
    error_body(response, 400, "invalid_cursor").await;

    // Another tenant cannot use the cursor either.
    let other_org = token("org_b", "test", ADMIN);
    let response = app
        .request_as(Method::GET, "/v1/customers", &other_org)
        .query(&[("limit", "1"), ("cursor", unfiltered.as_str())])
        .send()
        .await
        .unwrap();
    error_body(response, 400, "invalid_cursor").await;
    let live = token(ORG, "live", ADMIN);
    let response = app
        .request_as(Method::GET, "/v1/customers", &live)
        .query(&[("limit", "1"), ("cursor", unfiltered.as_str())])
        .send()
        .await
        .unwrap();
    error_body(response, 400, "invalid_cursor").await;

    // Same filters, another page size: the cursor is still good (limit is not a filter).
    let page = list_ok(
        &app,
        &[
            ("type", "corporate"),
            ("limit", "5"),
            ("cursor", corporate.as_str()),
        ],
    )
    .await;
    assert_eq!(ids(&page).len(), 2);
    assert!(page["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["type"] == "corporate"));
    // The same filters in another order of the query string are the same filters.
    let page = list_ok(
        &app,
        &[
            ("cursor", corporate.as_str()),
            ("limit", "1"),
            ("type", "corporate"),
        ],
    )
    .await;
    assert_eq!(ids(&page).len(), 1);
}

#[tokio::test]
async fn filters_by_status_type_and_email_ignoring_case() {
    let app = spawn_app().await;
    let alice = create_id(&app, json!({"email": "Alice.Smith+cards@Example.com"})).await;
    let bob = create_id(
        &app,
        json!({"type": "corporate", "email": "bob@example.com"}),
    )
    .await;
    let carol = create_id(&app, json!({"email": "carol@example.com"})).await;
    let dave = create_id(&app, json!({"type": "corporate"})).await;
    let erin = create_id(&app, json!({"email": "alice.smith+cards@example.com"})).await;
    activate(&app, &bob).await;
    activate(&app, &carol).await;
    delete(&app, &carol).await;

    let set = |page: &Value| ids(page).into_iter().collect::<HashSet<_>>();
    let of = |ids: &[&String]| ids.iter().map(|s| s.to_string()).collect::<HashSet<_>>();

    assert_eq!(
        set(&list_ok(&app, &[]).await),
        of(&[&alice, &bob, &dave, &erin])
    );
    assert_eq!(
        set(&list_ok(&app, &[("status", "pending")]).await),
        of(&[&alice, &dave, &erin])
    );
    assert_eq!(
        set(&list_ok(&app, &[("status", "active")]).await),
        of(&[&bob])
    );
    assert_eq!(
        set(&list_ok(&app, &[("status", "deleted")]).await),
        of(&[&carol])
    );
    assert_eq!(
        set(&list_ok(&app, &[("type", "corporate")]).await),
        of(&[&bob, &dave])
    );
    assert_eq!(
        set(&list_ok(&app, &[("type", "consumer")]).await),
        of(&[&alice, &erin])
    );
    assert_eq!(
        set(&list_ok(&app, &[("type", "corporate"), ("status", "pending")]).await),
        of(&[&dave])
    );

    // Email: exact, ignoring case, with the `+` of the address kept.
    for query in [
        "alice.smith+cards@example.com",
        "ALICE.SMITH+CARDS@EXAMPLE.COM",
        "Alice.Smith+cards@Example.com",
    ] {
        assert_eq!(
            set(&list_ok(&app, &[("email", query)]).await),
            of(&[&alice, &erin]),
            "{query}"
        );
    }
    for query in [
        "alice.smith@example.com",
        "alice.smith+cards@example.co",
        "lice.smith+cards@example.com",
        "alice.smith cards@example.com",
        "%example.com",
        "bob@example.com ",
    ] {
        assert_eq!(
            ids(&list_ok(&app, &[("email", query)]).await),
            Vec::<String>::new(),
            "{query:?}"
        );
    }
    assert_eq!(
        set(&list_ok(&app, &[("email", "BOB@example.com")]).await),
        of(&[&bob])
    );
    // A deleted customer's email is found only among the deleted.
    assert!(ids(&list_ok(&app, &[("email", "carol@example.com")]).await).is_empty());
    assert_eq!(
        set(&list_ok(
            &app,
            &[("email", "Carol@example.com"), ("status", "deleted")]
        )
        .await),
        of(&[&carol])
    );
    assert!(
        ids(&list_ok(&app, &[("email", "bob@example.com"), ("type", "consumer")]).await).is_empty()
    );

    // Filter values that cannot match anything are rejected, naming the parameter.
    for (param, value) in [
        ("status", "closed"),
        ("status", "PENDING"),
        ("type", "business"),
    ] {
        let response = list(&app, &[(param, value)]).await;
        let error = error_body(response, 400, "parameter_invalid").await;
        assert_eq!(error["param"], param);
    }
}

#[tokio::test]
async fn deleted_customers_are_hidden_unless_status_deleted_is_asked_for() {
    let app = spawn_app().await;
    let created = create_many(&app, 6).await;
    let (gone, kept) = created.split_at(2);
    for id in gone {
        delete(&app, id).await;
    }

    let listed: HashSet<String> = page_through(&app, &[], 2).await.into_iter().collect();
    assert_eq!(listed, kept.iter().cloned().collect());

    let deleted = list_ok(&app, &[("status", "deleted")]).await;
    assert_eq!(
        ids(&deleted).into_iter().collect::<HashSet<_>>(),
        gone.iter().cloned().collect()
    );
    assert!(deleted["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["status"] == "deleted"));
    // Paging the deleted ones works too.
    let paged: HashSet<String> = page_through(&app, &[("status", "deleted")], 1)
        .await
        .into_iter()
        .collect();
    assert_eq!(paged, gone.iter().cloned().collect());
    // Still retrievable one by one.
    assert_eq!(app.get_json(&gone[0]).await["status"], "deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_while_others_insert_and_delete_never_repeats_or_skips() {
    let app = Arc::new(spawn_app().await);
    let initial = create_many(&app, 250).await;
    let initial_set: HashSet<String> = initial.iter().cloned().collect();
    assert_eq!(initial_set.len(), 250);

    // Every fifth customer in list order gets deleted, alternating from the newest and the
    // oldest end, so that deletions happen both behind and ahead of the pager's position.
    let in_list_order = page_through(&app, &[], 100).await;
    assert_eq!(in_list_order.len(), 250);
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

    let steps = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mutator = tokio::spawn({
        let app = Arc::clone(&app);
        let steps = Arc::clone(&steps);
        let done = Arc::clone(&done);
        async move {
            let mut deleted = Vec::new();
            let mut inserted = Vec::new();
            let mut pending = to_delete.into_iter();
            // Runs until the pager is done, so that the two overlap from start to end.
            while !done.load(Ordering::SeqCst) {
                if let Some(id) = pending.next() {
                    delete(&app, &id).await;
                    deleted.push(id);
                }
                inserted.push(create_id(&app, json!({})).await);
                steps.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (deleted, inserted)
        }
    });

    while steps.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let steps_at_start = steps.load(Ordering::SeqCst);

    let mut seen: Vec<(String, String)> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("limit", "7")];
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        let page = list_ok(&app, &query).await;
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
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let steps_at_end = steps.load(Ordering::SeqCst);
    done.store(true, Ordering::SeqCst);
    let (deleted, inserted) = mutator.await.expect("the mutator finished");
    assert!(
        steps_at_end > steps_at_start && !deleted.is_empty(),
        "the writes overlapped the paging ({steps_at_start}..{steps_at_end}, {} deleted)",
        deleted.len()
    );

    // No repeats at all.
    let mut counted = std::collections::HashMap::new();
    for (_, id) in &seen {
        *counted.entry(id.clone()).or_insert(0) += 1;
    }
    let repeated: Vec<_> = counted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "served more than once: {repeated:?}");

    // Every customer that existed throughout and was not deleted: exactly once.
    let deleted: HashSet<String> = deleted.into_iter().collect();
    let inserted: HashSet<String> = inserted.into_iter().collect();
    let missing: Vec<&String> = initial
        .iter()
        .filter(|id| !deleted.contains(*id) && !counted.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "{} skipped: {missing:?}", missing.len());
    // Nothing that never existed.
    for id in counted.keys() {
        assert!(
            initial_set.contains(id) || inserted.contains(id),
            "unknown id {id}"
        );
    }
    // Served newest first throughout.
    for pair in seen.windows(2) {
        assert!(pair[0] > pair[1], "out of order: {pair:?}");
    }

    // The database agrees with what the mutator did.
    let stored_deleted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM customers WHERE status = 'deleted'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stored_deleted as usize, deleted.len());
    assert_eq!(app.count_customers().await as usize, 250 + inserted.len());
}
