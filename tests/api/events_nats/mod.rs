//! Publication of events to NATS JetStream (docs/events-publication.md): real PostgreSQL, real
//! NATS, the real server over HTTP. Each test has a stream and a subject prefix of its own, so
//! that tests run in parallel on the shared NATS server, and deletes its stream at the end.
//!
//! What the tests here share: writing through the API, reading the feed, and checking what a
//! JetStream consumer received against it.

mod crash;
mod delivery;
mod handover;
mod instances;
mod max_age;
mod outage;
mod stalled;
mod undeliverable;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::{token, Received, ADMIN};

/// An org id with every character a subject token cannot hold, and the escape itself.
pub const ODD_ORG: &str = "acme.eu*>%";
/// Its token in subjects, as docs/events-publication.md documents the encoding.
pub const ODD_ORG_TOKEN: &str = "acme%2Eeu%2A%3E%25";

/// Writes to one tenant of a running service over HTTP.
#[derive(Clone)]
pub struct Writer {
    base: String,
    client: reqwest::Client,
    token: String,
    pub org: String,
}

impl Writer {
    /// `base`: `http://127.0.0.1:<port>`.
    pub fn new(base: &str, org: &str) -> Self {
        Writer {
            base: base.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a client"),
            token: token(org, "test", ADMIN),
            org: org.to_owned(),
        }
    }

    /// `total` writes, `workers` at a time: `customers` creates, then PATCHes spread over those
    /// customers. Each customer is written by one worker, one request after the other, so that
    /// every write changes something and none conflicts; the workers run concurrently.
    pub async fn run(&self, customers: usize, total: usize, workers: usize) {
        assert!(workers >= 1 && customers >= workers && total >= customers);
        let mut tasks = Vec::new();
        for w in 0..workers {
            let mine = (w..customers).step_by(workers).count();
            let writes = total / workers + usize::from(w < total % workers);
            assert!(writes >= mine, "too few writes for the customers");
            let writer = self.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..mine {
                    ids.push(writer.create().await);
                }
                for n in 0..writes - mine {
                    let id = &ids[n % ids.len()];
                    writer.patch(id, json!({"metadata": {"n": n}})).await;
                }
            }));
        }
        for task in tasks {
            task.await.expect("a writer task");
        }
    }

    pub async fn create(&self) -> String {
        let response = self
            .client
            .post(format!("{}/v1/customers", self.base))
            .bearer_auth(&self.token)
            .json(&json!({}))
            .send()
            .await
            .expect("POST sent");
        assert_eq!(
            response.status(),
            201,
            "create: {:?}",
            response.text().await
        );
        let body: Value = response.json().await.expect("a customer");
        body["id"].as_str().expect("an id").to_owned()
    }

    pub async fn patch(&self, id: &str, body: Value) {
        let response = self
            .client
            .patch(format!("{}/v1/customers/{id}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
            .await
            .expect("PATCH sent");
        assert_eq!(response.status(), 200, "patch: {:?}", response.text().await);
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET sent")
    }

    /// The tenant's feed from the beginning, following `nextCursor` (and polling when caught
    /// up) until it has shown `expected` events.
    pub async fn feed(&self, expected: usize, limit: Duration) -> Vec<FeedEvent> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            data: Vec<Box<RawValue>>,
            next_cursor: Option<String>,
        }
        let deadline = Instant::now() + limit;
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        while events.len() < expected {
            let path = match &cursor {
                Some(c) => format!("/v1/events?limit=100&after={c}"),
                None => "/v1/events?limit=100".to_owned(),
            };
            let response = self.get(&path).await;
            assert_eq!(response.status(), 200);
            let page: Page = serde_json::from_slice(&response.bytes().await.expect("a body"))
                .expect("a page of events");
            if page.data.is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "the feed showed {} of {expected} events within {limit:?}",
                    events.len()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for raw in page.data {
                let value: Value = serde_json::from_str(raw.get()).expect("an event");
                events.push(FeedEvent {
                    id: value["id"].as_str().expect("id").to_owned(),
                    customer: value["customerId"].as_str().expect("customerId").to_owned(),
                    version: value["version"].as_i64().expect("version"),
                    kind: value["type"].as_str().expect("type").to_owned(),
                    org: self.org.clone(),
                    json: raw.get().to_owned(),
                });
            }
            cursor = page.next_cursor;
        }
        assert_eq!(events.len(), expected, "the feed showed more events");
        events
    }

    /// `/readyz`'s `events.publishing`.
    pub async fn publishing(&self) -> String {
        let response = self.get("/readyz").await;
        assert_eq!(response.status(), 200, "/readyz");
        let body: Value = response.json().await.expect("JSON");
        body["events"]["publishing"]
            .as_str()
            .expect("events.publishing")
            .to_owned()
    }

    /// Waits (bounded) until `/readyz` says `publishing`.
    pub async fn wait_publishing(&self, publishing: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let now = self.publishing().await;
            if now == publishing {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz says {now:?}, not {publishing:?}, after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A gauge of `/metrics` (absent: `None`).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.get("/metrics").await.text().await.expect("a body");
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map(|v| v.trim().parse().expect("a number"))
    }
}

