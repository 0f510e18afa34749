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
//!   across exchanges (whose ids are unrelated) by the fixed exchange order of [`Exchange::ALL`],
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
//! - Finalized candles come out in order of window start, then pair, then source.
//!
//! The per-trade path ([`Engine::apply`], and [`Engine::advance`] into a reused `Vec`) does not
//! allocate once a series exists and its window buffer has grown to the number of windows open
//! at once (usually one or two); `tests/no_alloc.rs` checks this with a counting allocator.

use crate::candle::Candle;
use crate::market::{Exchange, Side, Source};
use crate::pair::Pair;
use crate::time::{Duration, Interval, Micros};
use crate::trade::Trade;
use rust_decimal::Decimal;
use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

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

/// Total order of trades within a window: (trade time, exchange, trade id, arrival).
type Key = (Micros, u8, u64, u64);

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

/// A series that had no trade for this many windows in a row ends (see the module docs): at
/// most this many flat candles follow its last trade, and one `advance` emits at most this many
/// per series.
pub const MAX_QUIET_WINDOWS: u32 = 10_000;

/// Up to this many pairs, a linear scan finds a pair faster than hashing it.
const LINEAR_LOOKUP: usize = 8;

/// One open window of one exchange's series. The pair's composite window for the same start is
/// the merge of its exchanges' windows ([`Window::merge`]), built only when a composite candle
/// is needed, so each trade is added once.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: Micros,
    open_key: Key,
    close_key: Key,
    open: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
    quote_volume: Decimal,
    /// Σ quantity of trades whose taker bought.
    buy_volume: Decimal,
    /// Σ quantity of trades whose taker sold.
    sell_volume: Decimal,
    /// Σ quantity of trades without a taker side. Volume is the sum of the three, computed when
    /// a candle is built (one addition per trade instead of two).
    unknown_volume: Decimal,
    trades: u64,
    /// Changed since the last in-progress snapshot of the exchange's candle.
    dirty: bool,
    /// Changed since the last in-progress snapshot of the composite candle.
    composite_dirty: bool,
}

impl Window {
    fn new(start: Micros, key: Key, trade: &Trade, notional: Decimal) -> Window {
        let mut w = Window {
            start,
            open_key: key,
            close_key: key,
            open: trade.price,
            high: trade.price,
            low: trade.price,
            close: trade.price,
            quote_volume: notional,
            buy_volume: Decimal::ZERO,
            sell_volume: Decimal::ZERO,
            unknown_volume: Decimal::ZERO,
            trades: 1,
            dirty: true,
            composite_dirty: true,
        };
        *w.side_volume(trade.side) = trade.quantity;
        w
    }

    #[inline]
    fn side_volume(&mut self, side: Side) -> &mut Decimal {
        match side {
            Side::Buy => &mut self.buy_volume,
            Side::Sell => &mut self.sell_volume,
            Side::Unknown => &mut self.unknown_volume,
        }
    }

    #[inline]
    fn add(&mut self, key: Key, trade: &Trade, notional: Decimal) {
        // open_key <= close_key and low <= high, so each pair of tests needs at most one branch.
        if key < self.open_key {
            self.open_key = key;
            self.open = trade.price;
        } else if key > self.close_key {
            self.close_key = key;
            self.close = trade.price;
        }
        if cmp(&trade.price, &self.high).is_gt() {
            self.high = trade.price;
        } else if cmp(&trade.price, &self.low).is_lt() {
            self.low = trade.price;
        }
        add(&mut self.quote_volume, notional);
        add(self.side_volume(trade.side), trade.quantity);
        self.trades += 1;
        self.dirty = true;
        self.composite_dirty = true;
    }

    /// Adds another window of the same start (another exchange's) into this one: the result is
    /// the window that every trade of both would have built.
    fn merge(&mut self, other: &Window) {
        if other.open_key < self.open_key {
            self.open_key = other.open_key;
            self.open = other.open;
        }
        if other.close_key > self.close_key {
            self.close_key = other.close_key;
            self.close = other.close;
        }
        self.high = self.high.max(other.high);
        self.low = self.low.min(other.low);
        add(&mut self.quote_volume, other.quote_volume);
        add(&mut self.buy_volume, other.buy_volume);
        add(&mut self.sell_volume, other.sell_volume);
        add(&mut self.unknown_volume, other.unknown_volume);
        self.trades += other.trades;
    }

    fn candle(&self, pair: Pair, source: Source, interval: Interval, is_final: bool) -> Candle {
        Candle {
            pair,
            source,
            interval,
            start: self.start,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: {
                let mut volume = self.buy_volume;
                add(&mut volume, self.sell_volume);
                add(&mut volume, self.unknown_volume);
                volume
            },
            quote_volume: self.quote_volume,
            buy_volume: self.buy_volume,
            sell_volume: self.sell_volume,
            trades: self.trades,
            is_final,
        }
    }
}

/// Where one series (a pair and source) stands in its sequence of final candles.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    /// Close of the last finalized candle: the price of the next flat candle.
    last_close: Option<Decimal>,
    /// Start of the next window to finalize; `None` until the series' first candle is final,
    /// and again once it has ended after [`MAX_QUIET_WINDOWS`] flat candles.
    next_emit: Option<Micros>,
    /// Flat candles in a row since the last window with a trade.
    quiet: u32,
}

