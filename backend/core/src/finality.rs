//! When windows become final: at their end plus the grace (DESIGN.md "Candles").
//!
//! Every window of every series ends on the same epoch-aligned grid, so one instant is due next
//! for all of them: the end of the window containing `now - grace`, plus the grace. Pure: the
//! caller passes the clock in and sleeps; [`Finality`] only says until when.
//!
//! A loop on tokio uses it like this (`--embedded` can; the service's consume loop starts a
//! watermark round instead of advancing at once):
//!
//! ```text
//! let mut finality = Finality::new(engine_config, Micros::now());
//! loop {
//!     tokio::select! {
//!         _ = tokio::time::sleep(finality.wait(Micros::now())) => {
//!             // `None`: the timer woke a little early; the loop sleeps the rest.
//!             if finality.reached(Micros::now()).is_some() {
//!                 engine.advance(Micros::now(), &mut finals); // every window due by now
//!             }
//!         }
//!         Some(trade) = trades.recv() => { engine.apply(&trade); }
//!     }
//! }
//! ```

use crate::engine::EngineConfig;
use crate::time::Micros;

/// The first instant strictly after `now` at which a window becomes final (its end plus the
/// grace).
pub fn next_final(config: &EngineConfig, now: Micros) -> Micros {
    let start = config
        .interval
        .window_start(Micros(now.0.saturating_sub(config.grace.0)));
    config.interval.window_end(start).plus(config.grace)
}

/// How long from `now` until `at`: zero when `at` has passed.
pub fn wait(now: Micros, at: Micros) -> std::time::Duration {
    std::time::Duration::from_micros(at.0.saturating_sub(now.0).max(0).unsigned_abs())
}

/// The next finalization instant of one engine configuration, moved on as the clock passes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finality {
    config: EngineConfig,
    next: Micros,
}

impl Finality {
    /// The finalization instants of `config`, the first one after `now`.
    pub fn new(config: EngineConfig, now: Micros) -> Finality {
        Finality {
            config,
            next: next_final(&config, now),
        }
    }

    /// The next instant at which windows become final.
    pub fn next(&self) -> Micros {
        self.next
    }

    /// How long from `now` until [`Finality::next`] (zero when it has passed).
    pub fn wait(&self, now: Micros) -> std::time::Duration {
        wait(now, self.next)
    }

    /// The clock reads `now`: when the due instant has been reached, returns it and moves on to
    /// the first one after `now`; `None` when it has not (a timer woke early: sleep again).
    pub fn reached(&mut self, now: Micros) -> Option<Micros> {
        if now < self.next {
            return None;
        }
        let due = self.next;
        self.next = next_final(&self.config, now);
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ClockMode;
    use crate::time::{Duration, Interval};

    fn config() -> EngineConfig {
        EngineConfig {
            interval: Interval::seconds(5),
            grace: Duration::from_millis(1_500),
            clock: ClockMode::Wall,
        }
    }

    #[test]
    fn windows_become_final_at_their_end_plus_the_grace() {
        let engine = config();
        let at = |ms| next_final(&engine, Micros::from_millis(ms));
        assert_eq!(
            at(0),
            Micros::from_millis(1_500),
            "window [-5 s, 0) + grace"
        );
        assert_eq!(at(1_499), Micros::from_millis(1_500));
        assert_eq!(at(1_500), Micros::from_millis(6_500), "strictly after now");
        assert_eq!(at(6_000), Micros::from_millis(6_500));
        assert_eq!(at(-1), Micros::from_millis(1_500));
    }

    #[test]
    fn the_due_instant_is_reached_only_once_the_clock_passes_it() {
        let mut f = Finality::new(config(), Micros::from_millis(2_000));
        assert_eq!(f.next(), Micros::from_millis(6_500));
        assert_eq!(
            f.wait(Micros::from_millis(6_000)),
            std::time::Duration::from_millis(500)
        );
        assert_eq!(f.reached(Micros::from_millis(6_499)), None, "woke early");
        assert_eq!(f.next(), Micros::from_millis(6_500), "still due");
        assert_eq!(
            f.reached(Micros::from_millis(6_501)),
            Some(Micros::from_millis(6_500))
        );
        assert_eq!(f.next(), Micros::from_millis(11_500), "the next window");
        assert_eq!(
            f.wait(Micros::from_millis(12_000)),
            std::time::Duration::ZERO,
            "passed"
        );
        assert_eq!(
            f.reached(Micros::from_millis(30_000)),
            Some(Micros::from_millis(11_500)),
            "late: the missed instant once, then the first after now"
        );
        assert_eq!(f.next(), Micros::from_millis(31_500));
    }
}
