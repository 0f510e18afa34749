//! The candle engine: trades in, candles out. Pure state, clock injected.
//!
//! # Rules (DESIGN.md "Candles")
//! - A trade at time `t` belongs to the window `[floor(t/I)*I, floor(t/I)*I + I)`
//!   ([`Interval::window_start`]); placement is by the exchange's trade time, never by arrival.
//! - Each trade counts in two series: its exchange's and the pair's composite. It is added once,
//!   to its exchange's window; the composite candle of a window is the merge of the pair's
//!   exchange windows of the same start, built when it is finalized or snapshotted, which is
//!   exactly the candle of the union of their trades.
//! - Open is the price of the earliest trade, close of the latest, ordered by the key
//!   (trade time, exchange, trade id, arrival): ties in time are broken by the exchange's trade id;
//!   across exchanges (whose ids are unrelated) by the fixed exchange order of [`crate::Exchange::ALL`],
//!   then by arrival. The key is total, so replaying the same trades gives the same candle.
//! - A window is finalized once the clock reaches its end plus the grace period. The clock is
//!   [`ClockMode::Wall`] (the `now` the caller passes to [`Engine::advance`]) or
//!   [`ClockMode::Event`] (the watermark: the latest trade time seen).
//! - With the wall clock, a trade stamped more than [`MAX_AHEAD_OF_WALL_CLOCK`] after the last
//!   `now` is impossible and rejected like a late trade.
//! - A trade whose window is already finalized is late: counted ([`Engine::late_trades`]),
//!   not applied. So is a trade whose window was seeded as final ([`Engine::seed`]) for both its
//!   exchange's series and the composite, and a trade that cannot be placed at all (a time
//!   beyond ±73,000 years of 1970, or a price x quantity beyond `Decimal`'s ~7.9e28): the
//!   engine never panics on a trade.
//! - Once a series has had a trade, every later window yields a candle; an empty window gives a
//!   flat candle at the previous close with volume 0 and trade count 0. No candle is produced
//!   for windows before a series' first trade. A series quiet for [`MAX_QUIET_WINDOWS`] windows
//!   in a row ends after that many flat candles (so one stray trade, or a history seeded long
//!   ago, never makes flat candles without end, nor a burst of them in one [`Engine::advance`]);
//!   its next trade starts it again, from that trade's window.
//! - Finalized candles come out in order of interval, then window start, pair, source.
//!
//! # Several intervals ([`Engine::with_intervals`], DESIGN.md "Several intervals in one engine")
//! - A trade touches only its window of the finest interval; everything above applies to it.
//! - A coarser interval's window is the exact merge of the finest windows in it: each finest
//!   window, once final, is merged into its coarse window (`engine/rollup.rs`), with the merge that
//!   builds the composite, so the candle equals the one built directly from the same trades.
//!   Live updates and snapshots add the finest windows still open.
//! - Each coarse window is finalized at its own end plus the grace, with the same empty-window
//!   and quiet rules, per exchange and composite.
//! - A trade is late when its finest window is final: it is then in no interval's candle, even
//!   when a coarser window containing it is still open, so every interval stays the exact
//!   rollup of the finest.
//! - After a restart, [`Engine::seed_interval`] seeds each interval's series like
//!   [`Engine::seed`], and [`Engine::restore_rollups`] gives the open coarse windows back their
//!   rolled-up part from the published finer finals, so trades need only be read again from
//!   [`Engine::oldest_open_window`], which concerns the finest interval.
//!
//! # Partial candles ([`Candle::partial`], DESIGN.md "Partial candles")
//! - Per pair and exchange, the latest [`Trade::complete_since`] seen says from when the
//!   exchange's stream is complete: a window of any interval that starts before it is partial
//!   (a cold start at 15:00:20 makes that day's 1d window partial, and its 1m window unless the
//!   connector fetched the minute's earlier trades and marked 15:00:00).
//! - A window holding a trade with [`Trade::after_unfilled_gap`] is partial, and so is every
//!   coarser window containing it (a rollup is partial when one of its parts is).
//! - A composite window is partial when one of its exchanges' is: when it holds a partial
//!   exchange window, or starts before one of its exchanges' stream was complete.
//! - Live updates carry the mark too. After a restart, [`Engine::restore_rollups`] takes it
//!   from the published finals it restores from.
//!
//! The per-trade path ([`Engine::apply`], and [`Engine::advance`] into a reused `Vec`) does not
//! allocate once a series exists and its window buffer has grown to the number of windows open
//! at once (usually one or two), with any number of intervals (a pair's rollups are allocated
//! once, when the pair is first seen); `tests/no_alloc.rs` checks this with a counting
//! allocator.

