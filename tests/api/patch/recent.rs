//! A write without a key takes the customer it changes from what this instance last read or
//! wrote (`cache.customers_mib`), so it needs no read before its compare-and-set; a guess that is
//! out of date — another instance wrote since — costs the read, never a lost change. Writes that
//! fail at COMMIT, and changes behind the service's back, are in `commit_failures`.

use serde_json::json;

use super::*;

/// With the memory on, a PATCH of a customer this instance wrote last needs no read, and still
/// merges into exactly what is stored; with it off, the same.
#[tokio::test]
async fn a_patch_from_what_the_instance_remembers_merges_into_what_is_stored() {
    for mib in [48, 0] {
        let app = spawn_app_with(|s| s.cache.customers_mib = mib).await;
        let id = app.create_id(json!({"metadata": {"a": 1}})).await;
        patch_ok(&app, &id, json!({"metadata": {"b": 2}})).await;
        let after = patch_ok(&app, &id, json!({"metadata": {"c": 3}})).await;
        assert_eq!(
            after["metadata"],
            json!({"a": 1, "b": 2, "c": 3}),
            "{mib} MiB"
        );
        assert_eq!(app.stored_version(&id).await, 3);
    }
}

/// Two instances on one database, each with its own memory: each write of the other makes the
/// first one's guess stale, and every change is kept.
#[tokio::test]
async fn a_stale_guess_loses_its_compare_and_set_and_nothing_is_lost() {
    let first = spawn_app().await;
    let second = spawn_app_on(first.db_options.clone(), test_settings()).await;
    let id = first.create_id(json!({})).await;
    for round in 0..6 {
        let (app, other) = if round % 2 == 0 {
            (&first, &second)
        } else {
            (&second, &first)
        };
        assert_eq!(app.get(&id).await.status(), 200);
        let key = format!("k{round}");
        let response = other
            .patch(&id, json!({"metadata": {key.clone(): round}}))
            .await;
        assert_eq!(response.status(), 200);
        let key = format!("after{round}");
        let response = app.patch(&id, json!({"metadata": {key: round}})).await;
        assert_eq!(response.status(), 200);
    }
    let metadata = &first.get_json(&id).await["metadata"];
    assert_eq!(metadata.as_object().unwrap().len(), 12, "{metadata}");
    assert_eq!(first.stored_version(&id).await, 13);
}
