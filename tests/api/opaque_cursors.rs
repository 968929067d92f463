//! Cursors are encrypted, not only signed: the feed's position holds `seq`, shared by every
//! tenant, so a readable cursor would let a tenant count other tenants' events. A cursor shows
//! nothing of its position, two cursors of one position differ, and any change to one is
//! `invalid_cursor`, as is using it with other filters or as another tenant.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

async fn feed(app: &TestApp, query: &str, token: &str) -> Reply {
    send(app.request_as(Method::GET, &format!("/v1/events?{query}"), token)).await
}

fn next_cursor(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["nextCursor"]
        .as_str()
        .expect("a nextCursor")
        .to_owned()
}

#[tokio::test]
async fn a_feed_cursor_shows_nothing_and_opens_only_untouched_in_its_scope() {
    let app = spawn_app().await;
    let admin = token(ORG, "test", ADMIN);
    for _ in 0..3 {
        app.create_id(json!({})).await;
    }
    let (feed_xid, seq): (i64, i64) =
        sqlx::query_as("SELECT feed_xid, seq FROM customer_events ORDER BY feed_xid, seq LIMIT 1")
            .fetch_one(&app.db)
            .await
            .expect("the first event's position");

    let first = feed(&app, "limit=1", &admin).await;
    let cursor = next_cursor(&first);
    let again = next_cursor(&feed(&app, "limit=1", &admin).await);
    assert_ne!(cursor, again, "two cursors of one position differ");
    for c in [&cursor, &again] {
        assert!(
            c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "URL-safe: {c}"
        );
        let bytes = URL_SAFE_NO_PAD.decode(c).expect("base64url");
        let shown = String::from_utf8_lossy(&bytes);
        // A number of one or two digits turns up in random bytes by chance (seq is 1 here);
        // longer ones do not, and the JSON form is checked below.
        for secret in [seq.to_string(), feed_xid.to_string()] {
            if secret.len() >= 3 {
                assert!(!shown.contains(&secret), "{secret} readable in {shown}");
            }
        }
        for field in ["\"seq\"", "\"feed_xid\"", "\"xid\""] {
            assert!(!shown.contains(field), "{field} readable in {shown}");
        }
        assert!(!shown.contains('{') || !shown.contains("seq"), "{shown}");
    }
    // Both open, to the same place.
    let second: Value = feed(&app, &format!("limit=1&after={cursor}"), &admin)
        .await
        .json();
    let second_again: Value = feed(&app, &format!("limit=1&after={again}"), &admin)
        .await
        .json();
    assert_eq!(second["data"][0]["id"], second_again["data"][0]["id"]);
    assert_ne!(second["data"][0]["id"], first.json()["data"][0]["id"]);

    // Any altered byte, a cut, another filter, another tenant: invalid_cursor.
    let bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
    let mut bad = Vec::new();
    for i in [0, bytes.len() / 2, bytes.len() - 1] {
        let mut altered = bytes.clone();
        altered[i] ^= 0x80;
        bad.push(URL_SAFE_NO_PAD.encode(altered));
    }
    bad.push(cursor[..cursor.len() - 2].to_owned());
    for b in &bad {
        feed(&app, &format!("limit=1&after={b}"), &admin)
            .await
            .error(400, "invalid_cursor");
    }
    feed(
        &app,
        &format!("limit=1&type=customer.created&after={cursor}"),
        &admin,
    )
    .await
    .error(400, "invalid_cursor");
    feed(
        &app,
        &format!("limit=1&after={cursor}"),
        &token("org_b", "test", ADMIN),
    )
    .await
    .error(400, "invalid_cursor");
}
