//! Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
//! Jitter"): attempt n waits a uniformly random time in `[0, min(max, initial × 2ⁿ⁻¹)]`, so a
//! fleet of connectors cut off together does not reconnect together.
//!
//! The attempt count resets only after a healthy connection: one that stayed up for `reset_after`
//! and delivered at least one trade. A socket that the server accepts and then drops at once, or
//! that never carries data, still backs off; one that streamed trades is reconnected at once (within
//! the first retry's jitter), because every second away is trades that arrive late via REST.

use rand::Rng;
use std::time::Duration;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The ceiling of the first retry's delay.
    pub initial: Duration,
    /// The largest ceiling.
    pub max: Duration,
    /// A connection that stayed up this long and delivered trades resets the attempt count.
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(1),
        }
    }
}

/// The retry state.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// No failures yet.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff { config, attempt: 0 }
    }

    /// Failures in a row so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The ceiling of the delay before retry number `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
        self.config
            .initial
            .saturating_mul(factor)
            .min(self.config.max)
    }

    /// Records a failure and returns how long to wait, drawn from `rng`.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = self.ceiling(self.attempt);
        let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rng.random_range(0..=micros))
    }

    /// Records that a connection ended after being up for `uptime`, having delivered trades or
    /// not; resets the count if that makes it a healthy connection.
    pub fn connection_ended(&mut self, uptime: Duration, delivered_trades: bool) {
        if delivered_trades && uptime >= self.config.reset_after {
            self.attempt = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn config() -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            reset_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn ceilings_double_up_to_the_max() {
        let b = Backoff::new(config());
        let ms: Vec<u128> = (1..=7).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn delays_are_full_jitter_within_the_ceiling() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut b = Backoff::new(config());
        let mut seen = Vec::new();
        for n in 1..=10 {
            let d = b.next_delay(&mut rng);
            assert!(d <= b.ceiling(n), "attempt {n}: {d:?}");
            seen.push(d);
        }
        assert_eq!(b.attempt(), 10);
        // Full jitter: the late delays (ceiling 2 s) spread over the range, not bunched at it.
        let late: Vec<_> = seen[5..].to_vec();
        assert!(
            late.iter().any(|d| *d < Duration::from_millis(1500)),
            "{late:?}"
        );
    }

    #[test]
    fn only_a_healthy_connection_resets_the_count() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut b = Backoff::new(config());
        b.next_delay(&mut rng);
        b.next_delay(&mut rng);
        b.connection_ended(Duration::from_secs(1), true);
        assert_eq!(b.attempt(), 2, "up too briefly");
        b.connection_ended(Duration::from_secs(60), false);
        assert_eq!(b.attempt(), 2, "up, but no trade ever came");
        b.connection_ended(Duration::from_secs(30), true);
        assert_eq!(b.attempt(), 0);
    }
}
