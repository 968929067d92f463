//! Filters by status, type and email (exact, ignoring case), and deleted customers, which are
//! listed only when asked for.

use std::collections::HashSet;

use serde_json::json;

use super::*;

/// Five customers: alice and erin with one email in two spellings, bob and dave corporate, bob
/// active, carol activated then deleted. Returns their ids in that order.
async fn five_customers(app: &TestApp) -> [String; 5] {
    let alice = app
        .create_id(json!({"email": "Alice.Smith+cards@Example.com"}))
        .await;
    let bob = app
        .create_id(json!({"type": "corporate", "email": "bob@example.com"}))
        .await;
    let carol = app.create_id(json!({"email": "carol@example.com"})).await;
    let dave = app.create_id(json!({"type": "corporate"})).await;
    let erin = app
        .create_id(json!({"email": "alice.smith+cards@example.com"}))
        .await;
    activate_ok(app, &bob).await;
    activate_ok(app, &carol).await;
    delete_ok(app, &carol).await;
    [alice, bob, carol, dave, erin]
}

/// The ids a one-page list with `query` shows.
async fn listed(app: &TestApp, query: &[(&str, &str)]) -> HashSet<String> {
    ids(&list_ok(app, query).await).into_iter().collect()
}

fn of(ids: &[&String]) -> HashSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn filters_by_status_and_type() {
    let app = spawn_app().await;
    let [alice, bob, carol, dave, erin] = five_customers(&app).await;
    for (query, expected) in [
        (vec![], vec![&alice, &bob, &dave, &erin]),
        (vec![("status", "pending")], vec![&alice, &dave, &erin]),
        (vec![("status", "active")], vec![&bob]),
        (vec![("status", "deleted")], vec![&carol]),
        (vec![("type", "corporate")], vec![&bob, &dave]),
        (vec![("type", "consumer")], vec![&alice, &erin]),
        (
            vec![("type", "corporate"), ("status", "pending")],
            vec![&dave],
        ),
    ] {
        assert_eq!(listed(&app, &query).await, of(&expected), "{query:?}");
    }

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
async fn filters_by_email_exactly_ignoring_case() {
    let app = spawn_app().await;
    let [alice, bob, carol, _, erin] = five_customers(&app).await;

    // Email: exact, ignoring case, with the `+` of the address kept.
    for query in [
        "alice.smith+cards@example.com",
        "ALICE.SMITH+CARDS@EXAMPLE.COM",
        "Alice.Smith+cards@Example.com",
    ] {
        assert_eq!(
            listed(&app, &[("email", query)]).await,
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
        listed(&app, &[("email", "BOB@example.com")]).await,
        of(&[&bob])
    );
    // A deleted customer's email is found only among the deleted.
    assert!(ids(&list_ok(&app, &[("email", "carol@example.com")]).await).is_empty());
    assert_eq!(
        listed(
            &app,
            &[("email", "Carol@example.com"), ("status", "deleted")]
        )
        .await,
        of(&[&carol])
    );
    assert!(
        ids(&list_ok(&app, &[("email", "bob@example.com"), ("type", "consumer")]).await).is_empty()
    );
}

#[tokio::test]
async fn deleted_customers_are_hidden_unless_status_deleted_is_asked_for() {
    let app = spawn_app().await;
    let created = create_many(&app, 6).await;
    let (gone, kept) = created.split_at(2);
    for id in gone {
        delete_ok(&app, id).await;
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
