//! The tenant (org, mode) confines every read and write: another org's customer, or the other
//! mode's, is indistinguishable from a missing one, and lists show one's own only.

use reqwest::Method;
use serde_json::json;

use super::*;

/// A customer of org B and one of org A with the same email; returns (theirs, ours).
async fn one_customer_each(app: &TestApp, org_b: &str) -> (String, String) {
    let theirs = create_as(app, org_b, json!({"email": "shared@example.com"})).await;
    let ours = app.create_id(json!({"email": "shared@example.com"})).await;
    (theirs, ours)
}

/// The answer without its request id: a 404 `not_found` on the route, as `token`.
async fn not_found_shape(
    app: &TestApp,
    (method, path, body): (Method, String, Option<Value>),
    token: &str,
) -> Value {
    error_shape(
        send(app, method, &path, Some(token), body).await,
        404,
        "not_found",
    )
    .await
}

#[tokio::test]
async fn another_orgs_customer_is_indistinguishable_from_a_missing_one() {
    let app = spawn_app().await;
    let org_b = token("org_b", "test", ADMIN);
    let (theirs, _) = one_customer_each(&app, &org_b).await;
    let org_a = token(ORG, "test", ADMIN);

    let stolen = json!({"email": "stolen@example.com"});
    for (their_route, missing_route) in routes_of(&theirs, stolen.clone())
        .into_iter()
        .zip(routes_of(MISSING_ID, stolen.clone()))
    {
        let method = their_route.0.clone();
        let theirs_error = not_found_shape(&app, their_route, &org_a).await;
        let missing_error = not_found_shape(&app, missing_route, &org_a).await;
        assert_eq!(theirs_error, missing_error, "{method}");
    }
    // If-Match: * matches any *existing* customer; theirs does not exist for org A.
    let response = app
        .request_as(Method::PATCH, &format!("/v1/customers/{theirs}"), &org_a)
        .header("if-match", "*")
        .json(&stolen)
        .send()
        .await
        .unwrap();
    error_shape(response, 404, "not_found").await;

    // Untouched.
    assert_eq!(
        stored(&app, &theirs).await,
        row("org_b", 1, "pending", "shared@example.com")
    );
}

#[tokio::test]
async fn each_org_lists_and_touches_its_own_customers_only() {
    let app = spawn_app().await;
    let org_b = token("org_b", "test", ADMIN);
    let (theirs, ours) = one_customer_each(&app, &org_b).await;
    let org_a = token(ORG, "test", ADMIN);

    // Lists: each org sees its own only, whatever the filter.
    for query in [
        "",
        "?email=shared@example.com",
        "?status=pending",
        "?type=consumer",
    ] {
        assert_eq!(
            list_ids(&app, &org_a, query).await,
            vec![ours.clone()],
            "{query}"
        );
        assert_eq!(
            list_ids(&app, &org_b, query).await,
            vec![theirs.clone()],
            "{query}"
        );
    }

    // And org B still has full use of it.
    let their_path = format!("/v1/customers/{theirs}");
    let response = send(&app, Method::GET, &their_path, Some(&org_b), None).await;
    assert_eq!(response.status(), 200);
    // Org B cannot touch org A's either.
    let our_path = format!("/v1/customers/{ours}");
    let response = send(&app, Method::DELETE, &our_path, Some(&org_b), None).await;
    error_shape(response, 404, "not_found").await;
    assert_eq!(stored(&app, &ours).await.3, "pending");
    // Org B's deleted customers are not org A's either.
    let response = send(&app, Method::DELETE, &their_path, Some(&org_b), None).await;
    assert_eq!(response.status(), 200);
    assert!(list_ids(&app, &org_a, "?status=deleted").await.is_empty());
}

#[tokio::test]
async fn test_mode_and_live_mode_never_mix() {
    let app = spawn_app().await;
    let test = token(ORG, "test", ADMIN);
    let live = token(ORG, "live", ADMIN);
    let in_test = create_as(&app, &test, json!({"email": "m@example.com"})).await;
    let in_live = create_as(&app, &live, json!({"email": "m@example.com"})).await;
    assert_eq!(stored(&app, &in_test).await.1, "test");
    assert_eq!(stored(&app, &in_live).await.1, "live");

    for (token, own, other) in [(&test, &in_test, &in_live), (&live, &in_live, &in_test)] {
        assert_eq!(list_ids(&app, token, "").await, vec![own.clone()]);
        assert_eq!(
            list_ids(&app, token, "?email=M@example.com").await,
            vec![own.clone()]
        );
        // Every route of the other mode's customer is a 404.
        for route in routes_of(other, json!({"email": "x@example.com"})) {
            not_found_shape(&app, route, token).await;
        }
        // The other mode's customer is untouched.
        let (_, _, version, status, email) = stored(&app, other).await;
        assert_eq!(
            (version, status, email),
            (1, "pending".into(), Some("m@example.com".into()))
        );
        // And one's own is reachable.
        let response = send(
            &app,
            Method::GET,
            &format!("/v1/customers/{own}"),
            Some(token),
            None,
        )
        .await;
        assert_eq!(response.status(), 200);
    }
}
