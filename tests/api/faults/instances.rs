//! Three server processes on one database: concurrent PATCHes spread over them lose no update,
//! and concurrent copies of keyed writes sent to different instances run each key once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

const PATCHERS: usize = 45; // below the 50-key metadata limit
const KEYS: usize = 10;
const CREATE_KEYS: usize = 5;
const COPIES: usize = 6;

/// Three binaries on one database, ready.
struct Instances {
    db: PgPool,
    _dir: tempfile::TempDir,
    _services: Vec<Service>,
    bases: Vec<String>,
    client: reqwest::Client,
    token: String,
}

impl Instances {
    async fn start() -> Self {
        let (db, url) = fresh_database_for_binaries().await;
        let dir = tempfile::tempdir().expect("a temp dir");
        let client = client();
        let mut services: Vec<Service> = (0..3)
            .map(|i| Service::start(dir.path(), &url, &format!("instance-{i}")))
            .collect();
        for service in &mut services {
            service.wait_ready(&client).await;
        }
        let bases = services.iter().map(|s| s.url("")).collect();
        Instances {
            db,
            _dir: dir,
            _services: services,
            bases,
            client,
            token: token(ORG, "test", ADMIN),
        }
    }

    async fn create(&self, instance: usize) -> String {
        try_send(
            self.client
                .post(format!("{}/v1/customers", self.bases[instance]))
                .bearer_auth(&self.token)
                .json(&json!({})),
        )
        .await
        .expect("a create")
        .id()
    }
}

/// `metadata` of `n` keys `{prefix}0..` all `"v"`.
fn keys_set(prefix: &str, n: usize) -> Value {
    Value::Object(
        (0..n)
            .map(|i| (format!("{prefix}{i}"), json!("v")))
            .collect(),
    )
}

/// Concurrent PATCHes adding one metadata key each, spread over the three instances: each must
/// make a version of its own, and no key may be lost.
async fn patch_concurrently(instances: &Instances, id: &str) {
    let barrier = Arc::new(tokio::sync::Barrier::new(PATCHERS));
    let mut tasks = Vec::new();
    for i in 0..PATCHERS {
        let request = instances
            .client
            .patch(format!("{}/v1/customers/{id}", instances.bases[i % 3]))
            .bearer_auth(&instances.token)
            .header("content-type", "application/merge-patch+json")
            .body(json!({"metadata": {format!("k{i}"): "v"}}).to_string());
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            try_send(request).await
        }));
    }
    let mut versions = BTreeSet::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task
            .await
            .expect("a PATCH task")
            .unwrap_or_else(|e| panic!("PATCH k{i}: no answer: {e}"));
        assert_eq!(reply.status, 200, "PATCH k{i}: {}", reply.text());
        assert_eq!(
            reply.json()["metadata"][format!("k{i}")],
            "v",
            "PATCH k{i}'s answer lacks its own key"
        );
        versions.insert(reply.version().expect("an ETag"));
    }
    assert_eq!(
        versions,
        (2..=1 + PATCHERS as i64).collect::<BTreeSet<_>>(),
        "each PATCH made a version of its own"
    );
    let (version, metadata) = stored_version_and_metadata(&instances.db, id).await;
    assert_eq!(metadata, keys_set("k", PATCHERS), "a lost update");
    assert_eq!(version, 1 + PATCHERS as i64);
}

/// The keyed writes: PATCHes of `keyed`, then creates.
fn keyed_writes(keyed: &str) -> Vec<KeyedWrite> {
    let mut writes = Vec::new();
    for k in 0..KEYS {
        writes.push(KeyedWrite {
            key: format!("multi-p{k}"),
            method: Method::PATCH,
            path: format!("/v1/customers/{keyed}"),
            body: json!({"metadata": {format!("j{k}"): "v"}}).to_string(),
        });
    }
    for k in 0..CREATE_KEYS {
        writes.push(KeyedWrite {
            key: format!("multi-c{k}"),
            method: Method::POST,
            path: "/v1/customers".into(),
            body: json!({"email": format!("multi-{k}@faults.example"),
                         "metadata": {"key": format!("multi-c{k}")}})
            .to_string(),
        });
    }
    writes
}

