//! A server killed with SIGKILL under a load of idempotent writes: restarted on the same
//! database, every write that got no answer is retried with its key, and every key must have
//! taken effect exactly once (its answer replayed ever after).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;

const CRASH_TASKS: usize = 8;

/// One keyed write of the crash load and the answer it got before the kill, if any.
struct Sent {
    write: KeyedWrite,
    /// The PATCH's ordinal on its task's customer (1, 2, ...), `None` for a create.
    patch_ordinal: Option<i64>,
    answer: Option<Reply>,
}

struct CrashLog {
    customer: String,
    sent: Vec<Sent>,
    violations: Vec<String>,
}

/// Keyed PATCHes and creates, alternately, until the server stops answering.
async fn crash_task(
    task: usize,
    customer: String,
    base: String,
    token: String,
    answered: Arc<AtomicUsize>,
) -> CrashLog {
    let client = client();
    let mut log = CrashLog {
        customer: customer.clone(),
        sent: Vec::new(),
        violations: Vec::new(),
    };
    let (mut patches, mut creates) = (0i64, 0u64);
    // Bounded, so a test whose kill never comes cannot loop forever.
    for n in 0..20_000u64 {
        let (write, patch_ordinal) = if n % 2 == 0 {
            patches += 1;
            let write = KeyedWrite {
                key: format!("crash-{task}-p{patches}"),
                method: Method::PATCH,
                path: format!("/v1/customers/{customer}"),
                body: json!({"metadata": {"seq": patches.to_string()}}).to_string(),
            };
            (write, Some(patches))
        } else {
            creates += 1;
            let key = format!("crash-{task}-c{creates}");
            let write = KeyedWrite {
                body: json!({"email": format!("crash-{task}-{creates}@faults.example"),
                             "metadata": {"key": key}})
                .to_string(),
                key,
                method: Method::POST,
                path: "/v1/customers".into(),
            };
            (write, None)
        };
        let answer = try_send(write.request(&client, &base, &token)).await.ok();
        let stopped = answer.is_none();
        if let Some(reply) = &answer {
            answered.fetch_add(1, Ordering::Relaxed);
            if !(200..300).contains(&reply.status) || reply.replayed() {
                log.violations.push(format!(
                    "{}: {} (replayed: {}) {}",
                    write.key,
                    reply.status,
                    reply.replayed(),
                    reply.text()
                ));
            }
        }
        log.sent.push(Sent {
            write,
            patch_ordinal,
            answer,
        });
        if stopped {
            break;
        }
    }
    log
}

/// Creates `n` customers through the binary at `base`; returns their ids.
async fn create_customers(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    n: usize,
) -> Vec<String> {
    let mut customers = Vec::new();
    for _ in 0..n {
        let created = try_send(
            client
                .post(format!("{base}/v1/customers"))
                .bearer_auth(token)
                .json(&json!({})),
        )
        .await
        .expect("a create");
        assert_eq!(created.status, 201, "{}", created.text());
        customers.push(created.id());
    }
    customers
}

/// Runs the crash load against `service` until it has 200 answers, then kills it. Every answer
/// before the kill is a fresh 2xx, and each task stops at the first request the killed server
/// did not answer. Returns the logs and how many answers came before the kill.
async fn load_until_killed(
    service: &mut Service,
    customers: &[String],
    token: &str,
) -> (Vec<CrashLog>, usize) {
    let answered = Arc::new(AtomicUsize::new(0));
    let base = service.url("");
    let load: Vec<_> = customers
        .iter()
        .enumerate()
        .map(|(task, customer)| {
            tokio::spawn(crash_task(
                task,
                customer.clone(),
                base.clone(),
                token.to_owned(),
                answered.clone(),
            ))
        })
        .collect();
    wait_for("the load got 200 answers", Duration::from_secs(60), || {
        answered.load(Ordering::Relaxed) >= 200
    })
    .await;
    service.sigkill().await;
    let mut logs = Vec::new();
    for task in load {
        logs.push(task.await.expect("a load task"));
    }
    let violations: Vec<&String> = logs.iter().flat_map(|l| &l.violations).collect();
    assert!(
        violations.is_empty(),
        "answers before the kill that were not fresh 2xx: {violations:?}"
    );
    for log in &logs {
        assert!(
            log.sent.last().is_some_and(|s| s.answer.is_none()),
            "each load task stops at the first request the killed server did not answer"
        );
    }
    (logs, answered.load(Ordering::Relaxed))
}

/// What the retries after the restart found.
#[derive(Default)]
struct Retries {
    /// Unanswered writes that had committed before the kill (replayed on retry).
    committed_before_kill: usize,
    /// Unanswered writes that had not (executed on retry).
    executed_on_retry: usize,
    /// Strict replays of every key, identical to the answer it got.
    replays: usize,
    /// Transient 409 in-progress answers on the way.
    in_progress: usize,
}

/// Retries, with the same key, every write that got no answer: each must succeed.
async fn retry_unanswered(
    logs: &mut [CrashLog],
    service: &Service,
    client: &reqwest::Client,
    token: &str,
    retries: &mut Retries,
) {
    let base = service.url("");
    for log in logs {
        for sent in log.sent.iter_mut().filter(|s| s.answer.is_none()) {
            let (reply, in_progress) = sent
                .write
                .settle(client, &base, token, Duration::from_secs(5))
                .await;
            retries.in_progress += in_progress;
            assert!(
                (200..300).contains(&reply.status),
                "retry of {}: {} {}\n{}",
                sent.write.key,
                reply.status,
                reply.text(),
                service.log()
            );
            if reply.replayed() {
                retries.committed_before_kill += 1;
            } else {
                retries.executed_on_retry += 1;
            }
            sent.answer = Some(reply);
        }
    }
}

