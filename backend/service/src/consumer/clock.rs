//! A partition's finalization clock: the wall clock held back to what the consumer has read
//! (confirmed by high-watermark answers), or the event clock; and the outage rule. Pure: the
//! Kafka queries that feed it are in `watermarks.rs`.
//!
//! With the wall clock, a window may only be finalized once every trade produced before its end
//! plus grace has been read. Once the consumer has read up to the high watermark a query
//! returned, everything produced before that query started has been read, and the partition's
//! clock may move to that instant (never beyond the wall clock).

use candles_core::Micros;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Watermark answers kept per partition while the consumer reads up to them.
pub const MAX_PENDING_ANSWERS: usize = 8;

/// The clock one partition's engine finalizes by.
#[derive(Debug)]
pub struct PartitionClock {
    /// Everything produced to the partition before this instant has been read: the partition's
    /// wall clock may not run past it. `None` until first confirmed.
    confirmed_at: Option<Micros>,
    /// Watermark answers (asked at, high watermark) awaiting `position >= high`, oldest first.
    confirming: VecDeque<(Micros, i64)>,
    /// The event clock needs no confirmation.
    event_clock: bool,
}

impl PartitionClock {
    /// The wall clock held back to what was read, or (`event_clock`) the engine's event clock,
    /// which finalizes by trade time: replaying old trades is what it is for.
    pub fn new(event_clock: bool) -> PartitionClock {
        PartitionClock {
            confirmed_at: None,
            confirming: VecDeque::new(),
            event_clock,
        }
    }

    /// Whether this is the event clock (no watermark queries needed).
    pub fn is_event(&self) -> bool {
        self.event_clock
    }

    /// Whether the engine may finalize at all (it has read everything up to some recent instant).
    pub fn caught_up(&self) -> bool {
        self.event_clock || self.confirmed_at.is_some()
    }

    /// Whether watermark answers wait for the consumer to read up to them.
    pub fn confirming(&self) -> bool {
        !self.confirming.is_empty()
    }

    /// The clock to finalize by at wall-clock `now`: the wall clock, held back to what has been
    /// read; `None` before anything is confirmed.
    pub fn clock(&self, now: Micros) -> Option<Micros> {
        if self.event_clock {
            return Some(now);
        }
        self.confirmed_at.map(|c| c.min(now))
    }

    /// Records a watermark answer `(asked_at, high)` given the consumer's `position`; `true`
    /// when the clock moved.
    pub fn on_watermark(&mut self, asked_at: Micros, high: i64, position: Option<i64>) -> bool {
        if high <= 0 || position.is_some_and(|p| p >= high) {
            return self.confirm(asked_at);
        }
        // Answers are kept in the order they were asked; each is confirmed once read past.
        if self.confirming.back().is_none_or(|&(t, _)| asked_at > t) {
            if self.confirming.len() == MAX_PENDING_ANSWERS {
                // Keep the oldest (satisfied first) and the newest; drop one in between.
                self.confirming.remove(MAX_PENDING_ANSWERS / 2);
            }
            self.confirming.push_back((asked_at, high));
        }
        false
    }

    /// The consumer reached `position`: confirms the watermark answers it satisfies; `true` when
    /// the clock moved.
    pub fn on_position(&mut self, position: i64) -> bool {
        let mut moved = false;
        while let Some(&(asked_at, high)) = self.confirming.front() {
            if position < high {
                break;
            }
            self.confirming.pop_front();
            moved |= self.confirm(asked_at);
        }
        moved
    }

    fn confirm(&mut self, asked_at: Micros) -> bool {
        if self.confirmed_at.is_none_or(|c| asked_at > c) {
            self.confirmed_at = Some(asked_at);
            return true;
        }
        false
    }
}

/// Kafka was unreachable. Trades that were on their way meanwhile (buffered in the connectors'
/// producers) reach the topic only after it is back, later than the grace allows for normal
/// transit; so the time Kafka was away does not count: partitions' clocks stay where they were
/// until Kafka has answered for a whole grace period again, which gives the delayed trades the
/// same grace as any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// No answer yet.
    Away,
    /// Answering again since then.
    BackSince(Instant),
}

