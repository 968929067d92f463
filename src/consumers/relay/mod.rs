//! The relay: publishes committed events to NATS JetStream, in feed order, exactly once after
//! JetStream's de-duplication (docs/events-publication.md).
//!
//! A loop, woken by this instance's writes (`wake`) or every `poll_interval` (other instances'
//! writes). Each round, while NATS is connected:
//! 1. a transaction takes the publisher lock (`store::begin_round`; another instance holding it
//!    means this one skips the round);
//! 2. reads the next events after the `event_relay` position, behind the feed's gate, and the
//!    id of the event at the position, which the stream's last message must be;
//! 3. publishes them in order and awaits JetStream's acks (`publish`);
//! 4. moves the position over the acknowledged prefix and commits.
//!
//! A crash between 3 and 4 republishes those events on the next round, by whichever instance:
//! JetStream drops them by `Nats-Msg-Id`, or the relay finds them in the stream and skips them.
//! While NATS is unreachable the relay does not touch the database at all; events wait.
//!
//! A round is bounded on the client side ([`round_limit`]) as requests are (`db::deadline`): a
//! frozen database host never ends a statement, and `statement_timeout`, enforced by that
//! server, cannot. Past the bound the round's connection is condemned and dropped, and the
//! next round runs on a new one (on the new primary after a failover).

mod connect;
pub mod figures;
mod publish;
pub mod status;
pub mod store;
pub mod subject;

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use status::{Publishing, PublishingStatus};

use crate::configuration::{DatabaseSettings, EventsSettings};
use connect::connect;
use publish::Publisher;

/// The longest wait between rounds after failures (they back off from `poll_interval`).
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Rounds in a row in which JetStream refuses the same event for what it is (too large) before
/// the relay sets it aside (`store::set_aside`) and publishes the events after it.
pub const UNDELIVERABLE_AFTER: u32 = 3;

/// The first wait of [`Again::Soon`]; it doubles while nothing is published, up to
/// `poll_interval`.
const SOON_FIRST: Duration = Duration::from_millis(10);

/// How long one round may take: its statements (a connection, the batch read, the position
/// update and the commit, each well within `statement_timeout` on a server that answers) and
/// the acknowledgements (`publish_timeout`).
pub fn round_limit(database: &DatabaseSettings, events: &EventsSettings) -> Duration {
    database.acquire_timeout + 2 * database.statement_timeout + events.publish_timeout
}

