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
    let mut versions = vec![app.create_ok(json!({"email": "v1@example.com"})).await];
    let id = versions[0]["id"].as_str().unwrap().to_owned();
    for body in [
        json!({"email": "v2@example.com"}),
        json!({"policy": {"ttlDays": 3}}),
    ] {
        later().await;
        let response = app.patch(&id, body).await;
        versions.push(response.json().await.unwrap());
    }
    later().await;
    versions.push(app.delete(&id, None).await.json().await.unwrap());

    let created = instant(&versions[0]["createdAt"]);
    let before = as_of(&app, &id, &rfc3339(created - Duration::milliseconds(1))).await;
    before.error(404, "not_found");
    for (i, version) in versions.iter().enumerate() {
        let at = instant(&version["updatedAt"]);
        for t in [at, at + Duration::microseconds(500)] {
            let reply = as_of(&app, &id, &rfc3339(t)).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(&reply.json(), version, "version {} at {t}", i + 1);
            assert_eq!(
                reply.header("etag"),
                Some(format!("\"{}\"", i + 1).as_str())
            );
        }
    }
    // Long after: the deleted customer as it is; an offset other than Z is the same instant.
    let now = as_of(&app, &id, "2999-01-01T00:00:00+02:00").await;
    assert_eq!(&now.json(), versions.last().unwrap());
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
    let as_it_was = app.get_json(id).await;
    let between = rfc3339(changed - Duration::days(1));
    let known = as_of(&app, id, &rfc3339(changed)).await;
    assert_eq!(known.json(), as_it_was);
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
        reconstructed.json(),
        as_it_was,
        "rebuilt from the first event"
    );
    assert_eq!(reconstructed.header("etag"), Some("\"3\""));
    as_of(&app, id, &between)
        .await
        .error(422, "history_unavailable");
}
