//! The live-update throttle: at most one round of in-progress candles per update interval,
//! leading and trailing edge (DESIGN.md "Candles").
//!
//! The first change after a quiet interval is due at once (leading edge); a change within the
//! interval after the last round is due when that interval has passed (trailing edge), so the
//! latest state always goes out and never more often than once per interval. Pure: the caller
//! passes the clock in and sleeps until [`Throttle::due`].
//!
//! A loop on tokio uses it like this (the service's consume loop does; `--embedded` can):
//!
//! ```text
//! let mut throttle = Throttle::new(update_interval);
//! loop {
//!     let due = throttle.due();
//!     let live = async move {
//!         match due {
//!             Some(at) => tokio::time::sleep_until(at.into()).await,
//!             None => std::future::pending().await,
//!         }
//!     };
//!     tokio::select! {
//!         Some(trade) = trades.recv() => {
//!             if engine.apply(&trade) == Outcome::Applied {
//!                 throttle.changed(std::time::Instant::now());
//!             }
//!         }
//!         _ = live => {
//!             throttle.sent(std::time::Instant::now());
//!             engine.take_updates(&mut updates); // and send them
//!         }
//!     }
//! }
//! ```

use std::time::{Duration, Instant};

/// When the next round of live updates is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    every: Duration,
    /// When the last round went out (`None`: never).
    last_sent: Option<Instant>,
    /// When the next round is due (`None`: nothing changed since the last one).
    due: Option<Instant>,
}

impl Throttle {
    /// At most one round per `every`.
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last_sent: None,
            due: None,
        }
    }

    /// Something changed at `now`: returns when the next round is due (at once after a quiet
    /// interval, else one interval after the last round). Later changes before that round do not
    /// move it.
    pub fn changed(&mut self, now: Instant) -> Instant {
        *self.due.get_or_insert_with(|| match self.last_sent {
            Some(last) => (last + self.every).max(now),
            None => now,
        })
    }

    /// When the next round is due; `None` while nothing changed since the last one.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Whether a round is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.due.is_some_and(|due| due <= now)
    }

    /// A round went out at `now` (every change until then is in it).
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        self.due = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_first_change_after_a_quiet_interval_goes_out_at_once() {
        let t0 = Instant::now();
        let mut t = Throttle::new(ms(100));
        assert_eq!(t.due(), None, "nothing changed");
        assert_eq!(t.changed(t0), t0, "leading edge");
        assert!(t.is_due(t0));
        t.sent(t0);
        assert_eq!(t.due(), None);
        assert_eq!(t.changed(t0 + ms(250)), t0 + ms(250), "quiet for longer");
    }

    #[test]
    fn changes_within_the_interval_wait_for_it_to_pass() {
        let t0 = Instant::now();
        let mut t = Throttle::new(ms(100));
        t.changed(t0);
        t.sent(t0);
        assert_eq!(t.changed(t0 + ms(10)), t0 + ms(100), "trailing edge");
        assert_eq!(t.changed(t0 + ms(60)), t0 + ms(100), "same round");
        assert!(!t.is_due(t0 + ms(99)));
        assert!(t.is_due(t0 + ms(100)));
        t.sent(t0 + ms(100));
        assert_eq!(t.changed(t0 + ms(120)), t0 + ms(200));
    }
}
