//! Writes that fail at COMMIT, across two instances with their own memory of customers: what an
//! instance remembers is only what committed, and a guess is checked by the transaction that
//! wrote it as well as by its version (docs/reliability.md#the-write-cache). A write whose
//! client was told it failed is never applied later, and no acknowledged write is lost.
//!
//! The failure is injected by a deferred constraint trigger on `customers` of the test's
//! database, which raises at COMMIT for a row whose metadata names a "doom" sequence — the
//! first time only: `nextval` is not undone by the rollback, so a later write carrying the same
//! metadata (a failed write's content coming back) commits, and is seen in the final state.

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use sqlx::PgPool;

use super::*;

/// Installs the trigger that fails the COMMIT of a row whose `metadata.doom` names a sequence
/// made by [`doom`], the first time that sequence is used.
async fn install_commit_failures(db: &PgPool) {
    for statement in [
        r#"CREATE FUNCTION fail_doomed_commit() RETURNS trigger
               LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
           BEGIN
               IF NEW.metadata ? 'doom' AND nextval(NEW.metadata->>'doom') = 1 THEN
                   RAISE EXCEPTION 'a failure injected at COMMIT by the test';
               END IF;
               RETURN NULL;
           END $$"#,
        "CREATE CONSTRAINT TRIGGER fail_doomed_commit AFTER INSERT OR UPDATE ON customers
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_doomed_commit()",
    ] {
        sqlx::query(statement).execute(db).await.unwrap();
    }
}

/// A new doom: metadata with it fails at COMMIT once.
async fn doom(db: &PgPool, name: &str) -> Value {
    sqlx::query(&format!("CREATE SEQUENCE {name}"))
        .execute(db)
        .await
        .unwrap();
    json!(name)
}

/// The stored metadata and version of a customer, and its events' versions and metadata.
async fn stored(db: &PgPool, id: &str) -> (Value, i64, Vec<(i64, Value)>) {
    let (metadata, version): (Value, i64) =
        sqlx::query_as("SELECT metadata, version FROM customers WHERE id = $1")
            .bind(id)
            .fetch_one(db)
            .await
            .unwrap();
    let events: Vec<(i64, Value)> = sqlx::query_as(
        "SELECT version, body::jsonb FROM customer_events WHERE customer_id = $1 ORDER BY version",
    )
    .bind(id)
    .fetch_all(db)
    .await
    .unwrap();
    (metadata, version, events)
}

async fn patch_keyed(app: &TestApp, id: &str, key: &str, body: Value) -> Reply {
    send(
        app.request(Method::PATCH, &format!("/v1/customers/{id}"))
            .header("Idempotency-Key", key)
            .json(&body),
    )
    .await
}

/// The reproduction: a keyed PATCH on the first instance fails at COMMIT; the second instance
/// writes the same version number with other content; a PATCH without a key on the first
/// instance must start from what is stored, not from the failed write it saw.
#[tokio::test]
async fn a_write_that_failed_at_commit_is_never_applied_later() {
    let first = spawn_app().await;
    let second = spawn_app_on(first.db_options.clone(), test_settings()).await;
    install_commit_failures(&first.db).await;
    let id = first.create_id(json!({})).await;
    assert_eq!(first.get(&id).await.status(), 200);

    let doomed = doom(&first.db, "doom_reproduction").await;
    let failed = patch_keyed(
        &first,
        &id,
        "fails-at-commit",
        json!({"metadata": {"doom": doomed, "failed": "write"}}),
    )
    .await;
    assert_eq!(failed.status, 500, "{}", failed.transcript());
    assert_eq!(failed.error_code().as_deref(), Some("internal_error"));
    let (metadata, version, _) = stored(&first.db, &id).await;
    assert_eq!((metadata, version), (json!({}), 1), "nothing committed");

    let other = second
        .patch(&id, json!({"metadata": {"other": "writer"}}))
        .await;
    assert_eq!(other.status(), 200);
    let renamed = first.patch(&id, json!({"name": {"first": "Ann"}})).await;
    assert_eq!(renamed.status(), 200);
    let renamed: Value = renamed.json().await.unwrap();
    assert_eq!(renamed["metadata"], json!({"other": "writer"}), "{renamed}");

    let (metadata, version, events) = stored(&first.db, &id).await;
    assert_eq!(metadata, json!({"other": "writer"}));
    assert_eq!(version, 3);
    let versions: Vec<i64> = events.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, [1, 2, 3]);
    let last = &events[2].1;
    assert_eq!(last["data"]["object"], renamed);
    let previous = last["data"]["previous"].as_object().unwrap();
    assert_eq!(
        previous.keys().collect::<BTreeSet<_>>(),
        BTreeSet::from([&"name".to_owned(), &"updatedAt".to_owned()]),
        "the event's previous is the change from version 2: {last}"
    );
    assert_eq!(previous["name"], Value::Null);

    // The key of the failed write is free again, and its retry commits once.
    let retried = patch_keyed(
        &first,
        &id,
        "fails-at-commit",
        json!({"metadata": {"doom": doomed, "failed": "write"}}),
    )
    .await;
    assert_eq!(retried.status, 200, "{}", retried.transcript());
    assert_eq!(stored(&first.db, &id).await.1, 4);
}

