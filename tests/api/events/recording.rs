//! Every committed change records exactly one event of the right type, in its own transaction;
//! `data.object` is the customer as GET shows it, `data.previous` merged into it gives the
//! customer before. Nothing that changes nothing records one.

use reqwest::Method;
use serde_json::{json, Value};

use super::{history, merge_previous, stored_events};
use crate::support::*;

/// Sends a write and checks its event: the newest of the customer, of `kind`, at the answer's
/// version, showing the answer, and giving back `before` through `previous`.
async fn write_and_check(
    app: &TestApp,
    request: reqwest::RequestBuilder,
    kind: &str,
    before: Option<&Value>,
) -> Value {
    let reply = send(request).await;
    assert!(
        reply.status == 200 || reply.status == 201,
        "{}",
        reply.text()
    );
    let after = reply.json();
    let id = after["id"].as_str().unwrap();
    let events = history(app, id).await;
    let event = &events[0];
    assert_eq!(event["type"], kind, "{event}");
    assert_eq!(event["customerId"], id);
    assert_eq!(Some(event["version"].as_i64().unwrap()), reply.version());
    assert_eq!(event["occurredAt"], after["updatedAt"]);
    assert_eq!(event["data"]["object"], after, "the object is the answer");
    assert_eq!(
        event["data"]["object"],
        app.get_json(id).await,
        "and what GET shows"
    );
    assert_eq!(event["actor"], json!({"sub": "tests"}));
    assert_eq!(
        event["requestId"].as_str(),
        reply.header("x-request-id"),
        "the request's id"
    );
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    match before {
        None => assert!(event["data"].get("previous").is_none(), "{event}"),
        Some(before) => {
            let previous = &event["data"]["previous"];
            assert_eq!(
                &merge_previous(&after, previous),
                before,
                "previous {previous} gives back the customer before"
            );
        }
    }
    after
}