impl Outage {
    /// The state after a watermark round that did (`answered`) or did not reach Kafka; `None`
    /// when the outage is over and answers confirm again.
    pub fn after_round(
        this: Option<Outage>,
        answered: bool,
        now: Instant,
        grace: Duration,
    ) -> Option<Outage> {
        match (this, answered) {
            (_, false) => Some(Outage::Away),
            (None, true) => None,
            (Some(Outage::Away), true) => Some(Outage::BackSince(now)),
            (Some(Outage::BackSince(since)), true) if now.duration_since(since) < grace => {
                Some(Outage::BackSince(since))
            }
            (Some(Outage::BackSince(_)), true) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_runs_only_as_far_as_the_consumer_has_read() {
        let mut s = PartitionClock::new(false);
        let now = Micros(10_000_000);
        assert_eq!(s.clock(now), None, "nothing confirmed: no finalization");
        s.on_watermark(Micros(5_000_000), 100, Some(40));
        assert_eq!(s.clock(now), None, "behind the watermark");
        s.on_watermark(Micros(6_000_000), 120, Some(40));
        s.on_position(100);
        assert_eq!(
            s.clock(now),
            Some(Micros(5_000_000)),
            "read up to what existed at 5 s"
        );
        s.on_watermark(Micros(7_000_000), 120, Some(120));
        assert_eq!(s.clock(now), Some(Micros(7_000_000)));
        assert_eq!(
            s.clock(Micros(6_500_000)),
            Some(Micros(6_500_000)),
            "never beyond the wall clock"
        );
        s.on_watermark(Micros(8_000_000), 0, None);
        assert_eq!(
            s.clock(now),
            Some(Micros(8_000_000)),
            "an empty partition is read"
        );
    }

    #[test]
    fn every_watermark_answer_is_confirmed_once_read_past() {
        let mut s = PartitionClock::new(false);
        assert!(!s.on_watermark(Micros(1_000), 10, Some(5)));
        assert!(!s.on_watermark(Micros(2_000), 20, Some(5)));
        assert!(
            !s.on_watermark(Micros(1_500), 15, Some(5)),
            "older than the newest: dropped"
        );
        assert!(s.on_position(12), "the first answer is read past");
        assert_eq!(s.clock(Micros(9_000)), Some(Micros(1_000)));
        assert!(!s.on_position(19));
        assert!(s.on_position(20), "so is the second, kept meanwhile");
        assert_eq!(s.clock(Micros(9_000)), Some(Micros(2_000)));
        for i in 0..20 {
            s.on_watermark(Micros(3_000 + i), 100 + i, Some(20));
        }
        assert_eq!(s.confirming.len(), MAX_PENDING_ANSWERS, "bounded");
        assert!(s.on_position(1_000));
        assert_eq!(
            s.clock(Micros(9_000)),
            Some(Micros(3_019)),
            "the newest answer is kept"
        );
    }

    #[test]
    fn the_event_clock_needs_no_confirmation() {
        let s = PartitionClock::new(true);
        assert!(s.caught_up());
        assert_eq!(s.clock(Micros(42)), Some(Micros(42)));
    }

    #[test]
    fn after_an_outage_answers_confirm_only_once_kafka_has_been_back_for_the_grace() {
        let grace = Duration::from_millis(1_500);
        let t0 = Instant::now();
        let after = |o, answered, ms| {
            Outage::after_round(o, answered, t0 + Duration::from_millis(ms), grace)
        };
        assert_eq!(after(None, true, 0), None, "normal operation");
        let away = after(None, false, 0);
        assert_eq!(away, Some(Outage::Away));
        assert_eq!(after(away, false, 500), Some(Outage::Away), "still away");
        let back = after(away, true, 2_000);
        assert_eq!(
            back,
            Some(Outage::BackSince(t0 + Duration::from_millis(2_000)))
        );
        assert_eq!(
            after(back, true, 3_499),
            back,
            "back for less than the grace"
        );
        assert_eq!(
            after(back, false, 3_000),
            Some(Outage::Away),
            "away again: start over"
        );
        assert_eq!(
            after(back, true, 3_500),
            None,
            "back for the grace: confirm again"
        );
    }
}
