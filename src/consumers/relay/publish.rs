//! The JetStream side of a round: the stream, and publishing a batch in order.
//!
//! **Order.** A batch is pipelined (every message sent before the first ack is awaited), and
//! each message carries `Nats-Expected-Last-Msg-Id`: the id of the event before it, which must be
//! the stream's last message. JetStream refuses a message whose expectation does not hold, so if
//! one is lost (a connection dropped under it, a timeout), none after it is stored: the stream
//! holds every customer's events in version order even when a publication fails midway.
//! JetStream checks `Nats-Msg-Id` first, so a republished duplicate is acknowledged as such
//! whatever its expectation.
//!
//! **The stream's tail without asking for it.** The first message of a batch expects the event at
//! the relay position (`Batch::after_id`, read with the batch under the publisher lock): the last
//! one published, by whichever instance. So a round needs no JetStream API request, also when the
//! lock has changed hands; the expectation is checked by the stream's leader in the publication
//! itself. (Each instance used to read the stream's state whenever the lock had changed hands:
//! while a server of a cluster was frozen those requests could time out for the whole stall, each
//! holding the publisher lock for `publish_timeout`, and publication lagged until the thaw.)
//!
//! When the stream's last message is another event of the batch (an instance published up to it
//! and died, or its round was cut off, before it could move the position), JetStream's refusal
//! names it: the events up to it are already in the stream and are skipped, so such a crash
//! leaves no duplicate even after JetStream's duplicate window has passed. The stream is read
//! (created when missing, its configuration checked) on the first round of the process, when
//! there is no event at the position to expect, after a refusal that names no event of the batch,
//! and when the stream is gone (it is created again); that round expects the stream's last
//! sequence instead.

use std::time::Duration;
use tracing::Instrument;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use chrono::{DateTime, Utc};

use super::store::{Batch, Pending};
use super::subject::subject;
use crate::configuration::EventsSettings;

const MSG_ID: &str = "Nats-Msg-Id";

pub struct Publisher {
    js: jetstream::Context,
    config: stream::Config,
    prefix: String,
    /// The stream was read, created if missing, and its configuration checked, in this process.
    checked_config: bool,
    /// The next round reads the stream first: the last one found a message in it that is none of
    /// the events it knows.
    read_next: bool,
}

/// What the first message of a batch expects the stream's last message to be.
#[derive(Debug, Clone, Copy)]
enum Expect<'a> {
    /// The event at the relay position (by its `Nats-Msg-Id`).
    LastId(&'a str),
    /// The stream's last sequence, as read from the stream.
    LastSequence(u64),
}

/// How a batch went.
#[derive(Debug, Default)]
pub struct Published {
    /// Events at the start of the batch that JetStream holds (acknowledged, duplicates
    /// included, or found in the stream): the relay position moves over them.
    pub through: usize,
    /// Of those, events JetStream already had.
    pub duplicates: usize,
    /// Seconds from each newly stored event's `recorded_at` to its ack.
    pub lags: Vec<f64>,
    /// Why the rest of the batch was not acknowledged, if it was not.
    pub failure: Option<Failure>,
}

#[derive(Debug)]
pub struct Failure {
    pub error: anyhow::Error,
    /// The stream moved under this instance (another publisher): worth an immediate retry,
    /// not a warning.
    pub stale_tail: bool,
    /// The first event not acknowledged (`batch.events[through]`) was refused for what it is
    /// (larger than the server's `max_payload` or the stream's `max_msg_size`): publishing it
    /// again cannot succeed. The reason, without personal data (sizes and limits).
    pub refused: Option<String>,
}

impl Failure {
    fn new(error: anyhow::Error) -> Self {
        Failure {
            error,
            stale_tail: false,
            refused: None,
        }
    }
}