impl Writer {
    /// Waits (bounded) until a gauge of `/metrics` shows `value`.
    pub async fn wait_metric(&self, name: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.metric(name).await;
            if now == Some(value) {
                return;
            }
            assert!(Instant::now() < deadline, "{name} is {now:?}, not {value}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// One event as the feed served it.
#[derive(Debug, Clone)]
pub struct FeedEvent {
    pub id: String,
    pub customer: String,
    pub version: i64,
    pub kind: String,
    pub org: String,
    /// The exact JSON text the feed served.
    pub json: String,
}

/// What a consumer received must be the feeds' events, each exactly once, byte for byte, with
/// `Nats-Msg-Id` = the event id and the documented subject; each tenant's events in the order of
/// its feed (so each customer's in version order).
pub fn check_published(received: &[Received], feeds: &[&[FeedEvent]], prefix: &str) {
    let total: usize = feeds.iter().map(|f| f.len()).sum();
    assert_eq!(received.len(), total, "messages vs events in the feeds");
    let counts = crate::support::TestStream::count_ids(received);
    let twice: Vec<_> = counts.iter().filter(|(_, &n)| n != 1).collect();
    assert!(twice.is_empty(), "ids not received exactly once: {twice:?}");
    let mut received = received.to_vec();
    received.sort_by_key(|m| m.stream_sequence);
    let by_id: HashMap<&str, &Received> = received
        .iter()
        .map(|m| (m.msg_id.as_deref().expect("a Nats-Msg-Id"), m))
        .collect();
    for feed in feeds {
        for event in feed.iter() {
            let message = by_id
                .get(event.id.as_str())
                .unwrap_or_else(|| panic!("{} was not published", event.id));
            assert_eq!(
                message.payload,
                event.json.as_bytes(),
                "the message of {} differs from the feed's JSON",
                event.id
            );
            let expected_subject = customers_api::consumers::relay::subject::subject(
                prefix,
                "test",
                &event.org,
                &event.kind,
            );
            assert_eq!(message.subject, expected_subject);
        }
        // The tenant's messages in stream order are its feed, in order.
        let org = &feed[0].org;
        let in_stream: Vec<&str> = received
            .iter()
            .filter(|m| {
                m.subject
                    .starts_with(&format!("{prefix}.test.{}.", encode(org)))
            })
            .map(|m| m.msg_id.as_deref().unwrap_or_default())
            .collect();
        let in_feed: Vec<&str> = feed.iter().map(|e| e.id.as_str()).collect();
        assert!(
            in_stream == in_feed,
            "{org}: the stream's order is not the feed's"
        );
    }
    // Each customer's versions, in stream order: 1, 2, 3, …
    let version_of: HashMap<&str, (&str, i64)> = feeds
        .iter()
        .flat_map(|f| f.iter())
        .map(|e| (e.id.as_str(), (e.customer.as_str(), e.version)))
        .collect();
    let mut last: HashMap<&str, i64> = HashMap::new();
    for message in &received {
        let (customer, version) = version_of[message.msg_id.as_deref().unwrap_or_default()];
        let previous = last.insert(customer, version).unwrap_or(0);
        assert_eq!(
            version,
            previous + 1,
            "{customer}: version {version} after {previous}"
        );
    }
}

fn encode(org: &str) -> String {
    customers_api::consumers::relay::subject::encode_org(org).into_owned()
}

/// When each event was recorded (the database's clock), by id.
pub async fn recorded_at(db: &PgPool) -> HashMap<String, DateTime<Utc>> {
    sqlx::query_as::<_, (String, DateTime<Utc>)>("SELECT id, recorded_at FROM customer_events")
        .fetch_all(db)
        .await
        .expect("the events' recording times")
        .into_iter()
        .collect()
}

/// Publication lag (JetStream's storage time − recording time), in milliseconds: p50, p99, max.
pub fn lag_ms(received: &[Received], recorded: &HashMap<String, DateTime<Utc>>) -> (f64, f64, f64) {
    let mut lags: Vec<f64> = received
        .iter()
        .map(|m| {
            let at = recorded[m.msg_id.as_deref().unwrap_or_default()];
            (m.published - at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| lags[((lags.len() as f64 * q).ceil() as usize).clamp(1, lags.len()) - 1];
    (at(0.5), at(0.99), *lags.last().expect("some lags"))
}

/// The relay position and how many events are at or before it.
pub async fn relay_position(db: &PgPool) -> (i64, i64, i64) {
    sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT r.feed_xid, r.seq,
                (SELECT count(*) FROM customer_events e WHERE (e.feed_xid, e.seq) <= (r.feed_xid, r.seq))
           FROM event_relay r",
    )
    .fetch_one(db)
    .await
    .expect("the relay position")
}
