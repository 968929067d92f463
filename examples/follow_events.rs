//! How a service that enforces spending policies keeps up with policy changes, two ways
//! (docs/events-publication.md):
//!
//! ```text
//! # Follow the tenant's feed over HTTP (any tenant token with customers:read):
//! cargo run --example follow_events -- feed http://127.0.0.1:8080 "$TOKEN"
//! # Or subscribe to the JetStream stream with a durable consumer (every tenant, or one, in
//! # test mode, the default of `customers-api token`, or live):
//! cargo run --example follow_events -- nats nats://127.0.0.1:4222 [org] [--mode test|live]
//! ```
//!
//! The service publishes to NATS only when `events.nats_url` is set
//! (`CUSTOMERS_API__EVENTS__NATS_URL=nats://127.0.0.1:4222`; the compose stack sets it): a plain
//! `cargo run` publishes nothing, and the feed is the way to follow it.
//!
//! Both deliver each customer's events in version order, and both may deliver an event again
//! (a consumer that crashes before it records its cursor or acks): apply an event only if its
//! `version` is above the one you hold for that customer, and keep the cursor or ack only after
//! the change is applied.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // --mode test|live: whose events of one tenant to follow (a token's mode, test by default).
    let mode = match args.iter().position(|a| a == "--mode") {
        Some(i) if i + 1 < args.len() => {
            let mode = args.remove(i + 1);
            args.remove(i);
            mode
        }
        Some(_) => return Err(USAGE.into()),
        None => "test".to_owned(),
    };
    if mode != "test" && mode != "live" {
        return Err(format!("--mode {mode}: test or live\n{USAGE}").into());
    }
    let mut policies = Policies::default();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["feed", base, token] => follow_feed(base, token, &mut policies).await,
        ["nats", url] => subscribe(url, None, &mode, &mut policies).await,
        ["nats", url, org] => subscribe(url, Some(org), &mode, &mut policies).await,
        _ => Err(USAGE.into()),
    }
}

const USAGE: &str =
    "usage: follow_events feed <base-url> <token> | nats <nats-url> [org] [--mode test|live]";

/// `GET /v1/events?after=<cursor>`, oldest first; a caught-up page is empty and its
/// `nextCursor` is the one to poll with.
async fn follow_feed(base: &str, token: &str, policies: &mut Policies) -> Result<(), Error> {
    let client = reqwest::Client::new();
    // Keep the cursor with your own state (same transaction) to resume after a restart.
    let mut cursor: Option<String> = None;
    loop {
        let mut request = client
            .get(format!("{base}/v1/events"))
            .bearer_auth(token)
            .query(&[("limit", "100")]);
        if let Some(after) = &cursor {
            request = request.query(&[("after", after)]);
        }
        let page: Value = request.send().await?.error_for_status()?.json().await?;
        let events = page["data"].as_array().cloned().unwrap_or_default();
        for event in &events {
            policies.apply(event);
        }
        cursor = page["nextCursor"].as_str().map(str::to_owned).or(cursor);
        if events.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// A durable pull consumer on the stream: JetStream remembers what it acknowledged, so a
/// restarted consumer goes on where it stopped.
async fn subscribe(
    url: &str,
    org: Option<&str>,
    mode: &str,
    policies: &mut Policies,
) -> Result<(), Error> {
    let js = jetstream::new(async_nats::connect(url).await?);
    let stream = js.get_stream("CUSTOMER_EVENTS").await?;
    // customers.<mode>.<org>.<type>, the org id percent-encoded: `.` `*` `>` `%` (and any
    // byte outside visible ASCII) become %XX, e.g. "acme.eu" -> "acme%2Eeu".
    let filter_subject = match org {
        Some(org) => format!("customers.{mode}.{}.>", encode_org(org)),
        None => "customers.>".to_owned(),
    };
    let consumer = stream
        .get_or_create_consumer(
            "policy-enforcer",
            pull::Config {
                durable_name: Some("policy-enforcer".into()),
                filter_subject,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let event: Value = serde_json::from_slice(&message.payload)?;
        policies.apply(&event);
        // Only once applied: an event not acknowledged is delivered again.
        message.ack().await?;
    }
    Ok(())
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn encode_org(org: &str) -> String {
    org.bytes()
        .map(|b| match b {
            b'%' | b'.' | b'*' | b'>' => format!("%{b:02X}"),
            0x21..=0x7e => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What the enforcing service holds: each customer's policy at its latest version.
#[derive(Default)]
struct Policies {
    customers: HashMap<String, (i64, Value)>,
}

impl Policies {
    fn apply(&mut self, event: &Value) {
        let (Some(customer), Some(version)) =
            (event["customerId"].as_str(), event["version"].as_i64())
        else {
            return;
        };
        let held = self.customers.get(customer).map_or(0, |(v, _)| *v);
        if version <= held {
            return; // Delivered again: already applied.
        }
        let object = &event["data"]["object"];
        println!(
            "{} {customer} v{version}: status {}, limits {}",
            event["type"].as_str().unwrap_or("?"),
            object["status"],
            object["policy"]["limits"]
        );
        self.customers
            .insert(customer.to_owned(), (version, object.clone()));
    }
}
