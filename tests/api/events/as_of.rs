//! `GET /v1/customers/{id}?asOf=`: the customer as it was at an instant — the last version whose
//! `updatedAt` is at or before it — with that version's ETag; 404 before it existed; 422
//! `history_unavailable` where its recorded history does not reach, never a guess.

use chrono::{DateTime, Duration, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

fn instant(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

async fn as_of(app: &TestApp, id: &str, at: &str) -> Reply {
    let path = format!("/v1/customers/{id}?asOf={}", urlencode(at));
    send(app.request(Method::GET, &path)).await
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// A write that lands on a later millisecond than the last one.
async fn later() {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
}

#[tokio::test]
async fn as_of_gives_each_version_at_its_instants() {
    let app = spawn_app().await;
    // Each version as its write answered it, byte for byte.
    let created = send(app.request(Method::POST, "/v1/customers").json(
        &json!({"email": "v1@example.com", "policy": {"ttlDays": 3, "limits": {"perDay": 9}}}),
    ))
    .await;
    let id = created.id();
    let mut versions = vec![created.text()];
    for body in [
        json!({"email": "v2@example.com"}),
        json!({"policy": {"cooldownMinutes": 3}}),
    ] {
        later().await;
        let patch = app
            .request(Method::PATCH, &format!("/v1/customers/{id}"))
            .json(&body);
        versions.push(send(patch).await.text());
    }
    later().await;
    versions.push(
        send(app.request(Method::DELETE, &format!("/v1/customers/{id}")))
            .await
            .text(),
    );
    let json = |text: &String| serde_json::from_str::<Value>(text).unwrap();

    let created = instant(&json(&versions[0])["createdAt"]);
    let before = as_of(&app, &id, &rfc3339(created - Duration::milliseconds(1))).await;
    before.error(404, "not_found");
    for (i, version) in versions.iter().enumerate() {
        let at = instant(&json(version)["updatedAt"]);
        for t in [at, at + Duration::microseconds(500)] {
            let reply = as_of(&app, &id, &rfc3339(t)).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(
                &reply.text(),
                version,
                "version {} at {t}, the same bytes",
                i + 1
            );
            assert_eq!(
                reply.header("etag"),
                Some(format!("\"{}\"", i + 1).as_str())
            );
        }
    }
    // Long after: the deleted customer as it is; an offset other than Z is the same instant.
    let now = as_of(&app, &id, "2999-01-01T00:00:00+02:00").await;
    assert_eq!(&now.text(), versions.last().unwrap());
}

#[tokio::test]
async fn a_malformed_instant_is_a_named_400_and_other_tenants_get_404() {
    let app = spawn_app().await;
    let id = app.create_id(json!({})).await;
    for bad in [
        "yesterday",
        "2026-12-01T10:00:00",
        "2026-12-01",
        "2026-13-01T00:00:00Z",
        "",
    ] {
        let error = as_of(&app, &id, bad).await.error(400, "parameter_invalid");
        assert_eq!(error["param"], "asOf", "{bad:?}");
    }
    let twice = send(app.request(
        Method::GET,
        &format!("/v1/customers/{id}?asOf=2999-01-01T00:00:00Z&asOf=2999-01-01T00:00:00Z"),
    ))
    .await;
    twice.error(400, "parameter_invalid");
    let foreign = send(app.request_as(
        Method::GET,
        &format!("/v1/customers/{id}?asOf=2999-01-01T00:00:00Z"),
        &token("org_b", "test", READ),
    ))
    .await;
    foreign.error(404, "not_found");
}

/// A customer that existed before events were recorded (written here straight into the table,
/// as the migration found it): known as it is since its last change; known one version back
/// once it changes (from the first event's `previous`); unknown before that.
#[tokio::test]
async fn history_from_before_recording_is_given_where_known_and_refused_where_not() {
    let app = spawn_app().await;
    let id = MISSING_ID;
    let created = Utc::now() - Duration::days(30);
    let changed = Utc::now() - Duration::days(2);
    sqlx::query(
        "INSERT INTO customers (org_id, mode, id, email, metadata, version, created_at, updated_at)
         VALUES ($1, 'test', $2, 'old@example.com', '{\"tier\": \"gold\"}', 3, $3, $4)",
    )
    .bind(ORG)
    .bind(id)
    .bind(created)
    .bind(changed)
    .execute(&app.db)
    .await
    .unwrap();
    let as_it_was = send(app.request(Method::GET, &format!("/v1/customers/{id}")))
        .await
        .text();
    let between = rfc3339(changed - Duration::days(1));
    let known = as_of(&app, id, &rfc3339(changed)).await;
    assert_eq!(known.text(), as_it_was);
    assert_eq!(known.header("etag"), Some("\"3\""));
    let unknown = as_of(&app, id, &between)
        .await
        .error(422, "history_unavailable");
    assert!(unknown["message"]
        .as_str()
        .unwrap()
        .contains("not known before"));
    as_of(&app, id, &rfc3339(created - Duration::days(1)))
        .await
        .error(404, "not_found");

    later().await;
    assert_eq!(
        app.patch(id, json!({"email": "new@example.com"}))
            .await
            .status(),
        200
    );
    let reconstructed = as_of(&app, id, &rfc3339(changed + Duration::hours(1))).await;
    assert_eq!(reconstructed.status, 200, "{}", reconstructed.text());
    assert_eq!(
        reconstructed.text(),
        as_it_was,
        "rebuilt from the first event, the same bytes"
    );
    assert_eq!(reconstructed.header("etag"), Some("\"3\""));
    as_of(&app, id, &between)
        .await
        .error(422, "history_unavailable");
}

/// An old state is shown as it was, even one today's rules refuse (a rule tightened since, a
/// stored event written under looser rules): as-of validates nothing on the way out, in both
/// of its ways of answering (an event's object, and the state before the first event).
#[tokio::test]
async fn an_old_state_that_todays_rules_refuse_is_shown_as_it_was() {
    let app = spawn_app().await;
    let id = MISSING_ID;
    let created = Utc::now() - Duration::days(30);
    let changed = Utc::now() - Duration::days(2);
    sqlx::query(
        "INSERT INTO customers (org_id, mode, id, email, metadata, version, created_at, updated_at)
         VALUES ($1, 'test', $2, 'old@example.com', '{}', 3, $3, $4)",
    )
    .bind(ORG)
    .bind(id)
    .bind(created)
    .bind(changed)
    .execute(&app.db)
    .await
    .unwrap();
    later().await;
    assert_eq!(
        app.patch(id, json!({"phone": "+14155550100"}))
            .await
            .status(),
        200
    );
    // What the rules of today refuse: an email without an @, 60 metadata keys (50 at most).
    let crowded: serde_json::Map<String, Value> =
        (0..60).map(|i| (format!("k{i}"), json!("v"))).collect();
    let updated = sqlx::query(
        "UPDATE customer_events
            SET body = jsonb_set(jsonb_set(body::jsonb, '{data,previous,email}', '\"no at sign\"'),
                                 '{data,previous,metadata}', $2)::json
          WHERE customer_id = $1 AND version = 4",
    )
    .bind(id)
    .bind(Value::Object(crowded.clone()))
    .execute(&app.db)
    .await
    .unwrap();
    assert_eq!(updated.rows_affected(), 1);

    let before = as_of(&app, id, &rfc3339(changed + Duration::hours(1))).await;
    assert_eq!(before.status, 200, "{}", before.text());
    assert_eq!(before.header("etag"), Some("\"3\""));
    let shown = before.json();
    assert_eq!(shown["email"], "no at sign");
    assert_eq!(shown["metadata"], Value::Object(crowded));
    assert_eq!(shown["phone"], Value::Null, "the phone came with version 4");

    // The event's own object, as stored.
    sqlx::query(
        "UPDATE customer_events
            SET body = jsonb_set(body::jsonb, '{data,object,email}', '\"still no at sign\"')::json
          WHERE customer_id = $1 AND version = 4",
    )
    .bind(id)
    .execute(&app.db)
    .await
    .unwrap();
    let after = as_of(&app, id, &rfc3339(Utc::now())).await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(after.json()["email"], "still no at sign");
}

/// `asOf` is a parameter of the parsed query: spelled with percent-escapes it is the same one.
#[tokio::test]
async fn as_of_is_found_in_the_decoded_query() {
    let app = spawn_app().await;
    let created = send(
        app.request(Method::POST, "/v1/customers")
            .json(&json!({"email": "first@example.com"})),
    )
    .await;
    let id = created.id();
    let at = instant(&created.json()["updatedAt"]);
    later().await;
    assert_eq!(
        app.patch(&id, json!({"email": "second@example.com"}))
            .await
            .status(),
        200
    );
    let encoded = send(app.request(
        Method::GET,
        &format!("/v1/customers/{id}?as%4Ff={}", urlencode(&rfc3339(at))),
    ))
    .await;
    assert_eq!(encoded.status, 200, "{}", encoded.text());
    assert_eq!(encoded.header("etag"), Some("\"1\""));
    assert_eq!(encoded.text(), created.text());
    // And so is a malformed one.
    send(app.request(Method::GET, &format!("/v1/customers/{id}?%61sOf=yesterday")))
        .await
        .error(400, "parameter_invalid");
}