mod rollup;
mod series;
mod window;

use crate::candle::Candle;
use crate::intervals::Intervals;
use crate::market::Source;
use crate::pair::Pair;
use crate::time::{Duration, Interval, Micros};
use crate::trade::Trade;
use rust_decimal::Decimal;
use series::PairState;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use window::Key;

pub use window::MAX_QUIET_WINDOWS;

/// Which clock finalizes windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClockMode {
    /// Live: the wall-clock time passed to [`Engine::advance`].
    #[default]
    Wall,
    /// Replay: the watermark of trade times seen, so a recorded day replays at full speed and
    /// gives the same candles as live.
    Event,
}

impl std::str::FromStr for ClockMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "wall" => Ok(ClockMode::Wall),
            "event" => Ok(ClockMode::Event),
            _ => Err(format!(
                "invalid clock {s:?}: expected `wall` (live) or `event` (replay by trade time)"
            )),
        }
    }
}

/// How the engine builds candles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Window length.
    pub interval: Interval,
    /// How long after a window's end it stays open for trades delayed in transit.
    pub grace: Duration,
    /// Which clock finalizes windows.
    pub clock: ClockMode,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            interval: Interval::seconds(5),
            grace: Duration::from_millis(1_500),
            clock: ClockMode::Wall,
        }
    }
}

/// What [`Engine::apply`] did with a trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Added to its window.
    Applied,
    /// Its window was already finalized: counted, not applied.
    Late,
}

/// The trade times (and clock readings) the engine works with: ±(`i64::MAX` / 4) µs, about
/// ±73,000 years around 1970, so that window arithmetic (start, end, end + grace) can never
/// overflow. A trade outside this range cannot be placed in a window and is rejected like a late
/// one (counted, not applied); a clock outside it is clamped.
const TIME_LIMIT: i64 = i64::MAX / 4;

/// With the wall clock, how far ahead of the last `now` a trade's time may be. A trade stamped
/// further in the future cannot be real (exchanges stamp trades when they happen); accepting it
/// would keep its window open for that long and hold back the consumer's committed offset.
/// Such a trade is rejected and counted like a late one.
pub const MAX_AHEAD_OF_WALL_CLOCK: Duration = Duration(3_600_000_000);

/// Up to this many pairs, a linear scan finds a pair faster than hashing it.
const LINEAR_LOOKUP: usize = 8;

/// A small, fast hasher for the pair index (FxHash's multiply-rotate); the keys are our own
/// `Pair` values, not attacker-chosen, so a DoS-resistant hash buys nothing here.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// The candle engine. See the module docs for its rules.
#[derive(Clone, Debug)]
pub struct Engine {
    config: EngineConfig,
    /// Every interval built; `config.interval` is the finest.
    intervals: Intervals,
    pairs: Vec<PairState>,
    index: HashMap<Pair, usize, BuildHasherDefault<FxHasher>>,
    /// The pair of the previous trade (trades often come in runs of one pair).
    last_pair: usize,
    /// The window of the previous trade, `[start, end)`, to skip the division for the next one.
    last_window: (Micros, Micros),
    /// Trades at or after this time are rejected (wall clock only: last `now` + [`MAX_AHEAD_OF_WALL_CLOCK`]).
    accept_before: Micros,
    /// Every window starting before this is finalized.
    finalized_before: Micros,
    /// Latest trade time seen (the event clock).
    watermark: Option<Micros>,
    arrivals: u64,
    late: u64,
}

