//! The state the service's tasks share about its dependencies: who sets what (the Kafka probe,
//! the Redis subscriber, the health monitor's `PING`, the consume loop's heartbeat) and what
//! health reads from it. A leaf module: it uses no other module of the crate, so the tasks that
//! report and the health service that reads depend on it and not on each other.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

/// The consume loop goes round at least every 50 ms; one that has not for this long is stuck.
pub const LOOP_STALL: Duration = Duration::from_secs(10);

/// Reachability of the service's dependencies, updated by the tasks that use them.
#[derive(Debug, Default)]
pub struct DependencyStatus {
    kafka: AtomicBool,
    redis: AtomicBool,
    subscriber: AtomicBool,
    /// When the consume loop last went round, ms since the epoch (0: not yet).
    consume_loop: AtomicI64,
}

impl DependencyStatus {
    /// The consume loop went round at `now`.
    pub fn consume_loop_beat(&self, now: candles_core::Micros) {
        self.consume_loop.store(now.as_millis(), Ordering::Relaxed);
    }

    /// Whether the consume loop went round within [`LOOP_STALL`] of `now`.
    pub fn consume_loop_alive(&self, now: candles_core::Micros) -> bool {
        let beat = self.consume_loop.load(Ordering::Relaxed);
        beat > 0 && now.as_millis() - beat <= LOOP_STALL.as_millis() as i64
    }

    /// Kafka answered (or stopped answering) a metadata request.
    pub fn set_kafka(&self, up: bool) {
        self.kafka.store(up, Ordering::Relaxed);
    }

    /// Redis answered (or stopped answering) a `PING`.
    pub fn set_redis(&self, up: bool) {
        self.redis.store(up, Ordering::Relaxed);
    }

    /// The Redis subscriber is (or is no longer) subscribed.
    pub fn set_subscriber(&self, up: bool) {
        self.subscriber.store(up, Ordering::Relaxed);
    }

    /// Kafka reachable.
    pub fn kafka(&self) -> bool {
        self.kafka.load(Ordering::Relaxed)
    }

    /// Redis reachable and subscribed.
    pub fn redis(&self) -> bool {
        self.redis.load(Ordering::Relaxed) && self.subscriber.load(Ordering::Relaxed)
    }

    /// Everything the service needs is reachable, and the consume loop is alive.
    pub fn serving(&self) -> bool {
        self.kafka() && self.redis() && self.consume_loop_alive(candles_core::Micros::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candles_core::Micros;

    #[test]
    fn a_consume_loop_that_stopped_going_round_is_not_serving() {
        let status = DependencyStatus::default();
        status.set_kafka(true);
        status.set_redis(true);
        status.set_subscriber(true);
        assert!(!status.serving(), "not before the loop has started");
        let now = Micros::now();
        status.consume_loop_beat(now);
        assert!(status.serving());
        let stalled = Micros(now.0 + LOOP_STALL.as_micros() as i64 + 1_000);
        assert!(status.consume_loop_alive(Micros(now.0 + 1_000_000)));
        assert!(!status.consume_loop_alive(stalled));
    }
}