/// A change made behind the service's back without moving the version is not mistaken for the
/// version this instance remembers: the row was written by another transaction, so the guess
/// loses its compare-and-set and the PATCH merges into what is stored.
#[tokio::test]
async fn a_guess_of_the_same_version_written_by_another_transaction_loses() {
    let app = spawn_app().await;
    let id = app.create_id(json!({"metadata": {"a": 1}})).await;
    sqlx::query("UPDATE customers SET metadata = '{\"a\": 1, \"behind\": true}' WHERE id = $1")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
    let after = patch_ok(&app, &id, json!({"metadata": {"b": 2}})).await;
    assert_eq!(after["metadata"], json!({"a": 1, "behind": true, "b": 2}));
    assert_eq!(app.stored_version(&id).await, 2);
}

/// One write of an interleaving: which instance, with a key or not, whether its COMMIT fails.
#[derive(Debug, Clone)]
struct Step {
    instance: usize,
    keyed: bool,
    doomed: bool,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0..2usize, any::<bool>(), prop::bool::weighted(0.3)).prop_map(
            |(instance, keyed, doomed)| Step {
                instance,
                keyed,
                doomed,
            },
        ),
        4..16,
    )
}

const INTERLEAVINGS: usize = 24;

/// Many interleavings of writes over two instances, some failing at COMMIT, run two at a time:
/// every acknowledged write is in the final state, no failed write ever is, and the customer
/// has exactly one event per acknowledged write, each holding no failed write's content.
#[tokio::test]
async fn across_two_instances_acknowledged_writes_stay_and_failed_ones_never_appear() {
    let first = spawn_app_without_rate_limits().await;
    let settings = test_settings_with(|s| s.rate_limit.enabled = false);
    let second = spawn_app_on(first.db_options.clone(), settings).await;
    install_commit_failures(&first.db).await;
    let apps = [&first, &second];
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    for case in 0..INTERLEAVINGS {
        let steps = steps().new_tree(&mut runner).unwrap().current();
        let id = first.create_id(json!({})).await;
        // Both instances know the customer, so both have a guess to be wrong with.
        for app in apps {
            assert_eq!(app.get(&id).await.status(), 200);
        }
        let mut acknowledged = BTreeSet::new();
        let mut failed = BTreeSet::new();
        for (pair, chunk) in steps.chunks(2).enumerate() {
            let mut requests = Vec::new();
            for (i, step) in chunk.iter().enumerate() {
                let n = pair * 2 + i;
                let mut metadata = json!({ format!("w{n}"): n });
                if step.doomed {
                    metadata["doom"] = doom(&first.db, &format!("doom_{case}_{n}")).await;
                }
                let mut request = apps[step.instance]
                    .request(Method::PATCH, &format!("/v1/customers/{id}"))
                    .json(&json!({ "metadata": metadata }));
                if step.keyed {
                    request = request.header("Idempotency-Key", format!("c{case}-w{n}"));
                }
                requests.push(async move { (n, send(request).await) });
            }
            for (n, reply) in futures_util::future::join_all(requests).await {
                match reply.status {
                    200 => acknowledged.insert(format!("w{n}")),
                    _ => failed.insert(format!("w{n}")),
                };
            }
        }
        let doomed: BTreeSet<String> = (steps.iter().enumerate())
            .filter(|(_, s)| s.doomed)
            .map(|(n, _)| format!("w{n}"))
            .collect();
        assert_eq!(
            failed, doomed,
            "case {case}: {steps:?}: exactly the doomed writes failed"
        );
        let (metadata, version, events) = stored(&first.db, &id).await;
        let keys: BTreeSet<String> = metadata.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, acknowledged, "case {case}: {steps:?}: {metadata}");
        assert_eq!(
            version,
            1 + acknowledged.len() as i64,
            "case {case}: {steps:?}"
        );
        assert_eq!(events.len(), 1 + acknowledged.len(), "case {case}");
        for (version, body) in &events {
            let object = &body["data"]["object"]["metadata"];
            assert!(
                object.get("doom").is_none(),
                "case {case}: event {version} holds a failed write: {body}"
            );
        }
    }
}
