//! Contact details: email, phone and the parts of the name.

use serde_json::json;

use super::*;

/// A syntactically valid address of exactly `len` characters (len >= 197).
fn email_of_len(len: usize) -> String {
    // 64 + "@" + 63 + "." + 63 + "." + x + ".com"
    let x = len - 197;
    assert!((1..=63).contains(&x));
    format!(
        "{}@{}.{}.{}.com",
        "a".repeat(64),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(x)
    )
}

#[tokio::test]
async fn email_is_at_most_254_characters_valid_and_without_surrounding_spaces() {
    let app = spawn_app().await;
    let longest = email_of_len(254);
    assert_eq!(longest.len(), 254);
    for email in [
        "alice@example.com",
        "a.b+tag@sub.example.co.uk",
        "ALICE@EXAMPLE.COM",
        "user@[127.0.0.1]",
        longest.as_str(),
    ] {
        let ok = accepted(&app, json!({ "email": email })).await;
        assert_eq!(ok["email"], email);
        let stored: Option<String> =
            sqlx::query_scalar("SELECT email FROM customers WHERE id = $1")
                .bind(ok["id"].as_str().unwrap())
                .fetch_one(&app.db)
                .await
                .unwrap();
        assert_eq!(stored.as_deref(), Some(email));
    }

    let too_long = email_of_len(255);
    assert_eq!(too_long.len(), 255);
    for email in [
        json!(too_long),
        json!(""),
        json!("not-an-email"),
        json!("alice@"),
        json!("@example.com"),
        json!("alice@exa mple.com"),
        json!("alice@@example.com"),
        json!("alice@example..com"),
        json!(" alice@example.com"),
        json!("alice@example.com "),
        json!(" alice@example.com "),
        json!(5),
        json!(["alice@example.com"]),
    ] {
        invalid_at(&app, json!({ "email": email }), "email").await;
    }
}

#[tokio::test]
async fn email_rules_apply_to_patch() {
    let app = spawn_app().await;
    let id = app.create_id(json!({"email": "alice@example.com"})).await;
    for email in [" bob@example.com", "bob", email_of_len(255).as_str()] {
        let error = patch_rejected(&app, &id, json!({ "email": email }), "parameter_invalid").await;
        assert_eq!(error["param"], "email");
    }
    let response = app.patch(&id, json!({"email": "bob@example.com"})).await;
    assert_eq!(response.status(), 200);
    let stored: Option<String> = sqlx::query_scalar("SELECT email FROM customers WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some("bob@example.com"));
}

#[tokio::test]
async fn phone_is_e164() {
    let app = spawn_app().await;
    for phone in [
        "+14155551234",
        "+1234567",
        "+123456789012345",
        "+447700900123",
    ] {
        let ok = accepted(&app, json!({ "phone": phone })).await;
        assert_eq!(ok["phone"], phone);
    }
    for phone in [
        json!("14155551234"),
        json!("+"),
        json!(""),
        json!("+0415555123"),
        json!("+123456"),
        json!("+1234567890123456"),
        json!("+1415555123a"),
        json!("+1 4155551234"),
        json!("+1-415-555-1234"),
        json!(" +14155551234"),
        json!("+14155551234 "),
        json!("++14155551234"),
        json!("+١٤١٥٥٥٥١٢٣٤"),
        json!(14155551234u64),
    ] {
        invalid_at(&app, json!({ "phone": phone }), "phone").await;
    }
}

#[tokio::test]
async fn name_parts_are_1_to_100_characters_not_only_spaces() {
    let app = spawn_app().await;
    let hundred_ascii = "a".repeat(100);
    // 100 characters, 200 bytes: the limit is in characters.
    let hundred_accented = "é".repeat(100);
    for value in [
        "A",
        "Anne Marie",
        hundred_ascii.as_str(),
        hundred_accented.as_str(),
    ] {
        let ok = accepted(&app, json!({"name": {"first": value, "last": value}})).await;
        assert_eq!(ok["name"], json!({"first": value, "last": value}));
    }
    let ok = accepted(&app, json!({"name": {"first": "Alice"}})).await;
    assert_eq!(ok["name"], json!({"first": "Alice", "last": null}));

    for part in ["first", "last"] {
        for value in [
            json!(""),
            json!(" "),
            json!("    "),
            json!("a".repeat(101)),
            json!("é".repeat(101)),
            json!(5),
            json!(["Alice"]),
        ] {
            invalid_at(
                &app,
                json!({"name": { part: value }}),
                &format!("name.{part}"),
            )
            .await;
        }
    }
    // A name that is not an object.
    invalid_at(&app, json!({"name": "Alice Smith"}), "name").await;

    // And on PATCH, the merged name is checked.
    let id = app
        .create_id(json!({"name": {"first": "Alice", "last": "Smith"}}))
        .await;
    let error = patch_rejected(
        &app,
        &id,
        json!({"name": {"last": "   "}}),
        "parameter_invalid",
    )
    .await;
    assert_eq!(error["param"], "name.last");
}