#[tokio::test]
async fn each_write_records_one_event_whose_previous_gives_back_the_customer_before() {
    let app = spawn_app().await;
    let created = write_and_check(
        &app,
        app.request(Method::POST, "/v1/customers").json(
            &json!({"email": "ada@example.com", "name": {"first": "Ada", "last": "Lovelace"},
                          "policy": {"requireIntent": true, "limits": {"perDay": 50000}},
                          "metadata": {"plan": "pro", "nested": {"a": 1}}}),
        ),
        "customer.created",
        None,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let patch = |body: Value| {
        app.request(Method::PATCH, &format!("/v1/customers/{id}"))
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
    };
    let mut before = created;
    for body in [
        json!({"policy": {"limits": {"perDay": 70000, "perMonth": 900000}}}),
        json!({"name": {"first": null}, "phone": "+14155550100"}),
        json!({"metadata": {"plan": null, "nested": {"b": 2}}, "email": null}),
        json!({"policy": {"limits": null}}),
        json!({"policy": null, "name": null}),
        json!({"policy": {"cooldownMinutes": 5}, "name": {"last": "Byron"}}),
    ] {
        before = write_and_check(&app, patch(body), "customer.updated", Some(&before)).await;
    }
    let activate = app.request(Method::POST, &format!("/v1/customers/{id}/activate"));
    before = write_and_check(&app, activate, "customer.activated", Some(&before)).await;
    let delete = app.request(Method::DELETE, &format!("/v1/customers/{id}"));
    write_and_check(&app, delete, "customer.deleted", Some(&before)).await;
    // One event per version, versions 1 to 9, newest first.
    let versions: Vec<i64> = history(&app, &id)
        .await
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, (1..=9).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn the_event_names_the_idempotency_key_and_a_token_without_sub() {
    let app = spawn_app().await;
    let mut claims = claims(ORG, "test", ADMIN);
    claims.as_object_mut().unwrap().remove("sub");
    let reply = send(
        app.request_as(Method::POST, "/v1/customers", &dev_token(&claims))
            .header("idempotency-key", "create-key-1")
            .json(&json!({"email": "nosub@example.com"})),
    )
    .await;
    assert_eq!(reply.status, 201, "a token without sub is accepted");
    let event = &history(&app, &reply.id()).await[0];
    assert_eq!(event["actor"], json!({"sub": null}));
    assert_eq!(event["idempotencyKey"], "create-key-1");
}

#[tokio::test]
async fn no_event_for_a_no_op_a_replay_a_refusal_or_an_answer_that_changes_nothing() {
    let app = spawn_app().await;
    let id = app
        .create_id(json!({"email": "a@example.com", "metadata": {"k": 1}}))
        .await;
    let deleted = app.create_id(json!({})).await;
    assert_eq!(app.delete(&deleted, None).await.status(), 200);
    let active = app.create_id(json!({})).await;
    assert_eq!(app.activate(&active, None).await.status(), 200);
    let counts = || async {
        (
            stored_events(&app, &id).await,
            stored_events(&app, &deleted).await,
            stored_events(&app, &active).await,
        )
    };
    let start = counts().await;
    assert_eq!(start, (1, 2, 2));

    // No-op PATCHes.
    for body in [
        json!({}),
        json!({"email": "a@example.com", "metadata": {"k": 1}}),
    ] {
        assert_eq!(app.patch(&id, body).await.status(), 200);
    }
    // Refusals: 400, 404, 412, 409.
    let refused = [
        app.patch(&id, json!({"policy": {"limits": {"perDay": -1}}}))
            .await
            .status(),
        app.patch(MISSING_ID, json!({"email": "b@example.com"}))
            .await
            .status(),
        app.request(Method::PATCH, &format!("/v1/customers/{id}"))
            .header("if-match", "\"99\"")
            .json(&json!({"email": "b@example.com"}))
            .send()
            .await
            .unwrap()
            .status(),
        app.patch(&deleted, json!({"email": "b@example.com"}))
            .await
            .status(),
    ];
    assert_eq!(refused.map(|s| s.as_u16()), [400, 404, 412, 409]);
    // Answers that change nothing: delete of a deleted one, activate of an active one.
    assert_eq!(app.delete(&deleted, None).await.status(), 200);
    assert_eq!(app.activate(&active, None).await.status(), 200);
    assert_eq!(counts().await, start);

    // A keyed write records once; its replay records nothing.
    let keyed = || {
        app.request(Method::PATCH, &format!("/v1/customers/{id}"))
            .header("idempotency-key", "patch-once")
            .json(&json!({"metadata": {"k": 2}}))
    };
    let first = send(keyed()).await;
    let replay = send(keyed()).await;
    assert!(replay.replayed());
    assert_eq!(first.body, replay.body);
    assert_eq!(stored_events(&app, &id).await, start.0 + 1);
}

/// A write whose transaction fails after the customer was written (a trigger refuses the event
/// here) is rolled back whole: no change and no event.
#[tokio::test]
async fn a_write_rolled_back_after_its_change_leaves_neither_change_nor_event() {
    let app = spawn_app().await;
    let id = app.create_id(json!({"email": "keep@example.com"})).await;
    sqlx::raw_sql(
        r#"CREATE FUNCTION refuse_marked_events() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF NEW.body::text LIKE '%roll-me-back%' THEN
                   RAISE EXCEPTION 'refused by the test';
               END IF;
               RETURN NEW;
           END $$;
           CREATE TRIGGER refuse_marked_events BEFORE INSERT ON customer_events
               FOR EACH ROW EXECUTE FUNCTION refuse_marked_events();"#,
    )
    .execute(&app.db)
    .await
    .unwrap();
    let before = app.snapshot(&id).await;
    let events = stored_events(&app, &id).await;

    let patch = app
        .patch(&id, json!({"metadata": {"x": "roll-me-back"}}))
        .await;
    assert_eq!(patch.status(), 500);
    let keyed = send(
        app.request(Method::PATCH, &format!("/v1/customers/{id}"))
            .header("idempotency-key", "rolled-back")
            .json(&json!({"metadata": {"x": "roll-me-back"}})),
    )
    .await;
    assert_eq!(keyed.status, 500);
    let create = app.create(json!({"metadata": {"x": "roll-me-back"}})).await;
    assert_eq!(create.status(), 500);

    assert_eq!(app.snapshot(&id).await, before, "the customer is unchanged");
    assert_eq!(stored_events(&app, &id).await, events, "no event");
    assert_eq!(app.count_customers().await, 1, "no customer created");
    assert_eq!(key_rows(&app.db).await, 0, "the key stays free for a retry");
}
