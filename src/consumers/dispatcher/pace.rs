//! Yielding to writes (docs/webhooks.md#yielding-to-writes): while this instance commits
//! writes at `webhooks.busy_writes_per_second` or more, the senders start at most
//! `webhooks.busy_deliveries_per_second` attempts a second and the dispatcher makes its rounds
//! every `webhooks.poll_interval` instead of after each write. The backlog a burst of writes
//! asks for is then worked off mostly after the burst, instead of taking the CPU (ours, the
//! database's, the receivers') that the writes need during it.
//!
//! Why a budget rather than a lower scheduling priority for the senders' thread: the work of a
//! delivery is only partly ours — the claim and the recording of its outcome run in PostgreSQL
//! backends, and the attempt in the receiver — and a niced thread slows none of that; nor does
//! the scheduler give a niced thread any floor one can state, while the budget is one: under
//! writes that never stop, each instance still starts `busy_deliveries_per_second` attempts a
//! second (when that many are due and the database and the endpoints keep up).
//!
//! The signal is this instance's own committed writes (counted where a write wakes the
//! dispatcher), read by the two loops as they go: no timer of its own.

use std::time::{Duration, Instant};

/// Writes are counted over windows of this length. A second, not less: writers that a loaded
/// machine stalls catch up in a burst, and a moderate rate (a quarter of the threshold, say)
/// judged over a short window then looks busy (a 250 ms window put the commit-to-first-attempt
/// p99 of a paced 50 writes/s run at 3.5 s; docs/performance.md#webhook-fan-out).
const WINDOW: Duration = Duration::from_secs(1);

/// Whether this instance is busy with writes: the rate of the last full window, or the current
/// window already past the rate.
pub struct WriteRate {
    threshold: f64,
    start: Instant,
    at_start: u64,
    last: f64,
}

impl WriteRate {
    /// `threshold`: writes per second at which the instance counts as busy; 0: always.
    pub fn new(threshold: u32, writes: u64, now: Instant) -> Self {
        Self {
            threshold: f64::from(threshold),
            start: now,
            at_start: writes,
            last: 0.0,
        }
    }

    /// Whether writes are busy at `now`, `writes` being the count of writes committed so far.
    pub fn busy(&mut self, writes: u64, now: Instant) -> bool {
        if self.threshold == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.start);
        let in_window = writes.saturating_sub(self.at_start) as f64;
        if elapsed >= WINDOW {
            self.last = in_window / elapsed.as_secs_f64();
            self.start = now;
            self.at_start = writes;
            return self.last >= self.threshold;
        }
        self.last >= self.threshold || in_window >= self.threshold * WINDOW.as_secs_f64()
    }
}

/// The senders' budget while busy: a token bucket of `rate` attempts a second, holding at most
/// `burst` (a claim's batch). Not busy, it is full and claims are bounded only by free slots.
pub struct Budget {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Budget {
    /// `rate` attempts a second (at least 1), in claims of up to `batch`.
    pub fn new(rate: u32, batch: usize, now: Instant) -> Self {
        let rate = f64::from(rate.max(1));
        let burst = (batch.max(1) as f64).min(rate);
        Self {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// How many of `wanted` attempts may be claimed at `now`: all of them when not `busy`;
    /// else a batch (`wanted` up to a burst) once the budget holds one, and none before, so
    /// that claims stay batches rather than one delivery each.
    pub fn allow(&mut self, wanted: usize, busy: bool, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        if !busy {
            self.tokens = self.burst;
            return wanted;
        }
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        let batch = (wanted as f64).min(self.burst);
        if self.tokens >= batch {
            batch as usize
        } else {
            0
        }
    }

    /// `n` attempts claimed.
    pub fn spend(&mut self, n: usize) {
        self.tokens = (self.tokens - n as f64).max(0.0);
    }

    /// How long until a claim of `wanted` (up to a burst) is allowed.
    pub fn wait_for(&self, wanted: usize) -> Duration {
        let target = (wanted.max(1) as f64).min(self.burst);
        Duration::from_secs_f64(((target - self.tokens).max(0.0) / self.rate).min(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn busy_from_the_rate_of_the_last_window_or_the_current_one_already_past_it() {
        let t0 = Instant::now();
        let mut rate = WriteRate::new(100, 0, t0);
        // 100/s is 100 in a window: 99 is not yet, 100 is.
        assert!(!rate.busy(99, t0 + 400 * MS));
        assert!(rate.busy(100, t0 + 400 * MS));
        // The window closes at 120 writes in 1.2 s (100/s): busy for the next window too.
        assert!(rate.busy(120, t0 + 1200 * MS));
        assert!(rate.busy(120, t0 + 1600 * MS));
        // A quiet window: no longer.
        assert!(!rate.busy(121, t0 + 2400 * MS));
        assert!(!rate.busy(121, t0 + 2600 * MS));
        // A quarter of the rate, caught up in a burst after a stall: 25 at once is not busy.
        let mut rate = WriteRate::new(100, 0, t0);
        assert!(!rate.busy(25, t0 + 1100 * MS));
        assert!(!rate.busy(50, t0 + 1200 * MS));
        // 0: always busy, writes or not.
        assert!(WriteRate::new(0, 0, t0).busy(0, t0 + 10_000 * MS));
    }

    #[test]
    fn while_busy_claims_take_at_most_the_rate_in_batches_and_never_nothing_for_ever() {
        let t0 = Instant::now();
        let mut budget = Budget::new(200, 16, t0);
        // Not busy: every free slot.
        assert_eq!(budget.allow(64, false, t0), 64);
        // Busy: a batch, then nothing until tokens come back.
        assert_eq!(budget.allow(64, true, t0), 16);
        budget.spend(16);
        assert_eq!(budget.allow(64, true, t0), 0);
        let wait = budget.wait_for(64);
        assert!(wait > 79 * MS && wait < 81 * MS, "{wait:?}");
        // Half a batch's tokens: still none (no claims of one delivery each)...
        assert_eq!(budget.allow(64, true, t0 + 40 * MS), 0);
        // ...but fewer free slots than a batch take what they can.
        assert_eq!(budget.allow(5, true, t0 + 40 * MS), 5);
        budget.spend(5);
        // Over a busy second, 200 attempts at most, in batches of 16, whatever the slots.
        let mut claimed = Vec::new();
        let start = t0 + 40 * MS;
        for step in 1..=1000 {
            let n = budget.allow(64, true, start + step * MS);
            budget.spend(n);
            if n > 0 {
                claimed.push(n);
            }
        }
        let total: usize = claimed.iter().sum();
        assert!((176..=200).contains(&total), "{claimed:?}");
        assert!(claimed.iter().all(|&n| n == 16), "{claimed:?}");
        // A budget below a batch claims one at a time.
        let mut slow = Budget::new(1, 16, t0);
        assert_eq!(slow.allow(64, true, t0), 1);
        slow.spend(1);
        assert_eq!(slow.allow(64, true, t0 + 999 * MS), 0);
        assert_eq!(slow.allow(64, true, t0 + 1001 * MS), 1);
    }
}