impl Progress {
    /// Whether the window starting at `start` was already finalized (or seeded) in this series.
    #[inline]
    fn is_final(&self, start: Micros) -> bool {
        self.next_emit.is_some_and(|n| start < n)
    }

    /// The next window to finalize if it starts before `before`: its start.
    fn next_before(&self, first_open: Option<Micros>, before: Micros) -> Option<Micros> {
        self.next_emit.or(first_open).filter(|&next| next < before)
    }

    /// Records `candle` as this series' latest final candle; a flat one that makes the series
    /// quiet for [`MAX_QUIET_WINDOWS`] windows ends it.
    fn emitted(&mut self, candle: &Candle) {
        self.last_close = Some(candle.close);
        self.next_emit = Some(candle.end());
        if candle.trades == 0 {
            self.quiet += 1;
            if self.quiet >= MAX_QUIET_WINDOWS {
                self.next_emit = None;
                self.quiet = 0;
            }
        } else {
            self.quiet = 0;
        }
    }

    /// The candle for the window at `start`: `window`'s, or a flat one at the last close if the
    /// window had no trade. `None` only before the series' first candle.
    fn final_candle(
        &mut self,
        window: Option<&Window>,
        pair: Pair,
        source: Source,
        interval: Interval,
        start: Micros,
    ) -> Option<Candle> {
        let candle = match window {
            Some(w) => w.candle(pair, source, interval, true),
            None => Candle::flat(pair, source, interval, start, self.last_close?),
        };
        self.emitted(&candle);
        Some(candle)
    }
}

/// One exchange's series of one pair: its open windows (sorted by start) and its progress.
#[derive(Clone, Debug, Default)]
struct Series {
    open: VecDeque<Window>,
    progress: Progress,
}

impl Series {
    /// Adds a trade to its window.
    #[inline]
    fn add(&mut self, start: Micros, key: Key, trade: &Trade, notional: Decimal) {
        // Most trades land in the newest window: search from the back.
        let mut at = self.open.len();
        while at > 0 {
            let w = &mut self.open[at - 1];
            if w.start == start {
                w.add(key, trade, notional);
                return;
            }
            if w.start < start {
                break;
            }
            at -= 1;
        }
        self.open
            .insert(at, Window::new(start, key, trade, notional));
    }

    /// Finalizes every window that starts before `before`, appending candles to `out`.
    fn finalize(
        &mut self,
        pair: Pair,
        source: Source,
        interval: Interval,
        before: Micros,
        out: &mut Vec<Candle>,
    ) {
        // Windows this series already has a final for (seeded) were kept for the composite only.
        while self
            .open
            .front()
            .is_some_and(|w| self.progress.is_final(w.start))
        {
            self.open.pop_front();
        }
        while let Some(next) = self
            .progress
            .next_before(self.open.front().map(|w| w.start), before)
        {
            let window = self.open.front().filter(|w| w.start == next);
            let Some(candle) = self
                .progress
                .final_candle(window, pair, source, interval, next)
            else {
                return;
            };
            if window.is_some() {
                self.open.pop_front();
            }
            out.push(candle);
        }
    }
}

/// All series of one pair: one per exchange, and the composite's progress (its windows are
/// merged from the exchanges' when needed).
#[derive(Clone, Debug)]
struct PairState {
    pair: Pair,
    composite: Progress,
    exchanges: [Series; 3],
}

/// A cursor over the windows of a pair's three exchanges, in order of window start.
#[derive(Default)]
struct Cursor([usize; 3]);

impl Cursor {
    /// The earliest window start at or after the cursor in any exchange.
    fn peek(&self, exchanges: &[Series; 3]) -> Option<Micros> {
        exchanges
            .iter()
            .zip(self.0)
            .filter_map(|(s, at)| s.open.get(at).map(|w| w.start))
            .min()
    }

    /// Merges the exchanges' windows that start at `start` (skipping earlier ones), moves past
    /// them, and says whether any had changed since the last composite snapshot.
    fn merge_at(&mut self, exchanges: &[Series; 3], start: Micros) -> (Option<Window>, bool) {
        let mut merged: Option<Window> = None;
        let mut dirty = false;
        for (series, at) in exchanges.iter().zip(self.0.iter_mut()) {
            while let Some(w) = series.open.get(*at) {
                if w.start > start {
                    break;
                }
                *at += 1;
                if w.start == start {
                    dirty |= w.composite_dirty;
                    match &mut merged {
                        Some(m) => m.merge(w),
                        None => merged = Some(*w),
                    }
                }
            }
        }
        (merged, dirty)
    }
}

impl PairState {
    fn new(pair: Pair) -> PairState {
        PairState {
            pair,
            composite: Progress::default(),
            exchanges: Default::default(),
        }
    }

