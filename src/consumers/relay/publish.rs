//! The JetStream side of a round: the stream, its tail, and publishing a batch in order.
//!
//! **Order.** A batch is pipelined (every message sent before the first ack is awaited), and
//! each message carries `Nats-Expected-Last-Sequence`: the stream's last sequence as it must be
//! if every message before it in the batch was stored. JetStream refuses a message whose
//! expectation does not hold, so if one is lost (a connection dropped under it, a timeout), none
//! after it is stored: the stream holds every customer's events in version order even when a
//! publication fails midway. JetStream checks `Nats-Msg-Id` first, so a republished duplicate is
//! acknowledged as such whatever its expectation.
//!
//! **The tail.** The relay remembers the stream's last sequence together with the position it
//! moved the relay to. When a round starts from another position (another instance published
//! since, or this one failed), it reads the stream again, and looks at its last message: if
//! that message is one of the batch's events (an instance published them and died before it
//! could move the position), the events up to it are already in the stream and are skipped, so
//! a crash leaves no duplicate even after JetStream's duplicate window has passed.

use std::time::Duration;
use tracing::Instrument;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use chrono::{DateTime, Utc};

use super::store::{Batch, Pending};
use super::subject::subject;
use crate::configuration::EventsSettings;
use crate::events::repo::FeedPosition;

const MSG_ID: &str = "Nats-Msg-Id";

/// What the stream looked like after this instance's last round.
#[derive(Debug, Clone, Copy)]
struct Tail {
    last_sequence: u64,
    /// The relay position this instance moved to along with it.
    position: FeedPosition,
}

pub struct Publisher {
    js: jetstream::Context,
    config: stream::Config,
    prefix: String,
    tail: Option<Tail>,
    checked_config: bool,
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
            tail: None,
            checked_config: false,
        }
    }

    /// Forgets the tail: the next round reads the stream again.
    pub fn forget_tail(&mut self) {
        self.tail = None;
    }

    /// Publishes the batch, in order, and waits for the acks. Never fails as a whole: what was
    /// acknowledged is in [`Published::through`], the rest is retried by a later round.
    pub async fn publish(&mut self, batch: &Batch) -> Published {
        let (last_sequence, skip) = match self.tail {
            Some(tail) if tail.position == batch.after => (tail.last_sequence, 0),
            _ => {
                self.tail = None;
                match self.read_tail(batch).await {
                    Ok(found) => found,
                    Err(error) => {
                        return Published {
                            failure: Some(Failure::new(error)),
                            ..Published::default()
                        }
                    }
                }
            }
        };
        let mut published = Published {
            through: skip,
            duplicates: skip,
            ..Published::default()
        };
        let mut last_sequence = last_sequence;
        let (acks, send_failure) = self.send(&batch.events[skip..], last_sequence).await;
        for ack in acks {
            match ack.await {
                Ok(ack) => {
                    published.through += 1;
                    if ack.duplicate {
                        published.duplicates += 1;
                    } else {
                        let event = &batch.events[published.through - 1];
                        published.lags.push(lag(event, Utc::now() + batch.skew));
                    }
                    last_sequence = last_sequence.max(ack.sequence);
                }
                Err(e) => {
                    let stale_tail = e.kind() == PublishErrorKind::WrongLastSequence
                        && published.through == skip;
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
        if published.failure.is_none() {
            published.failure = send_failure;
        }
        if published.failure.is_none() && published.through > 0 {
            // The caller forgets it if the round then fails to commit.
            self.tail = Some(Tail {
                last_sequence,
                position: batch.events[published.through - 1].position,
            });
        } else {
            self.tail = None;
        }
        published
    }

    /// Hands the messages to the client without waiting for acks; stops at the first that
    /// cannot be handed over.
    async fn send(
        &self,
        events: &[Pending],
        last_sequence: u64,
    ) -> (Vec<PublishAckFuture>, Option<Failure>) {
        let mut acks = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let mut message = PublishMessage::build()
                .message_id(&event.id)
                .expected_last_sequence(last_sequence + i as u64)
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
