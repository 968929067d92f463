//! The database's figures for `/metrics` (the publication backlog, the feed horizon's lag, the
//! events set aside), read at most once per [`MAX_AGE`] however often and by however many
//! scrapers `/metrics` is called: counting the backlog reads up to a million index entries.
//! A scrape that finds the figures older than that refreshes them, one scrape at a time; the
//! others meanwhile get the previous figures. Ages grow between refreshes as they would have
//! (the time since the refresh is added), so an age never goes backwards while nothing changes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::Figures;

/// How old the figures may be.
pub const MAX_AGE: Duration = Duration::from_secs(2);

/// A refresh that takes longer is given up (the scrape goes on without the figures); the
/// statements are bounded by `statement_timeout` as well, but a stalled server enforces nothing.
const REFRESH_LIMIT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct FiguresCache {
    last: Mutex<Option<(Instant, Figures)>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl FiguresCache {
    /// The figures as of now: cached when younger than [`MAX_AGE`], else read again. `None`
    /// when the database did not answer (the gauges are then left out, not shown stale).
    pub async fn get(&self, pool: &PgPool, publishing: bool) -> Option<Figures> {
        if let Some(fresh) = self.cached(MAX_AGE) {
            return Some(fresh);
        }
        let Ok(_refreshing) = self.refreshing.try_lock() else {
            // Another scrape is reading them: the previous figures, however old.
            return self.cached(Duration::MAX);
        };
        // It may have refreshed them while this one waited for the lock.
        if let Some(fresh) = self.cached(MAX_AGE) {
            return Some(fresh);
        }
        let read = tokio::time::timeout(REFRESH_LIMIT, super::read(pool, publishing)).await;
        let mut last = self
            .last
            .lock()
            .expect("the figures' lock is never poisoned");
        match read {
            Ok(Ok(figures)) => {
                *last = Some((Instant::now(), figures));
                Some(figures)
            }
            _ => {
                *last = None;
                None
            }
        }
    }

    /// The cached figures if younger than `max_age`, their ages moved on to now.
    fn cached(&self, max_age: Duration) -> Option<Figures> {
        let last = self
            .last
            .lock()
            .expect("the figures' lock is never poisoned");
        let (at, figures) = (*last)?;
        let elapsed = at.elapsed();
        (elapsed < max_age).then(|| aged(figures, elapsed.as_secs_f64()))
    }
}

/// `figures` as they would read `seconds` later, if nothing was published meanwhile: an age that
/// was counting goes on counting.
fn aged(mut figures: Figures, seconds: f64) -> Figures {
    if let Some(backlog) = figures.backlog.as_mut() {
        if backlog.unpublished > 0 {
            backlog.oldest_age_seconds += seconds;
        }
    }
    if figures.horizon.held_back_seconds > 0.0 {
        figures.horizon.held_back_seconds += seconds;
    }
    figures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::relay::figures::{Backlog, Horizon};

    fn figures(unpublished: i64, oldest: f64, held_back: f64) -> Figures {
        Figures {
            backlog: Some(Backlog {
                unpublished,
                oldest_age_seconds: oldest,
            }),
            horizon: Horizon {
                transactions: 1,
                held_back_seconds: held_back,
            },
            undeliverable: Some(0),
        }
    }

    #[test]
    fn ages_that_count_go_on_counting_and_zeros_stay_zero() {
        let later = aged(figures(3, 10.0, 2.0), 1.5);
        assert_eq!(later.backlog.unwrap().oldest_age_seconds, 11.5);
        assert_eq!(later.backlog.unwrap().unpublished, 3);
        assert_eq!(later.horizon.held_back_seconds, 3.5);
        let idle = aged(figures(0, 0.0, 0.0), 1.5);
        assert_eq!(idle.backlog.unwrap().oldest_age_seconds, 0.0);
        assert_eq!(idle.horizon.held_back_seconds, 0.0);
    }
}