/// Publishes until `stop` is cancelled. `wake` is notified after this instance commits events;
/// `status` tells `/readyz` whether NATS is reachable.
pub async fn run(
    pool: PgPool,
    settings: EventsSettings,
    round_limit: Duration,
    wake: Arc<Notify>,
    status: PublishingStatus,
    stop: CancellationToken,
) {
    if settings.nats_url.expose().is_empty() {
        status.set(Publishing::Disabled);
        stop.cancelled().await;
        return;
    }
    let connected = Arc::new(Notify::new());
    let client = match connect(&settings, &status, connected.clone()).await {
        Ok(client) => client,
        Err(e) => {
            // Not the URL itself: it may hold credentials.
            tracing::error!(error = %e, "events are not published: events.nats_url is not usable");
            status.set(Publishing::Unreachable);
            stop.cancelled().await;
            return;
        }
    };
    tracing::info!(stream = %settings.stream, "publishing events to NATS JetStream");
    let mut publisher = Publisher::new(client.clone(), &settings);
    let mut relay = Relay {
        pool,
        settings,
        round_limit,
        failures: 0,
        retried_stale: false,
        soon: SOON_FIRST,
        refused: None,
    };
    loop {
        let again = if client.connection_state() == State::Connected {
            status.set(Publishing::Connected);
            relay.round(&mut publisher).await
        } else {
            // Not a single query while NATS is away: writes go on, events wait.
            status.set(Publishing::Unreachable);
            Again::Later
        };
        match again {
            Again::Now => {
                if stop.is_cancelled() {
                    break;
                }
            }
            Again::Later | Again::Soon(_) => {
                let wait = match again {
                    Again::Soon(wait) => wait,
                    _ => relay.settings.poll_interval,
                };
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = wake.notified() => {}
                    _ = connected.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Again::After(backoff) => {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
    // Publications still unacknowledged are republished by the next run.
    drop(client);
}

/// When to run the next round.
enum Again {
    /// There is more to publish, or the stream moved under this instance.
    Now,
    /// At the next wake-up or poll.
    Later,
    /// At the next wake-up, or after this short wait: events are held back by a transaction
    /// that may end without waking this instance (another instance's write, a failed one, an
    /// autovacuum ANALYZE), or another instance holds the publisher lock and its batch may have
    /// missed this instance's latest events.
    Soon(Duration),
    /// After a failure: no sooner than this (a wake-up does not cut it short).
    After(Duration),
}

struct Relay {
    pool: PgPool,
    settings: EventsSettings,
    round_limit: Duration,
    /// Consecutive failed rounds, for the backoff and to log a failure once, not every round.
    failures: u32,
    /// The last round found the stream moved and the next one ran at once: do not spin if
    /// something else keeps publishing into it.
    retried_stale: bool,
    /// The next wait of [`Again::Soon`].
    soon: Duration,
    /// The event JetStream last refused for what it is, and in how many rounds.
    refused: Option<(String, u32)>,
}

impl Relay {
    async fn round(&mut self, publisher: &mut Publisher) -> Again {
        let limit = self.round_limit;
        let mut work = Box::pin(self.try_round(publisher));
        let finished = tokio::select! {
            result = &mut work => Some(result),
            _ = tokio::time::sleep(limit) => None,
        };
        let result = match finished {
            Some(result) => result,
            None => {
                // Condemn the connection first, then drop the work that holds it (its
                // transaction ends with the connection; what was published and not recorded is
                // published again, and dropped by JetStream).
                crate::db::connection_lost();
                Err(anyhow::anyhow!(
                    "a publishing round did not finish within {} ms; its database connection is closed",
                    limit.as_millis()
                ))
            }
        };
        drop(work);
        match result {
            Ok(again) => {
                if self.failures > 0 {
                    tracing::info!("events are being published again");
                }
                self.failures = 0;
                again
            }
            Err(e) => {
                self.failures += 1;
                // The first failure in a row, then one in a hundred.
                if self.failures % 100 == 1 {
                    tracing::warn!(error = %format!("{e:#}"), failures = self.failures, "publishing events failed; retrying");
                }
                let backoff = self
                    .settings
                    .poll_interval
                    .saturating_mul(1 << self.failures.min(6))
                    .min(MAX_BACKOFF);
                Again::After(backoff)
            }
        }
    }

    /// The event to set aside now with its reason: JetStream refused the first event of the
    /// batch it did not acknowledge for what it is, in [`UNDELIVERABLE_AFTER`] rounds in a row.
    fn undeliverable<'b>(
        &mut self,
        batch: &'b store::Batch,
        published: &publish::Published,
    ) -> Option<(&'b store::Pending, String)> {
        let reason = published.failure.as_ref()?.refused.clone()?;
        let event = batch.events.get(published.through)?;
        let rounds = match &self.refused {
            Some((id, n)) if *id == event.id => n + 1,
            _ => 1,
        };
        self.refused = Some((event.id.clone(), rounds));
        (rounds >= UNDELIVERABLE_AFTER).then_some((event, reason))
    }

    /// A short wait, longer each time in a row that nothing could be published.
    fn soon(&mut self) -> Again {
        let wait = self.soon;
        self.soon = (self.soon * 2).min(self.settings.poll_interval);
        Again::Soon(wait.min(self.settings.poll_interval))
    }

    async fn try_round(&mut self, publisher: &mut Publisher) -> anyhow::Result<Again> {
        let Some(mut tx) = store::begin_round(&self.pool).await? else {
            // Another instance publishes.
            return Ok(self.soon());
        };
        let Some(batch) = store::next_batch(&mut tx, self.settings.batch_size).await? else {
            tx.rollback().await?;
            self.soon = SOON_FIRST;
            return Ok(Again::Later);
        };
        if batch.events.is_empty() {
            tx.rollback().await?;
            return Ok(self.soon());
        }
        let published = publisher.publish(&batch).await;
        let set_aside = self.undeliverable(&batch, &published);
        if published.through > 0 || set_aside.is_some() {
            let moved = async {
                if published.through > 0 {
                    let to = batch.events[published.through - 1].position;
                    store::advance(&mut tx, to).await?;
                }
                if let Some((event, reason)) = &set_aside {
                    store::set_aside(&mut tx, event, reason).await?;
                }
                tx.commit().await
            }
            .await;
            if let Err(e) = moved {
                // Published but not recorded: the next round republishes them (duplicates
                // JetStream drops, or found in the stream after its duplicate window).
                return Err(anyhow::Error::new(e).context("recording the relay position failed"));
            }
            let fresh = published.through - published.duplicates;
            crate::metrics::events_published(fresh as u64, published.duplicates as u64);
            for lag in &published.lags {
                crate::metrics::observe_publication_lag(*lag);
            }
        } else {
            tx.rollback().await?;
        }
        if let Some((event, reason)) = set_aside {
            // The position is now on an event the stream does not hold: the next round reads the
            // stream's tail (`store::next_batch` gives no event to expect there).
            self.refused = None;
            crate::metrics::event_set_aside();
            // Ids, type and sizes only: the body is personal data.
            tracing::error!(
                event = %event.id,
                kind = %event.kind,
                bytes = event.body.len(),
                reason = %reason,
                "JetStream refuses this event; set aside as undeliverable (event_undeliverable), publishing the events after it"
            );
            return Ok(Again::Now);
        }
        let stale = published.failure.as_ref().is_some_and(|f| f.stale_tail);
        let retry_stale = stale && !self.retried_stale;
        self.retried_stale = stale;
        if published.through > 0 {
            self.soon = SOON_FIRST;
        }
        match published.failure {
            None if batch.events.len() as i64 == self.settings.batch_size => Ok(Again::Now),
            None if batch.held_back => Ok(self.soon()),
            None => Ok(Again::Later),
            Some(failure) if retry_stale => {
                tracing::debug!(error = %format!("{:#}", failure.error), "the stream moved; reading it again");
                Ok(Again::Now)
            }
            Some(failure) => Err(failure.error),
        }
    }
}
