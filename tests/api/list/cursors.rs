//! Cursors: only the service's own, for the same filters and the same tenant, are accepted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Method;

use serde_json::json;

use super::*;

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

    // The cursor is opaque (encrypted): its bytes do not show the position.
    let decoded = URL_SAFE_NO_PAD.decode(&cursor).expect("base64url");
    let shown = String::from_utf8_lossy(&decoded);
    assert!(
        !shown.contains("\"t\"") && !shown.contains("cus_"),
        "{shown}"
    );
    let altered = |i: usize| {
        let mut bytes = decoded.clone();
        bytes[i] ^= 1;
        URL_SAFE_NO_PAD.encode(&bytes)
    };
    let (first, middle, last) = (altered(0), altered(30), altered(decoded.len() - 1));
    let truncated = cursor[..cursor.len() - 4].to_owned();
    // A readable position with a made-up tag, as cursors were before they were encrypted.
    let forged_position = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"t":"2020-01-01T00:00:00Z","id":"cus_0"}"#),
        URL_SAFE_NO_PAD.encode([0u8; 16])
    );
    let offset = URL_SAFE_NO_PAD.encode(br#"{"offset":2}"#);
    let appended = format!("{cursor}x");
    let doubled = format!("{cursor}.{cursor}");

    for bad in [
        "",
        "abc",
        "null",
        "2",
        "!!!.???",
        forged_position.as_str(),
        first.as_str(),
        middle.as_str(),
        last.as_str(),
        truncated.as_str(),
        offset.as_str(),
        appended.as_str(),
        doubled.as_str(),
    ] {
        let response = list(&app, &[("limit", "2"), ("cursor", bad)]).await;
        let error = error_body(response, 400, "invalid_cursor").await;
        assert_eq!(error["type"], "invalid_request_error", "{bad:?}");
    }

    // A cursor signed by another deployment (another cursor secret) over the same data.
    let other = spawn_app_on(
        app.db_options.clone(),
        test_settings_with(|settings| {
            settings.pagination.cursor_secret = secret("another-cursor-secret-0123456789abcdef");
        }),
    )
    .await;
    let foreign = next_cursor(&list_ok(&other, &[("limit", "2")]).await);
    let response = list(&app, &[("limit", "2"), ("cursor", foreign.as_str())]).await;
    error_body(response, 400, "invalid_cursor").await;
    let response = list(&other, &[("limit", "2"), ("cursor", cursor.as_str())]).await;
    error_body(response, 400, "invalid_cursor").await;
}

/// Three consumers and three corporate customers, all with the same email.
async fn same_email_customers(app: &TestApp) {
    for _ in 0..3 {
        app.create_id(json!({"email": "same@example.com"})).await;
        app.create_id(json!({"type": "corporate", "email": "same@example.com"}))
            .await;
    }
}

/// The cursor with these filters (and a limit of 1) is refused with `invalid_cursor`.
async fn assert_invalid_cursor(app: &TestApp, filters: &[(&str, &str)], cursor: &str) {
    let mut query = filters.to_vec();
    query.extend([("limit", "1"), ("cursor", cursor)]);
    let response = list(app, &query).await;
    error_body(response, 400, "invalid_cursor").await;
}

#[tokio::test]
async fn a_cursor_used_with_different_filters_is_invalid_cursor() {
    let app = spawn_app().await;
    same_email_customers(&app).await;

    let unfiltered = next_cursor(&list_ok(&app, &[("limit", "1")]).await);
    for filters in [
        vec![("status", "pending")],
        vec![("type", "consumer")],
        vec![("type", "corporate")],
        vec![("email", "same@example.com")],
    ] {
        assert_invalid_cursor(&app, &filters, &unfiltered).await;
    }

    let corporate = next_cursor(&list_ok(&app, &[("type", "corporate"), ("limit", "1")]).await);
    for filters in [
        vec![],
        vec![("type", "consumer")],
        vec![("type", "corporate"), ("status", "pending")],
        vec![("type", "corporate"), ("email", "same@example.com")],
    ] {
        assert_invalid_cursor(&app, &filters, &corporate).await;
    }

    let by_email =
        next_cursor(&list_ok(&app, &[("email", "same@example.com"), ("limit", "1")]).await);
    assert_invalid_cursor(&app, &[("email", "other@example.com")], &by_email).await;
}

#[tokio::test]
async fn another_tenants_cursor_is_invalid_cursor() {
    let app = spawn_app().await;
    same_email_customers(&app).await;
    let unfiltered = next_cursor(&list_ok(&app, &[("limit", "1")]).await);
    // Another org, and the live mode of the same org.
    for tenant in [token("org_b", "test", ADMIN), token(ORG, "live", ADMIN)] {
        let response = app
            .request_as(Method::GET, "/v1/customers", &tenant)
            .query(&[("limit", "1"), ("cursor", unfiltered.as_str())])
            .send()
            .await
            .unwrap();
        error_body(response, 400, "invalid_cursor").await;
    }
}

#[tokio::test]
async fn a_cursor_holds_for_another_limit_and_another_order_of_the_query() {
    let app = spawn_app().await;
    same_email_customers(&app).await;
    let corporate = next_cursor(&list_ok(&app, &[("type", "corporate"), ("limit", "1")]).await);

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
