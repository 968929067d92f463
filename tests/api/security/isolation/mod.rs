//! Tenant isolation as a randomized, seeded workload of four tenants (two orgs whose ids carry
//! quotes, backslashes and dollar signs, each in test and live mode) working at once: each
//! keeps a model of its own customers and checks every answer against it, and attacks the
//! others with their ids, idempotency keys and cursors. No answer may hold another tenant's
//! data, and the database must agree with every tenant's model.

mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use reqwest::Method;
use serde_json::Value;

use crate::support::*;
use worker::Worker;

/// xorshift64: reproducible without a dependency; the seed is printed and can be given back
/// with ISOLATION_SEED.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn hex(&mut self) -> String {
        format!("{:016x}", self.next())
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

/// Org ids with quotes, backslashes and dollar signs: the tenant travels into SQL, and an org id
/// that is mangled on the way could collide with another.
const ORGS: [&str; 2] = ["org_o'hare--", "org_$$blue\\"];

const MODES: [&str; 2] = ["test", "live"];

const SHARED_EMAIL: &str = "shared.iso@example.com";

#[derive(Clone, Debug)]
struct Model {
    id: String,
    email: Option<String>,
    marker: String,
    note: Option<String>,
    status: &'static str,
    version: i64,
}

/// A write sent with an Idempotency-Key, kept for replays.
#[derive(Clone, Debug)]
struct Keyed {
    key: String,
    method: Method,
    path: String,
    body: Option<Value>,
    status: u16,
    text: String,
}

/// What tenants publish for the others to attack, and every string that belongs to one tenant.
#[derive(Default)]
struct Shared {
    ids: Vec<Vec<String>>,
    keyed: Vec<Vec<Keyed>>,
    cursors: Vec<Vec<String>>,
    secrets: Vec<BTreeSet<String>>,
}

/// (id, org, status, version, email, metadata.marker, metadata.note) as stored.
type StoredRow = (
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The four tenants' workers, their generators seeded from `seed`.
fn workers<'a>(app: &'a TestApp, shared: &'a Mutex<Shared>, seed: u64) -> Vec<Worker<'a>> {
    (0..4)
        .map(|me| Worker {
            app,
            me,
            token: token(ORGS[me / 2], MODES[me % 2], ADMIN),
            rng: Rng::new(seed ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(me as u64 + 1))),
            shared,
            customers: Vec::new(),
            keyed: Vec::new(),
            used_keys: BTreeSet::new(),
            transcript: Vec::new(),
            ops: BTreeMap::new(),
            requests: 0,
        })
        .collect()
}

/// No answer to one tenant holds another's id, email, marker, note or org.
fn assert_no_foreign_secrets(workers: &[Worker], secrets: &[BTreeSet<String>]) {
    for w in workers {
        let own = &secrets[w.me];
        let foreign: BTreeSet<&String> = secrets
            .iter()
            .enumerate()
            .filter(|(t, _)| *t != w.me)
            .flat_map(|(_, s)| s.iter())
            .filter(|s| !own.contains(*s))
            .collect();
        for (what, record) in &w.transcript {
            for secret in &foreign {
                assert!(
                    !record.contains(secret.as_str()),
                    "{what}: the answer contains another tenant's {secret}: {record}"
                );
            }
        }
    }
}

/// The database agrees with every tenant's model: nothing was written across tenants. Returns
/// how many customers there are.
async fn assert_stored_as_modelled(app: &TestApp, workers: &[Worker<'_>]) -> usize {
    let mut total = 0;
    for w in workers {
        let rows: Vec<StoredRow> = sqlx::query_as(
            "SELECT id, org_id, status, version, email, metadata->>'marker', metadata->>'note' \
                 FROM customers WHERE org_id = $1 AND mode = $2 ORDER BY id",
        )
        .bind(ORGS[w.me / 2])
        .bind(MODES[w.me % 2])
        .fetch_all(&app.db)
        .await
        .expect("rows");
        let mut expected: Vec<_> = w
            .customers
            .iter()
            .map(|c| {
                (
                    c.id.clone(),
                    ORGS[w.me / 2].to_owned(),
                    c.status.to_owned(),
                    c.version,
                    c.email.clone(),
                    Some(c.marker.clone()),
                    c.note.clone(),
                )
            })
            .collect();
        expected.sort();
        assert_eq!(rows, expected, "tenant {}: stored rows", w.me);
        total += rows.len();
    }
    assert_eq!(
        app.count_customers().await as usize,
        total,
        "no customer outside the four tenants"
    );
    let stolen: i64 =
        sqlx::query_scalar("SELECT count(*) FROM customers WHERE metadata->>'note' = 'stolen'")
            .fetch_one(&app.db)
            .await
            .expect("count");
    assert_eq!(stolen, 0, "a foreign PATCH got through");
    total
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The seed is printed and can be given back with `ISOLATION_SEED`; `ISOLATION_STEPS` sets how
/// many steps each tenant takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_others_data_under_a_random_workload() {
    let seed: u64 = env_or("ISOLATION_SEED", 0x1507_a7e5_eed0_0001);
    let steps: usize = env_or("ISOLATION_STEPS", 300);
    let app = spawn_app_without_rate_limits().await;
    let shared = Mutex::new(Shared {
        ids: vec![Vec::new(); 4],
        keyed: vec![Vec::new(); 4],
        cursors: vec![Vec::new(); 4],
        secrets: vec![BTreeSet::new(); 4],
    });
    {
        // The org ids themselves are another org's secret.
        let mut s = shared.lock().expect("lock");
        for t in 0..4 {
            s.secrets[t].insert(ORGS[t / 2].to_owned());
        }
    }
    let mut workers = workers(&app, &shared, seed);
    // The tenants run at once, so their requests interleave on the server.
    futures_util::future::join_all(workers.iter_mut().map(|w| async move {
        for _ in 0..steps {
            w.step().await;
        }
        w.walk(None).await;
        w.walk(Some("deleted")).await;
    }))
    .await;

    let secrets = shared.lock().expect("lock").secrets.clone();
    assert_no_foreign_secrets(&workers, &secrets);
    let total = assert_stored_as_modelled(&app, &workers).await;

    let requests: usize = workers.iter().map(|w| w.requests).sum();
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &workers {
        for (op, n) in &w.ops {
            *ops.entry(op).or_default() += n;
        }
    }
    println!(
        "tenant isolation: seed {seed:#x}, 4 tenants x {steps} steps, {requests} requests, \
         {total} customers, {} tenant-owned strings checked against every other tenant's answers; \
         ops {ops:?}",
        secrets.iter().map(BTreeSet::len).sum::<usize>()
    );
}
