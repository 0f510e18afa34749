//! One assigned partition: its engine, its offsets and its clock, moved in one step per record
//! (pure: no Kafka, no Redis; the consume loop does the I/O around it).
//!
//! This is where a decoded, admitted trade enters the candle engine ([`Partition::apply`]) and
//! where the engine is told how far its clock has moved ([`Partition::finalize`]); the finals
//! wait in [`Partition::pending`] until they are published.

use super::clock::PartitionClock;
use super::offsets::{Continuity, Offsets};
use candles_core::{
    Candle, ClockMode, Engine, EngineConfig, Intervals, Micros, Outcome, Pair, Source, Trade,
};
use std::collections::{HashMap, VecDeque};

/// What one trade did to its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// What the engine did with it.
    pub outcome: Outcome,
    /// A late trade whose window this server had already published before the assignment
    /// (a replay after a rebalance or restart), not a late arrival.
    pub already_published: bool,
    /// The partition's clock moved (windows may be final now).
    pub clock_moved: bool,
}

/// One assigned partition.
#[derive(Debug)]
pub struct Partition {
    id: i32,
    engine: Engine,
    offsets: Offsets,
    clock: PartitionClock,
    /// Finalized candles not yet published, in order.
    pending: VecDeque<Candle>,
    /// Pairs already seeded from Redis → the composite's last published window start.
    seeded: HashMap<Pair, Option<Micros>>,
    /// Distinguishes this assignment's watermark answers from stale ones.
    generation: u64,
}

impl Partition {
    /// Partition `id` as assigned in `generation`, with an empty engine building the one
    /// interval of `config`.
    pub fn new(config: EngineConfig, id: i32, generation: u64) -> Partition {
        Partition::with_intervals(config, Intervals::one(config.interval), id, generation)
    }

    /// Like [`Partition::new`], its engine building every interval of `intervals`.
    pub fn with_intervals(
        config: EngineConfig,
        intervals: Intervals,
        id: i32,
        generation: u64,
    ) -> Partition {
        Partition {
            id,
            engine: Engine::with_intervals(config, intervals),
            offsets: Offsets::default(),
            clock: PartitionClock::new(config.clock == ClockMode::Event),
            pending: VecDeque::new(),
            seeded: HashMap::new(),
            generation,
        }
    }

    /// This assignment's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Its offsets.
    pub fn offsets(&self) -> &Offsets {
        &self.offsets
    }

    /// Its offsets, for committing.
    pub fn offsets_mut(&mut self) -> &mut Offsets {
        &mut self.offsets
    }

    /// Its clock.
    pub fn clock(&self) -> &PartitionClock {
        &self.clock
    }

    /// How a record at `offset` fits the partition's offsets.
    pub fn continuity(&self, offset: i64) -> Continuity {
        self.offsets.continuity(offset)
    }

    /// Whether `pair` was seeded here (its first trade in this partition has been seen).
    pub fn has_pair(&self, pair: Pair) -> bool {
        self.seeded.contains_key(&pair)
    }

    /// Seeds `pair` from the last final candles published for it (one per source and interval,
    /// if any).
    pub fn seed(&mut self, pair: Pair, last_finals: Vec<Option<Candle>>) {
        let finest = self.engine.intervals().finest();
        let mut composite = None;
        for candle in last_finals.into_iter().flatten() {
            if candle.source == Source::Composite && candle.interval == finest {
                composite = Some(candle.start);
            }
            self.engine.seed_interval(
                candle.pair,
                candle.source,
                candle.interval,
                candle.start,
                candle.close,
            );
        }
        tracing::debug!(partition = self.id, %pair, last_published = ?composite, "seeded from Redis history");
        self.seeded.insert(pair, composite);
    }

    /// After [`Partition::seed`], gives the open coarse windows of `pair` back what was rolled up
    /// into them before: `finals` are its published finals of the finer intervals (every
    /// source) since at least the start of each coarse open window
    /// ([`Engine::restore_rollups`]).
    pub fn restore_rollups(&mut self, pair: Pair, finals: &[Candle]) {
        for source in Source::ALL {
            let of_source: Vec<Candle> = finals
                .iter()
                .filter(|c| c.pair == pair && c.source == source)
                .copied()
                .collect();
            if !of_source.is_empty() {
                self.engine.restore_rollups(pair, source, &of_source);
            }
        }
    }

    /// Applies the trade read at `offset`: to the engine, to the offsets, to the clock.
    pub fn apply(&mut self, trade: &Trade, offset: i64) -> Step {
        let start = self.engine.config().interval.window_start(trade.time);
        let outcome = self.engine.apply(trade);
        if outcome == Outcome::Applied {
            self.offsets.applied(start, offset);
        }
        let already_published = outcome == Outcome::Late
            && self
                .seeded
                .get(&trade.pair)
                .copied()
                .flatten()
                .is_some_and(|s| start <= s);
        Step {
            outcome,
            already_published,
            clock_moved: self.passed(offset),
        }
    }

    /// The record at `offset` is dealt with (applied, skipped or dead-lettered): the partition
    /// moves past it and may commit past it; `true` when its clock moved.
    pub fn passed(&mut self, offset: i64) -> bool {
        self.offsets.read(offset);
        self.on_position(offset + 1)
    }

    /// A watermark answer `(asked_at, high)` given the consumer's `position`; `true` when the
    /// clock moved.
    pub fn on_watermark(&mut self, asked_at: Micros, high: i64, position: Option<i64>) -> bool {
        let was = self.clock.caught_up();
        let moved = self.clock.on_watermark(asked_at, high, position);
        self.log_caught_up(was);
        moved
    }

