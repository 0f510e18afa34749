//! The one doubling delay used by every retry loop that talks to a dependency of ours (Redis,
//! Kafka, an exchange's REST API): wait `initial`, then twice that, up to `max`; start over after a
//! success. Pure: it only counts; the caller sleeps.
//!
//! The connectors' reconnects to an exchange use a jittered backoff of their own
//! (`candles_connector::backoff`), because a fleet of them cut off together must not come back
//! together; a retry against our own Redis or Kafka has no such fleet.

use std::time::Duration;

/// A delay that doubles on every failure, up to a ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doubling {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Doubling {
    /// Starts at `initial`; never waits longer than `max`.
    pub fn new(initial: Duration, max: Duration) -> Doubling {
        let initial = initial.min(max);
        Doubling {
            initial,
            max,
            current: initial,
        }
    }

    /// The delay to wait now; the next call returns twice that (up to the ceiling).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        delay
    }

    /// The delay the next [`Doubling::next_delay`] will return, without counting a failure.
    pub fn peek(&self) -> Duration {
        self.current
    }

    /// After a success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_up_to_the_ceiling_and_starts_over_after_a_reset() {
        let mut d = Doubling::new(ms(100), ms(500));
        let waits: Vec<Duration> = (0..5).map(|_| d.next_delay()).collect();
        assert_eq!(waits, vec![ms(100), ms(200), ms(400), ms(500), ms(500)]);
        d.reset();
        assert_eq!(d.peek(), ms(100));
        assert_eq!(d.next_delay(), ms(100));
    }

    #[test]
    fn an_initial_above_the_ceiling_is_the_ceiling() {
        let mut d = Doubling::new(ms(900), ms(300));
        assert_eq!(d.next_delay(), ms(300));
        assert_eq!(d.next_delay(), ms(300));
    }
}
