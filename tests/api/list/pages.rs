//! Page sizes, the shape of a page and of the last one, and the order: newest first, ties
//! broken by id.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;

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
        created.push(app.create_id(json!({})).await);
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