    /// The consumer's position in the partition is `position`; `true` when the clock moved.
    pub fn on_position(&mut self, position: i64) -> bool {
        let was = self.clock.caught_up();
        let moved = self.clock.on_position(position);
        self.log_caught_up(was);
        moved
    }

    fn log_caught_up(&self, was: bool) {
        if !was && self.clock.caught_up() {
            tracing::info!(
                partition = self.id,
                "caught up; finalizing by the wall clock"
            );
        }
    }

    /// Finalizes every window the clock allows at wall-clock `now` into [`Partition::pending`];
    /// returns the start of each newly finalized window of the finest interval (once per
    /// window; coarser windows end with one of them).
    pub fn finalize(&mut self, now: Micros) -> Vec<Micros> {
        let Some(clock) = self.clock.clock(now) else {
            return Vec::new();
        };
        let mut finals = Vec::new();
        self.engine.advance(clock, &mut finals);
        let finest = self.engine.config().interval;
        let mut windows: Vec<Micros> = Vec::new();
        for c in finals.iter().filter(|c| c.interval == finest) {
            if windows.last() != Some(&c.start) {
                windows.push(c.start);
            }
        }
        self.pending.extend(finals);
        windows
    }

    /// Finalized candles not yet published, oldest first.
    pub fn pending(&self) -> &VecDeque<Candle> {
        &self.pending
    }

    /// The oldest pending candle was published.
    pub fn published_one(&mut self) {
        self.pending.pop_front();
    }

    /// Forgets the offsets of windows whose candles are all published.
    pub fn forget_published(&mut self) {
        let before = self
            .pending
            .front()
            .map(|c| c.start)
            .unwrap_or(self.engine.finalized_before());
        self.offsets.published_before(before);
    }

    /// The in-progress candles that changed since the last call (only once caught up: before
    /// that the engine is still replaying).
    pub fn take_updates(&mut self, out: &mut Vec<Candle>) {
        if self.clock.caught_up() {
            self.engine.take_updates(out);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candles_core::time::Duration as CoreDuration;
    use candles_core::{Exchange, Interval, Side};

    fn partition() -> Partition {
        let config = EngineConfig {
            interval: Interval::seconds(1),
            grace: CoreDuration::from_millis(0),
            clock: ClockMode::Wall,
        };
        Partition::new(config, 0, 1)
    }

    fn trade(id: u64, time_ms: i64) -> Trade {
        let pair = Pair::parse("BTC-USDT").unwrap();
        Trade::new(
            Exchange::Binance,
            pair,
            id,
            "1",
            "1",
            Side::Buy,
            Micros(time_ms * 1000),
        )
        .unwrap()
    }

    fn apply(s: &mut Partition, offset: i64, time_ms: i64) {
        let step = s.apply(&trade(offset as u64, time_ms), offset);
        assert_eq!(step.outcome, Outcome::Applied);
    }

    /// Moves the partition's clock to `at` (an empty partition is read) and finalizes.
    fn finalize_at(s: &mut Partition, at: Micros) {
        assert!(s.on_watermark(at, 0, None));
        s.finalize(at);
    }

    #[test]
    fn commits_stop_at_the_first_trade_of_a_window_not_yet_published() {
        let mut s = partition();
        assert_eq!(s.offsets().safe(), None, "nothing read, nothing to commit");
        apply(&mut s, 10, 1_100); // window 1 s
        apply(&mut s, 11, 2_100); // window 2 s
        apply(&mut s, 12, 1_900); // window 1 s, arriving late but within grace
        assert_eq!(s.offsets().safe(), Some(10));
        finalize_at(&mut s, Micros(2_000_000));
        s.forget_published();
        assert_eq!(
            s.offsets().safe(),
            Some(10),
            "window 1 s is final but not published yet"
        );
        while !s.pending().is_empty() {
            s.published_one();
        }
        s.forget_published();
        assert_eq!(s.offsets().safe(), Some(11), "only window 2 s is open");
        finalize_at(&mut s, Micros(3_000_000));
        assert_eq!(s.pending().len(), 2, "composite and binance");
        s.published_one();
        s.published_one();
        s.forget_published();
        assert_eq!(
            s.offsets().safe(),
            Some(13),
            "everything published: commit past the last record"
        );
    }

    #[test]
    fn nothing_is_finalized_before_the_clock_is_confirmed() {
        let mut s = partition();
        apply(&mut s, 0, 1_100);
        assert!(s.finalize(Micros(5_000_000)).is_empty());
        assert!(!s.on_watermark(Micros(5_000_000), 1, Some(0)));
        assert!(s.passed(0), "reading up to the watermark confirms it");
        assert_eq!(
            s.finalize(Micros(6_000_000)),
            vec![
                Micros(1_000_000),
                Micros(2_000_000),
                Micros(3_000_000),
                Micros(4_000_000)
            ],
            "the trade's window, then flat ones, up to the confirmed 5 s"
        );
    }

    #[test]
    fn a_late_trade_of_a_window_published_before_is_told_apart() {
        let mut s = partition();
        let pair = trade(1, 0).pair;
        let published = |source| {
            Some(Candle::flat(
                pair,
                source,
                Interval::seconds(1),
                Micros(1_000_000),
                1.into(),
            ))
        };
        s.seed(
            pair,
            vec![
                published(Source::Composite),
                published(Source::Exchange(Exchange::Binance)),
            ],
        );
        assert!(s.has_pair(pair));
        let step = s.apply(&trade(1, 1_500), 7);
        assert_eq!(step.outcome, Outcome::Late);
        assert!(step.already_published);
        assert_eq!(s.offsets().safe(), Some(8), "passed");
    }
}