/// To be strict, every key again: each must now be a replay of the answer it got.
async fn replay_every_key(
    logs: &[CrashLog],
    base: &str,
    client: &reqwest::Client,
    token: &str,
    retries: &mut Retries,
) {
    for log in logs {
        for sent in &log.sent {
            let first = sent
                .answer
                .as_ref()
                .expect("every write has its answer now");
            let (again, in_progress) = sent
                .write
                .settle(client, base, token, Duration::from_secs(5))
                .await;
            retries.in_progress += in_progress;
            assert!(
                again.replayed(),
                "{} ran again instead of replaying: {} {}",
                sent.write.key,
                again.status,
                again.text()
            );
            assert_eq!(again.status, first.status, "{}", sent.write.key);
            assert_eq!(
                again.text(),
                first.text(),
                "{}: the replay is not the first answer",
                sent.write.key
            );
            assert_eq!(again.header("etag"), first.header("etag"));
            assert_eq!(again.header("location"), first.header("location"));
            retries.replays += 1;
        }
    }
}

/// The customers created under a key: key → (how many, the first id).
async fn created_by_key(db: &PgPool) -> HashMap<String, (i64, String)> {
    let created: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT metadata->>'key', count(*), min(id) FROM customers
          WHERE metadata ? 'key' GROUP BY 1",
    )
    .fetch_all(db)
    .await
    .expect("read the created customers");
    created.into_iter().map(|(k, n, id)| (k, (n, id))).collect()
}

/// One task's customer and creates, against what it was answered: each PATCH applied once and
/// in order, each create made once. Returns how many creates it checked.
async fn check_task(
    db: &PgPool,
    log: &CrashLog,
    created: &HashMap<String, (i64, String)>,
) -> usize {
    let patches = log
        .sent
        .iter()
        .filter(|s| s.patch_ordinal.is_some())
        .count() as i64;
    let (version, metadata) = stored_version_and_metadata(db, &log.customer).await;
    assert_eq!(
        version,
        1 + patches,
        "{}: {patches} keyed PATCHes, each changing it, must move the version by exactly \
         {patches}",
        log.customer
    );
    assert_eq!(metadata, json!({"seq": patches.to_string()}));
    let mut creates = 0;
    for sent in &log.sent {
        let answer = sent.answer.as_ref().expect("answered");
        match sent.patch_ordinal {
            Some(ordinal) => {
                assert_eq!(answer.status, 200, "{}", sent.write.key);
                assert_eq!(
                    answer.version(),
                    Some(ordinal + 1),
                    "{}: PATCH number {ordinal} must make version {}",
                    sent.write.key,
                    ordinal + 1
                );
                assert_eq!(answer.json()["metadata"]["seq"], json!(ordinal.to_string()));
            }
            None => {
                creates += 1;
                assert_eq!(answer.status, 201, "{}", sent.write.key);
                let stored = created.get(&sent.write.key);
                assert_eq!(
                    stored,
                    Some(&(1, answer.id())),
                    "{}: exactly one customer, the one answered",
                    sent.write.key
                );
            }
        }
    }
    creates
}

/// The database: one stored response per key, all successes, and every task's writes exactly
/// once. Returns (stored keys, creates).
async fn check_stored(db: &PgPool, logs: &[CrashLog], sent: usize) -> (i64, usize) {
    let keys = key_rows(db).await;
    assert_eq!(keys, sent as i64, "one stored key per write");
    let not_success: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM idempotency_keys WHERE status_code NOT IN (200, 201)",
    )
    .fetch_one(db)
    .await
    .expect("count keys");
    assert_eq!(not_success, 0, "every stored response is a success");
    let created = created_by_key(db).await;
    let mut creates = 0;
    for log in logs {
        creates += check_task(db, log, &created).await;
    }
    assert_eq!(created.len(), creates, "no customer from a key never sent");
    assert_eq!(count_customers(db).await, (CRASH_TASKS + creates) as i64);
    (keys, creates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_idempotent_load_applies_every_key_exactly_once() {
    let (db, url) = fresh_database_for_binaries().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let client = client();
    let token = token(ORG, "test", ADMIN);

    let mut service = Service::start(dir.path(), &url, "before-kill");
    service.wait_ready(&client).await;
    let customers = create_customers(&client, &service.url(""), &token, CRASH_TASKS).await;
    let (mut logs, answered_before_kill) =
        load_until_killed(&mut service, &customers, &token).await;
    let sent: usize = logs.iter().map(|l| l.sent.len()).sum();

    // Restart on the same database and retry what got no answer, with the same key.
    let mut service = Service::start(dir.path(), &url, "after-kill");
    service.wait_ready(&client).await;
    let mut retries = Retries::default();
    retry_unanswered(&mut logs, &service, &client, &token, &mut retries).await;
    replay_every_key(&logs, &service.url(""), &client, &token, &mut retries).await;
    let (keys, creates) = check_stored(&db, &logs, sent).await;

    println!(
        "faults/crash: {sent} keyed writes ({} PATCHes, {creates} creates) by {CRASH_TASKS} \
         tasks; {answered_before_kill} answered before SIGKILL, {} unanswered: \
         {} had committed (replayed on retry), {} ran on \
         retry; {} strict replays identical; {} transient 409 \
         in-progress answers; versions and {} stored keys exact",
        sent - creates,
        retries.committed_before_kill + retries.executed_on_retry,
        retries.committed_before_kill,
        retries.executed_on_retry,
        retries.replays,
        retries.in_progress,
        keys
    );
}
