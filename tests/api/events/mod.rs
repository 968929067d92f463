//! Change history and events: every committed change is recorded once, with `data.previous`
//! giving back the customer before it; the history, as-of reads and the tenant's feed; and the
//! feed's guarantee under concurrent writers (docs/events.md).

mod as_of;
mod bounded;
mod concurrency;
mod feed;
mod history;
mod recording;
mod retention;

use reqwest::Method;
use serde_json::{Map, Value};

use crate::support::*;

/// `GET path` as `ORG` admin; the answer's JSON, checked to be 200.
pub async fn get_ok(app: &TestApp, path: &str) -> Value {
    let reply = send(app.request(Method::GET, path)).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.json()
}

/// A customer's whole history, newest first, following the cursors.
pub async fn history(app: &TestApp, id: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut path = format!("/v1/customers/{id}/events?limit=100");
    loop {
        let page = get_ok(app, &path).await;
        events.extend(page["data"].as_array().expect("data").iter().cloned());
        match page["nextCursor"].as_str() {
            Some(cursor) if page["hasMore"] == true => {
                path = format!("/v1/customers/{id}/events?limit=100&cursor={cursor}");
            }
            _ => return events,
        }
    }
}

/// The tenant's feed from the start, with `filters` (`&type=…`), as `token`, once it holds
/// `expected` events. The feed holds back events while a transaction that began before them is
/// open anywhere on the database server — and the tests share one, with transactions held open
/// on purpose — so it is read again (bounded) until it shows them; the caller then checks which.
pub async fn feed_until(app: &TestApp, filters: &str, token: &str, expected: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let events = feed_all(app, filters, token).await;
        if events.len() >= expected || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The tenant's feed from the start until caught up, with `filters` (`&type=…`), as `token`.
pub async fn feed_all(app: &TestApp, filters: &str, token: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/v1/events?limit=100{filters}{after}");
        let reply = send(app.request_as(Method::GET, &path, token)).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let page = reply.json();
        let data = page["data"].as_array().expect("data").clone();
        let cursor = page["nextCursor"]
            .as_str()
            .expect("always a cursor")
            .to_owned();
        after = format!("&after={cursor}");
        if data.is_empty() {
            return events;
        }
        events.extend(data);
    }
}

/// The number of events stored for a customer.
pub async fn stored_events(app: &TestApp, id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM customer_events WHERE customer_id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .expect("count")
}

/// `previous` merged into `object` by the PATCH rules (RFC 7396 on the customer, where a
/// cleared email or phone stays as `null`, a name with no part set and an empty policy are
/// left out, and metadata is `{}` when empty): the customer before the change. Written here
/// independently of the service.
pub fn merge_previous(object: &Value, previous: &Value) -> Value {
    let mut customer = object.as_object().expect("an object").clone();
    for (key, old) in previous.as_object().expect("previous is an object") {
        match key.as_str() {
            "name" => {
                let mut name = customer
                    .get("name")
                    .cloned()
                    .unwrap_or(serde_json::json!({"first": null, "last": null}));
                match old {
                    Value::Null => name = serde_json::json!({"first": null, "last": null}),
                    Value::Object(parts) => {
                        for (part, value) in parts {
                            name[part] = value.clone();
                        }
                    }
                    other => panic!("name in previous is {other}"),
                }
                if name["first"].is_null() && name["last"].is_null() {
                    customer.remove("name");
                } else {
                    customer.insert("name".into(), name);
                }
            }
            "policy" => {
                let mut policy = customer.get("policy").cloned().unwrap_or(Value::Null);
                merge(&mut policy, old);
                if let Some(limits) = policy.get("limits") {
                    if limits.as_object().is_some_and(Map::is_empty) {
                        policy.as_object_mut().unwrap().remove("limits");
                    }
                }
                if policy.is_null() || policy.as_object().is_some_and(Map::is_empty) {
                    customer.remove("policy");
                } else {
                    customer.insert("policy".into(), policy);
                }
            }
            "metadata" => {
                let mut metadata = customer["metadata"].clone();
                merge(&mut metadata, old);
                if metadata.is_null() {
                    metadata = Value::Object(Map::new());
                }
                customer.insert("metadata".into(), metadata);
            }
            "email" | "phone" | "status" | "updatedAt" => {
                customer.insert(key.clone(), old.clone());
            }
            other => panic!("previous holds {other}, which never changes"),
        }
    }
    Value::Object(customer)
}

/// RFC 7396.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().unwrap();
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}
