//! The publisher lock changing hands needs no JetStream API request. A relay that takes the lock
//! after another instance published expects the stream's last message to be the event at the
//! relay position, in the publication itself; it used to ask for the stream's state first, and
//! while a server of a cluster was frozen such requests could go unanswered for the whole stall,
//! each holding the lock for `publish_timeout`. Here the NATS server stops answering the relay's
//! API requests (its user may no longer publish to `$JS.API.>`), while publishing still works;
//! the test then plays another instance's round.

use std::time::Duration;

use async_nats::jetstream;

use super::Writer;
use crate::support::{spawn_app_with, PrivateNats, TestStream, ORG};

/// The relay's advisory lock (`consumers::relay::store`): held by the test, as by another
/// instance in a round.
const PUBLISHER_LOCK: i64 = 0x6375_7374_5F72_6C79;

fn config(relay_permissions: &str) -> String {
    format!(
        "authorization {{\n  users = [\n    {{ user: admin, password: admin }}\n    \
         {{ user: relay, password: relay {relay_permissions} }}\n  ]\n}}\n\
         no_auth_user: admin\n"
    )
}

#[tokio::test]
async fn a_relay_taking_the_lock_over_publishes_without_asking_jetstream_for_the_stream() {
    let mut nats = PrivateNats::start_with_config(&config("")).await;
    let admin_url = nats.url();
    let relay_url = format!("nats://relay:relay@127.0.0.1:{}", nats.port);
    let stream = TestStream::new(&admin_url).await;
    let app = spawn_app_with(|settings| {
        stream.configure(settings, &relay_url);
        settings.rate_limit.enabled = false;
        settings.events.publish_timeout = Duration::from_secs(1);
    })
    .await;
    let writer = Writer::new(&app.address, ORG);
    writer
        .wait_publishing("connected", Duration::from_secs(10))
        .await;
    // The relay's first round reads the stream (it creates it).
    let customer = writer.create().await;
    stream.wait_count(1, Duration::from_secs(10)).await;

    // From now on the server drops the relay's JetStream API requests (unanswered, as by a
    // frozen server); its publications go on.
    nats.reload(&config(
        r#", permissions: { publish: { deny: ["$JS.API.>"] } }"#,
    ))
    .await;

    // Another instance's round: under the lock, an event published and the position moved to it.
    let mut round = app.db.begin().await.expect("a transaction");
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PUBLISHER_LOCK)
        .execute(&mut *round)
        .await
        .expect("the publisher lock");
    writer
        .patch(
            &customer,
            serde_json::json!({"metadata": {"step": "handed over"}}),
        )
        .await;
    let (feed_xid, seq, id, body): (i64, i64, String, String) = sqlx::query_as(
        "SELECT feed_xid, seq, id, body::text FROM customer_events ORDER BY feed_xid DESC, seq DESC LIMIT 1",
    )
    .fetch_one(&mut *round)
    .await
    .expect("the event just written");
    let client = async_nats::connect(&admin_url)
        .await
        .expect("a NATS client");
    let js = jetstream::new(client);
    let message = jetstream::message::PublishMessage::build()
        .message_id(&id)
        .payload(body.into_bytes().into());
    js.send_publish(format!("{}.other.instance", stream.prefix), message)
        .await
        .expect("published")
        .await
        .expect("acknowledged");
    sqlx::query("UPDATE event_relay SET feed_xid = $1, seq = $2 WHERE id = 1")
        .bind(feed_xid)
        .bind(seq)
        .execute(&mut *round)
        .await
        .expect("the position moved");
    round.commit().await.expect("the round committed");

    // This relay takes the lock over: its next events are published all the same.
    writer
        .patch(
            &customer,
            serde_json::json!({"metadata": {"step": "after the handover"}}),
        )
        .await;
    writer.create().await;
    stream.wait_count(4, Duration::from_secs(10)).await;
    let received = stream.receive(4, Duration::from_secs(10)).await;
    let ids: Vec<_> = received.iter().map(|m| m.msg_id.clone()).collect();
    let events: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM customer_events ORDER BY feed_xid, seq")
            .fetch_all(&app.db)
            .await
            .expect("the events");
    let expected: Vec<_> = events.into_iter().map(|(id,)| Some(id)).collect();
    assert_eq!(ids, expected, "every event once, in feed order");
    stream.delete().await;
}

/// The relay reads the stream only when it must; a stream deleted while the service runs is one
/// such case: it is made again, and publication goes on.
#[tokio::test]
async fn a_stream_deleted_while_the_service_runs_is_made_again() {
    let url = crate::support::shared_nats_url();
    let stream = TestStream::new(&url).await;
    let app = spawn_app_with(|settings| {
        stream.configure(settings, &url);
        settings.rate_limit.enabled = false;
    })
    .await;
    let writer = Writer::new(&app.address, ORG);
    writer.create().await;
    stream.wait_count(1, Duration::from_secs(10)).await;

    let client = async_nats::connect(&url).await.expect("a NATS client");
    jetstream::new(client)
        .delete_stream(&stream.name)
        .await
        .expect("the stream deleted");
    writer.create().await;
    stream.wait_count(1, Duration::from_secs(10)).await;
    stream.delete().await;
}