    /// Finalizes every window of every series of this pair that starts before `before`.
    fn finalize(&mut self, interval: Interval, before: Micros, out: &mut Vec<Candle>) {
        let pair = self.pair;
        // The composite first: it reads the exchanges' windows, which their finalization removes.
        let mut cursor = Cursor::default();
        while let Some(next) = self
            .composite
            .next_before(cursor.peek(&self.exchanges), before)
        {
            let (window, _) = cursor.merge_at(&self.exchanges, next);
            match self.composite.final_candle(
                window.as_ref(),
                pair,
                Source::Composite,
                interval,
                next,
            ) {
                Some(candle) => out.push(candle),
                None => break,
            }
        }
        for (series, e) in self.exchanges.iter_mut().zip(Exchange::ALL) {
            series.finalize(pair, Source::Exchange(e), interval, before, out);
        }
    }

    /// In-progress candles of every open window, or only of those changed since the last
    /// [`PairState::mark_unchanged`] if `changed_only`.
    fn in_progress(&self, interval: Interval, changed_only: bool, out: &mut Vec<Candle>) {
        let pair = self.pair;
        let mut cursor = Cursor::default();
        while let Some(start) = cursor.peek(&self.exchanges) {
            let (window, dirty) = cursor.merge_at(&self.exchanges, start);
            if let Some(w) = window
                && (dirty || !changed_only)
                && !self.composite.is_final(start)
            {
                out.push(w.candle(pair, Source::Composite, interval, false));
            }
        }
        for (series, e) in self.exchanges.iter().zip(Exchange::ALL) {
            for w in &series.open {
                if (w.dirty || !changed_only) && !series.progress.is_final(w.start) {
                    out.push(w.candle(pair, Source::Exchange(e), interval, false));
                }
            }
        }
    }

    /// Marks every window as reported by a live update.
    fn mark_unchanged(&mut self) {
        for w in self.exchanges.iter_mut().flat_map(|s| s.open.iter_mut()) {
            w.dirty = false;
            w.composite_dirty = false;
        }
    }
}

/// `sum += x`; sums of one series nearly always share the scale of their terms, and then adding
/// the mantissas is exact and much cheaper than the general addition (which this falls back to).
#[inline]
fn add(sum: &mut Decimal, x: Decimal) {
    if sum.scale() == x.scale()
        && let Ok(total) =
            Decimal::try_from_i128_with_scale(sum.mantissa() + x.mantissa(), x.scale())
    {
        *sum = total;
    } else {
        // Beyond Decimal's range (~7.9e28), which no real market reaches: saturate, never panic.
        *sum = sum.checked_add(x).unwrap_or(Decimal::MAX);
    }
}

/// Compares two decimals; prices of one series nearly always share a scale, and then comparing
/// the (signed) mantissas is exact and much cheaper than the general comparison.
#[inline]
fn cmp(a: &Decimal, b: &Decimal) -> Ordering {
    if a.scale() == b.scale() {
        a.mantissa().cmp(&b.mantissa())
    } else {
        a.cmp(b)
    }
}

fn exchange_index(e: Exchange) -> usize {
    match e {
        Exchange::Binance => 0,
        Exchange::Kraken => 1,
        Exchange::Coinbase => 2,
    }
}

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
    /// An engine with nothing in it.
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            config,
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
                self.pairs.push(PairState::new(pair));
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
            Source::Exchange(e) => &mut state.exchanges[exchange_index(e)].progress,
        };
        let next = interval.window_end(interval.window_start(start));
        if progress.next_emit.is_none_or(|n| n < next) {
            progress.next_emit = Some(next);
            progress.last_close = Some(close);
        }
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
        let ex = exchange_index(trade.exchange);
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
        self.finalize_before(before, out);
    }

    /// Finalizes every open window regardless of the clock (the end of a replay).
    pub fn flush(&mut self, out: &mut Vec<Candle>) {
        let interval = self.config.interval;
        let last = self
            .pairs
            .iter()
            .flat_map(|p| p.exchanges.iter())
            .filter_map(|s| s.open.back().map(|w| interval.window_end(w.start)))
            .max();
        if let Some(before) = last {
            self.finalize_before(before, out);
        }
    }

    fn finalize_before(&mut self, before: Micros, out: &mut Vec<Candle>) {
        if before <= self.finalized_before {
            return;
        }
        self.finalized_before = before;
        let interval = self.config.interval;
        let first = out.len();
        for state in &mut self.pairs {
            state.finalize(interval, before, out);
        }
        // Identities are unique, so an unstable (allocation-free) sort gives one order.
        out[first..].sort_unstable_by_key(|c| (c.start, c.pair, c.source));
    }

    /// In-progress snapshots (`is_final == false`) of every open window that changed since the
    /// last call, for live updates.
    pub fn take_updates(&mut self, out: &mut Vec<Candle>) {
        let interval = self.config.interval;
        for state in &mut self.pairs {
            state.in_progress(interval, true, out);
            state.mark_unchanged();
        }
    }

    /// The current in-progress candle of every open window, changed or not.
    pub fn snapshot(&self, out: &mut Vec<Candle>) {
        let interval = self.config.interval;
        for state in &self.pairs {
            state.in_progress(interval, false, out);
        }
    }
}