/// Why JetStream (or the client, before sending) refuses this message whatever is tried again,
/// if it does: only reasons that belong to the message itself. Failures that concern the stream
/// or the connection (a full stream, a timeout, no stream) would refuse every event and are
/// retried instead.
fn refusal(e: &PublishError) -> Option<String> {
    use std::error::Error as _;
    match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => Some(e.to_string()),
        PublishErrorKind::Other => {
            let api = e.source()?.downcast_ref::<jetstream::Error>()?;
            [
                jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM,
                jetstream::ErrorCode::STREAM_HEADER_EXCEEDS_MAXIMUM,
            ]
            .contains(&api.error_code())
            .then(|| api.to_string())
        }
        _ => None,
    }
}

impl Publisher {
    pub fn new(client: async_nats::Client, settings: &EventsSettings) -> Self {
        let js = jetstream::ContextBuilder::new()
            .timeout(settings.publish_timeout)
            .build(client);
        // The stream keeps events as long as the database does (events.retention; none: no
        // expiry, the audit trail), so that personal data leaves NATS too. JetStream needs the
        // duplicate window within max_age.
        let max_age = settings.retention.unwrap_or(Duration::ZERO);
        let duplicate_window = if max_age.is_zero() {
            settings.duplicate_window
        } else {
            settings.duplicate_window.min(max_age)
        };
        let config = stream::Config {
            name: settings.stream.clone(),
            subjects: vec![format!("{}.>", settings.subject_prefix)],
            duplicate_window,
            max_age,
            num_replicas: settings.stream_replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        Publisher {
            js,
            config,
            prefix: settings.subject_prefix.clone(),
            checked_config: false,
            read_next: false,
        }
    }

    /// Publishes the batch, in order, and waits for the acks. Never fails as a whole: what was
    /// acknowledged is in [`Published::through`], the rest is retried by a later round.
    pub async fn publish(&mut self, batch: &Batch) -> Published {
        let fast = self.checked_config && !self.read_next;
        let (first, skip) = match batch.after_id.as_deref() {
            Some(id) if fast => (Expect::LastId(id), 0),
            _ => match self.read_tail(batch).await {
                Ok((last_sequence, skip)) => (Expect::LastSequence(last_sequence), skip),
                Err(error) => {
                    return Published {
                        failure: Some(Failure::new(error)),
                        ..Published::default()
                    }
                }
            },
        };
        self.read_next = false;
        let mut published = Published {
            through: skip,
            duplicates: skip,
            ..Published::default()
        };
        let (acks, send_failure) = self.send(&batch.events[skip..], first).await;
        for (i, ack) in (skip..).zip(acks) {
            if i < published.through {
                // Found in the stream already (below); its ack is a refusal or a duplicate.
                continue;
            }
            match ack.await {
                Ok(ack) => {
                    published.through += 1;
                    if ack.duplicate {
                        published.duplicates += 1;
                    } else {
                        let event = &batch.events[i];
                        published.lags.push(lag(event, Utc::now() + batch.skew));
                    }
                }
                Err(e) => {
                    if let Some(last) = in_stream_through(&e, &batch.events[i..]) {
                        // Published before (by an instance that died, or a round cut off,
                        // before the position moved): the stream holds the events up to it.
                        let found = last + 1;
                        tracing::info!(
                            events = found,
                            "events published before a crash were already in the stream; skipped"
                        );
                        published.through += found;
                        published.duplicates += found;
                        continue;
                    }
                    let stale_tail = matches!(
                        e.kind(),
                        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId
                    ) && i == skip;
                    if stale_tail || e.kind() == PublishErrorKind::StreamNotFound {
                        // The stream ends with a message this instance does not know, or it is
                        // gone (deleted while the service runs): read it, or create it again.
                        self.read_next = true;
                    }
                    let refused = refusal(&e);
                    published.failure = Some(Failure {
                        error: anyhow::Error::new(e)
                            .context("JetStream did not acknowledge an event"),
                        stale_tail,
                        refused,
                    });
                    break;
                }
            }
        }
        if published.failure.is_none() && published.through < batch.events.len() {
            published.failure = send_failure;
        }
        published
    }

    /// Hands the messages to the client without waiting for acks; stops at the first that
    /// cannot be handed over.
    async fn send(
        &self,
        events: &[Pending],
        first: Expect<'_>,
    ) -> (Vec<PublishAckFuture>, Option<Failure>) {
        let mut acks = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let expect = match i.checked_sub(1) {
                Some(before) => Expect::LastId(&events[before].id),
                None => first,
            };
            let message = PublishMessage::build().message_id(&event.id);
            let mut message = match expect {
                Expect::LastId(id) => message.expected_last_message_id(id),
                Expect::LastSequence(sequence) => message.expected_last_sequence(sequence),
            }
            .payload(bytes::Bytes::from(event.body.clone()));
            let subject = subject(&self.prefix, &event.mode, &event.org, &event.kind);
            // The publication joins the trace of the request that made the event, and the
            // message carries it on (the publication's own context when traces are exported).
            let span = crate::telemetry::publication_span(&subject);
            crate::telemetry::continue_from(&span, event.traceparent.as_deref());
            let traceparent =
                crate::telemetry::traceparent(&span).or_else(|| event.traceparent.clone());
            if let Some(traceparent) = traceparent {
                message = message.header("traceparent", traceparent.as_str());
            }
            let sent = self.js.send_publish(subject, message).instrument(span);
            match sent.await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    let refused = refusal(&e);
                    return (
                        acks,
                        Some(Failure {
                            error: anyhow::Error::new(e).context("publishing an event failed"),
                            stale_tail: false,
                            refused,
                        }),
                    );
                }
            }
        }
        (acks, None)
    }

    /// Creates the stream when missing, and reads its last sequence; returns it with the number
    /// of events at the start of `batch` that the stream already holds (its last message is
    /// one of them).
    async fn read_tail(&mut self, batch: &Batch) -> anyhow::Result<(u64, usize)> {
        use anyhow::Context;
        let stream = self
            .js
            .get_or_create_stream(self.config.clone())
            .await
            .with_context(|| format!("creating or reading the stream {}", self.config.name))?;
        let info = stream.cached_info();
        if !self.checked_config {
            self.align_max_age(&info.config).await?;
            self.checked_config = true;
            self.warn_about(&info.config);
        }
        let last_sequence = info.state.last_sequence;
        if last_sequence == 0 {
            return Ok((0, 0));
        }
        // Gone (a limit, a purge) or unreadable: nothing to skip; duplicates are then dropped
        // by Nats-Msg-Id within the duplicate window.
        let Ok(last) = stream.get_raw_message(last_sequence).await else {
            return Ok((last_sequence, 0));
        };
        let skip = last
            .headers
            .get(MSG_ID)
            .and_then(|id| batch.events.iter().position(|e| e.id == id.as_str()))
            .map_or(0, |i| i + 1);
        if skip > 0 {
            tracing::info!(
                events = skip,
                "events published before a crash were already in the stream; skipped"
            );
        }
        Ok((last_sequence, skip))
    }

    /// An existing stream (made before the retention was set or changed, or by someone else)
    /// gets the retention as its `max_age`; the rest of its configuration is left as it is.
    async fn align_max_age(&self, existing: &stream::Config) -> anyhow::Result<()> {
        use anyhow::Context;
        if existing.max_age == self.config.max_age {
            return Ok(());
        }
        let mut config = existing.clone();
        config.max_age = self.config.max_age;
        if !config.max_age.is_zero() && config.duplicate_window > config.max_age {
            config.duplicate_window = config.max_age;
        }
        self.js.update_stream(&config).await.with_context(|| {
            format!(
                "setting the stream {}'s max_age to events.retention",
                existing.name
            )
        })?;
        tracing::info!(
            stream = %existing.name,
            max_age = ?config.max_age,
            "the stream's max_age set to events.retention"
        );
        Ok(())
    }

    /// A stream made by someone else may not be what publication needs: say so once.
    fn warn_about(&self, existing: &stream::Config) {
        if existing.duplicate_window < self.config.duplicate_window {
            tracing::warn!(
                stream = %existing.name,
                duplicate_window = ?existing.duplicate_window,
                wanted = ?self.config.duplicate_window,
                "the existing stream's duplicate window is shorter than events.duplicate_window"
            );
        }
        if !existing.subjects.contains(&self.config.subjects[0]) {
            tracing::warn!(
                stream = %existing.name,
                "the existing stream does not list the subjects events are published to"
            );
        }
    }
}