impl Engine {
    /// An engine with nothing in it, building the one interval of `config`.
    pub fn new(config: EngineConfig) -> Engine {
        Engine::with_intervals(config, Intervals::one(config.interval))
    }

    /// An engine with nothing in it, building every interval of `intervals` (see the module
    /// docs, "Several intervals"); `config.interval` is replaced by the finest of them, so a
    /// [`crate::finality::Finality`] made from [`Engine::config`] is due at every interval's
    /// finalization instants (coarser windows end on finest boundaries).
    pub fn with_intervals(mut config: EngineConfig, intervals: Intervals) -> Engine {
        config.interval = intervals.finest();
        Engine {
            config,
            intervals,
            pairs: Vec::new(),
            index: HashMap::default(),
            last_pair: 0,
            last_window: (Micros(i64::MAX), Micros(i64::MIN)),
            accept_before: Micros(i64::MAX),
            finalized_before: Micros(i64::MIN),
            watermark: None,
            arrivals: 0,
            late: 0,
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Every interval it builds, finest first.
    pub fn intervals(&self) -> &Intervals {
        &self.intervals
    }

    /// Trades rejected as late so far.
    pub fn late_trades(&self) -> u64 {
        self.late
    }

    /// The latest trade time seen (the event-time clock).
    pub fn watermark(&self) -> Option<Micros> {
        self.watermark
    }

    /// Every window starting before this instant is finalized.
    pub fn finalized_before(&self) -> Micros {
        self.finalized_before
    }

    /// The earliest window start still open in any series (the oldest trade not yet in a final
    /// candle is in this window or later). `None` when nothing is open.
    pub fn oldest_open_window(&self) -> Option<Micros> {
        self.pairs
            .iter()
            .flat_map(|p| p.exchanges.iter())
            .filter_map(|s| s.open.front().map(|w| w.start))
            .min()
    }

    /// The index of `pair`'s state, created on first sight.
    #[inline]
    fn pair_index(&mut self, pair: Pair) -> usize {
        if let Some(p) = self.pairs.get(self.last_pair)
            && p.pair == pair
        {
            return self.last_pair;
        }
        let found = if self.pairs.len() <= LINEAR_LOOKUP {
            self.pairs.iter().position(|p| p.pair == pair)
        } else {
            self.index.get(&pair).copied()
        };
        let at = match found {
            Some(at) => at,
            None => {
                let coarse = self.intervals.coarser().len();
                self.pairs.push(PairState::new(pair, coarse));
                self.index.insert(pair, self.pairs.len() - 1);
                self.pairs.len() - 1
            }
        };
        self.last_pair = at;
        at
    }

    /// Tells the engine that the candle of `source` for the window starting at `start` was
    /// already finalized elsewhere with close `close` (e.g. read back from history after a
    /// restart), so the series continues from there: flat candles after it, no candle for it or
    /// before it again.
    pub fn seed(&mut self, pair: Pair, source: Source, start: Micros, close: Decimal) {
        if !(-TIME_LIMIT..=TIME_LIMIT).contains(&start.0) {
            return;
        }
        let interval = self.config.interval;
        let at = self.pair_index(pair);
        let state = &mut self.pairs[at];
        let progress = match source {
            Source::Composite => &mut state.composite,
            Source::Exchange(e) => &mut state.exchanges[e.index()].progress,
        };
        progress.seed(interval.window_end(interval.window_start(start)), close);
        // Windows that every series of the pair has finalized can go.
        let composite = state.composite;
        for series in &mut state.exchanges {
            while series
                .open
                .front()
                .is_some_and(|w| series.progress.is_final(w.start) && composite.is_final(w.start))
            {
                series.open.pop_front();
            }
        }
    }

    /// Like [`Engine::seed`] for any interval of the set: the candle of `source` of `interval`
    /// for the window starting at `start` was already finalized elsewhere with close `close`.
    /// An interval not in the set is ignored.
    pub fn seed_interval(
        &mut self,
        pair: Pair,
        source: Source,
        interval: Interval,
        start: Micros,
        close: Decimal,
    ) {
        let intervals = self.intervals;
        let coarse = intervals.coarser();
        let Some(k) = coarse.iter().position(|&c| c == interval) else {
            if interval == intervals.finest() {
                self.seed(pair, source, start, close);
            }
            return;
        };
        if !(-TIME_LIMIT..=TIME_LIMIT).contains(&start.0) {
            return;
        }
        let n = coarse.len();
        let at = self.pair_index(pair);
        let start = interval.window_start(start);
        self.pairs[at]
            .rollup_mut(source, k, n)
            .seed(start, close, interval);
    }

    /// After a restart, gives the coarser intervals of `pair`'s `source` back the part of their
    /// open windows that was rolled up before: `finals` are that series' finals of the set's
    /// finer intervals published since (at least) the start of each coarse interval's open
    /// window, in any order. Call it after seeding every interval ([`Engine::seed_interval`]),
    /// before the first trade of the pair. Finals that cannot be this engine's (an interval not
    /// in the set, a start beyond the engine's time range) make it do nothing.
    pub fn restore_rollups(&mut self, pair: Pair, source: Source, finals: &[Candle]) {
        let intervals = self.intervals;
        let coarse = intervals.coarser();
        let n = coarse.len();
        let foreign = |c: &Candle| {
            !intervals.contains(c.interval) || !(-TIME_LIMIT..=TIME_LIMIT).contains(&c.start.0)
        };
        if n == 0 || finals.iter().any(foreign) {
            return;
        }
        let at = self.pair_index(pair);
        for (k, &interval) in coarse.iter().enumerate() {
            let place = rollup::At {
                pair,
                source,
                interval,
            };
            self.pairs[at]
                .rollup_mut(source, k, n)
                .restore(finals, place);
        }
    }

    /// Adds one trade to its exchange's and its pair's composite candle.
    #[inline]
    pub fn apply(&mut self, trade: &Trade) -> Outcome {
        let time = trade.time;
        let (mut start, end) = self.last_window;
        if time < start || time >= end {
            if !(-TIME_LIMIT..=TIME_LIMIT).contains(&time.0) || time >= self.accept_before {
                self.late += 1;
                return Outcome::Late;
            }
            let interval = self.config.interval;
            start = interval.window_start(time);
            self.last_window = (start, interval.window_end(start));
        }
        if start < self.finalized_before {
            self.late += 1;
            return Outcome::Late;
        }
        let at = self.pair_index(trade.pair);
        let ex = trade.exchange.index();
        let state = &mut self.pairs[at];
        let series = &mut state.exchanges[ex];
        if series.progress.is_final(start) && state.composite.is_final(start) {
            // Both of its candles were seeded as already final.
            self.late += 1;
            return Outcome::Late;
        }
        let Some(notional) = trade.price.checked_mul(trade.quantity) else {
            // Price x quantity beyond Decimal's range: not a real trade; rejected, never a panic.
            self.late += 1;
            return Outcome::Late;
        };
        self.arrivals += 1;
        let key: Key = (time, ex as u8, trade.id, self.arrivals);
        series.add(start, key, trade, notional);
        if self.watermark.is_none_or(|w| time > w) {
            self.watermark = Some(time);
        }
        Outcome::Applied
    }

    /// The clock the engine finalizes by: `now` for the wall clock, the watermark for event time.
    pub fn clock(&self, now: Micros) -> Option<Micros> {
        match self.config.clock {
            ClockMode::Wall => Some(now),
            ClockMode::Event => self.watermark,
        }
    }

    /// Moves the clock: finalizes every window whose end plus grace is at or before the clock
    /// and appends those candles (and flat candles for empty windows) to `out`, ordered by
    /// window start, pair, source. `now` is the wall-clock time; it is ignored in event mode.
    pub fn advance(&mut self, now: Micros, out: &mut Vec<Candle>) {
        if self.config.clock == ClockMode::Wall {
            self.accept_before = now.plus(MAX_AHEAD_OF_WALL_CLOCK);
            if self.last_window.1 > self.accept_before {
                self.last_window = (Micros(i64::MAX), Micros(i64::MIN));
            }
        }
        let Some(clock) = self.clock(now) else { return };
        let edge = clock
            .0
            .saturating_sub(self.config.grace.0)
            .clamp(-TIME_LIMIT, TIME_LIMIT);
        let before = self.config.interval.window_start(Micros(edge));
        let mut coarse_before = [Micros(0); Intervals::MAX];
        for (b, interval) in coarse_before.iter_mut().zip(self.intervals.coarser()) {
            *b = interval.window_start(Micros(edge));
        }
        self.finalize_before(before, &coarse_before, out);
    }

    /// Finalizes every open window of every interval regardless of the clock (the end of a
    /// replay).
    pub fn flush(&mut self, out: &mut Vec<Candle>) {
        let interval = self.config.interval;
        let last = self
            .pairs
            .iter()
            .flat_map(|p| p.exchanges.iter())
            .filter_map(|s| s.open.back().map(|w| interval.window_end(w.start)))
            .max();
        let coarse = self.intervals.coarser();
        let mut coarse_before = [Micros(i64::MIN); Intervals::MAX];
        for (k, (b, c)) in coarse_before.iter_mut().zip(coarse).enumerate() {
            // The coarse window of the last finest window, and any window being rolled up.
            let of_last = last.map(|end| c.window_end(c.window_start(Micros(end.0 - 1))));
            let rolled = self.pairs.iter().filter_map(|p| p.rollup_end(k, coarse));
            *b = of_last
                .into_iter()
                .chain(rolled)
                .max()
                .unwrap_or(Micros(i64::MIN));
        }
        let before = last.unwrap_or(self.finalized_before);
        self.finalize_before(before, &coarse_before, out);
    }

    /// Finalizes every finest window that starts before `before` and every coarse window that
    /// starts before its interval's entry of `coarse_before`; candles come out ordered by
    /// interval, window start, pair, source.
    fn finalize_before(&mut self, before: Micros, coarse_before: &[Micros], out: &mut Vec<Candle>) {
        let first = out.len();
        if before > self.finalized_before {
            self.finalized_before = before;
            for state in &mut self.pairs {
                state.finalize(&self.intervals, before, out);
            }
        }
        let coarse = self.intervals.coarser();
        if !coarse.is_empty() {
            for state in &mut self.pairs {
                state.finalize_rollups(coarse, coarse_before, out);
            }
        }
        // Identities are unique, so an unstable (allocation-free) sort gives one order.
        out[first..].sort_unstable_by_key(|c| (c.interval, c.start, c.pair, c.source));
    }

    /// In-progress snapshots (`is_final == false`) of every open window that changed since the
    /// last call, for live updates.
    pub fn take_updates(&mut self, out: &mut Vec<Candle>) {
        for state in &mut self.pairs {
            state.in_progress(&self.intervals, true, out);
            state.mark_unchanged();
        }
    }

    /// The current in-progress candle of every open window, changed or not.
    pub fn snapshot(&self, out: &mut Vec<Candle>) {
        for state in &self.pairs {
            state.in_progress(&self.intervals, false, out);
        }
    }
}