/// Sends `COPIES` copies of each write at once, to different instances; returns the settled
/// replies by write and how many transient 409 in-progress answers there were.
async fn send_copies(
    instances: &Instances,
    writes: &[KeyedWrite],
) -> (BTreeMap<usize, Vec<Reply>>, usize) {
    let barrier = Arc::new(tokio::sync::Barrier::new(writes.len() * COPIES));
    let mut tasks = Vec::new();
    for (w, write) in writes.iter().enumerate() {
        for copy in 0..COPIES {
            let (write, client, token, barrier) = (
                write.clone(),
                instances.client.clone(),
                instances.token.clone(),
                barrier.clone(),
            );
            let base = instances.bases[(w + copy) % 3].clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let settled = write
                    .settle(&client, &base, &token, Duration::from_secs(5))
                    .await;
                (w, settled)
            }));
        }
    }
    let mut replies: BTreeMap<usize, Vec<Reply>> = BTreeMap::new();
    let mut in_progress_answers = 0;
    for task in tasks {
        let (w, (reply, in_progress)) = task.await.expect("a keyed task");
        in_progress_answers += in_progress;
        replies.entry(w).or_default().push(reply);
    }
    (replies, in_progress_answers)
}

/// The copies of each write got the same answer, byte for byte, and exactly one of them ran.
/// Returns the versions the keyed PATCHes made.
fn check_copies(writes: &[KeyedWrite], replies: &BTreeMap<usize, Vec<Reply>>) -> BTreeSet<i64> {
    let mut patch_versions = BTreeSet::new();
    for (w, replies) in replies {
        let write = &writes[*w];
        let status = if write.method == Method::PATCH {
            200
        } else {
            201
        };
        let first = &replies[0];
        for reply in replies {
            assert_eq!(reply.status, status, "{}: {}", write.key, reply.text());
            assert_eq!(
                reply.text(),
                first.text(),
                "{}: copies got different bodies",
                write.key
            );
            assert!(reply.body == first.body, "{}: not byte for byte", write.key);
            assert_eq!(reply.header("etag"), first.header("etag"));
            assert_eq!(reply.header("location"), first.header("location"));
        }
        let originals = replies.iter().filter(|r| !r.replayed()).count();
        assert_eq!(
            originals, 1,
            "{}: exactly one copy runs, the others replay it",
            write.key
        );
        if write.method == Method::PATCH {
            patch_versions.insert(first.version().expect("an ETag"));
        }
    }
    patch_versions
}

/// The database: each keyed PATCH applied once, each create made once (the customer answered).
async fn check_keyed_stored(
    db: &PgPool,
    keyed: &str,
    writes: &[KeyedWrite],
    replies: &BTreeMap<usize, Vec<Reply>>,
) {
    let (version, metadata) = stored_version_and_metadata(db, keyed).await;
    assert_eq!(version, 1 + KEYS as i64, "each key ran once");
    assert_eq!(metadata, keys_set("j", KEYS));
    for k in 0..CREATE_KEYS {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM customers WHERE metadata->>'key' = $1")
                .bind(format!("multi-c{k}"))
                .fetch_all(db)
                .await
                .expect("read created customers");
        let answered = replies[&(KEYS + k)][0].id();
        assert_eq!(ids, vec![answered], "multi-c{k}: exactly one customer");
    }
    assert_eq!(count_customers(db).await, 2 + CREATE_KEYS as i64);
    assert_eq!(key_rows(db).await, writes.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_lose_no_update_and_run_each_key_once() {
    let instances = Instances::start().await;
    let plain = instances.create(0).await;
    let keyed = instances.create(1).await;
    patch_concurrently(&instances, &plain).await;

    // Idempotent retries: copies of each keyed write sent at once to different instances.
    let writes = keyed_writes(&keyed);
    let (replies, in_progress_answers) = send_copies(&instances, &writes).await;
    let patch_versions = check_copies(&writes, &replies);
    assert_eq!(
        patch_versions,
        (2..=1 + KEYS as i64).collect::<BTreeSet<_>>(),
        "each keyed PATCH took effect once, with a version of its own"
    );
    check_keyed_stored(&instances.db, &keyed, &writes, &replies).await;

    println!(
        "faults/three-instances: {PATCHERS} concurrent PATCHes over 3 processes, all keys kept, \
         version {}; {} keyed writes x {COPIES} concurrent copies over 3 processes = {} requests, \
         each key ran once ({} replays identical, {in_progress_answers} transient 409 \
         in-progress answers)",
        1 + PATCHERS,
        writes.len(),
        writes.len() * COPIES,
        writes.len() * (COPIES - 1),
    );
}