/// JetStream refused a message because the stream's last message is not the one it expected:
/// if that last message is one of `events` (the refused one and those after it), its index. The
/// refusal names the last message's id ("wrong last msg ID: <id>").
fn in_stream_through(e: &PublishError, events: &[Pending]) -> Option<usize> {
    use std::error::Error as _;
    if e.kind() != PublishErrorKind::WrongLastMessageId {
        return None;
    }
    let api = e.source()?.downcast_ref::<jetstream::Error>()?;
    let last = last_id_named(api)?;
    events.iter().position(|event| event.id == last)
}

/// The id a "wrong last msg ID" refusal names, if any.
fn last_id_named(api: &jetstream::Error) -> Option<String> {
    let json = serde_json::to_value(api).ok()?;
    let description = json.get("description")?.as_str()?;
    let id = description.strip_prefix("wrong last msg ID:")?.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

fn lag(event: &Pending, acked_at: DateTime<Utc>) -> f64 {
    let lag = acked_at - event.recorded_at;
    lag.to_std().unwrap_or(Duration::ZERO).as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(err_code: u64) -> jetstream::Error {
        serde_json::from_value(serde_json::json!({
            "code": 400, "err_code": err_code, "description": "refused"
        }))
        .expect("a JetStream API error")
    }

    #[test]
    fn a_wrong_last_message_id_refusal_names_the_stream_s_last_message() {
        let refusal = |description: &str| {
            serde_json::from_value::<jetstream::Error>(serde_json::json!({
                "code": 400, "err_code": 10070, "description": description
            }))
            .expect("a JetStream API error")
        };
        assert_eq!(
            last_id_named(&refusal("wrong last msg ID: evt_01J0ABC")).as_deref(),
            Some("evt_01J0ABC")
        );
        // A stream whose last message carries no id (or none this server remembers).
        assert_eq!(last_id_named(&refusal("wrong last msg ID: ")), None);
        assert_eq!(last_id_named(&refusal("wrong last sequence: 7")), None);
    }

    #[test]
    fn only_refusals_of_the_message_itself_set_an_event_aside() {
        let too_large = PublishError::with_source(
            PublishErrorKind::MaxPayloadExceeded,
            "Payload size limit of 4096 exceeded by message size of 6000",
        );
        assert!(refusal(&too_large).is_some_and(|r| r.contains("4096")));
        for code in [10054, 10097] {
            let e = PublishError::with_source(PublishErrorKind::Other, api_error(code));
            assert!(refusal(&e).is_some(), "{code}");
        }
        // A full stream, the account's limits, no stream, a timeout, a lost connection: every
        // event would be refused alike, so none is set aside.
        for code in [10077, 10002, 10047] {
            let e = PublishError::with_source(PublishErrorKind::Other, api_error(code));
            assert!(refusal(&e).is_none(), "{code}");
        }
        for kind in [
            PublishErrorKind::TimedOut,
            PublishErrorKind::BrokenPipe,
            PublishErrorKind::StreamNotFound,
            PublishErrorKind::WrongLastSequence,
            PublishErrorKind::MaxAckPending,
            PublishErrorKind::Other,
        ] {
            assert!(refusal(&PublishError::new(kind)).is_none(), "{kind:?}");
        }
    }
}
