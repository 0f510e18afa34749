//! The candle engine: trades in, candles out. Pure state, clock injected.
//!
//! # Rules (DESIGN.md "Candles")
//! - A trade at time `t` belongs to the window `[floor(t/I)*I, floor(t/I)*I + I)`
//!   ([`Interval::window_start`]); placement is by the exchange's trade time, never by arrival.
//! - Each trade updates two series: its exchange's and the pair's composite.
//! - Open is the price of the earliest trade, close of the latest, ordered by the key
//!   (trade time, exchange, trade id, arrival): ties in time are broken by the exchange's trade id;
//!   across exchanges (whose ids are unrelated) by the fixed exchange order of [`Exchange::ALL`],
//!   then by arrival. The key is total, so replaying the same trades gives the same candle.
//! - A window is finalized once the clock reaches its end plus the grace period. The clock is
//!   [`ClockMode::Wall`] (the `now` the caller passes to [`Engine::advance`]) or
//!   [`ClockMode::Event`] (the watermark: the latest trade time seen).
//! - A trade whose window is already finalized is late: counted ([`Engine::late_trades`]),
//!   not applied.
//! - Once a series has had a trade, every later window yields a candle; an empty window gives a
//!   flat candle at the previous close with volume 0 and trade count 0. No candle is produced
//!   for windows before a series' first trade.
//! - Finalized candles come out in order of window start, then pair, then source.
//!
//! The per-trade path ([`Engine::apply`]) does not allocate once a series exists and its window
//! buffer has grown to the number of windows open at once (usually one or two).

use crate::candle::Candle;
use crate::market::{Exchange, Source};
use crate::pair::Pair;
use crate::time::{Duration, Interval, Micros};
use crate::trade::Trade;
use rust_decimal::Decimal;
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
            _ => Err(format!("invalid clock {s:?}: expected `wall` (live) or `event` (replay by trade time)")),
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
        EngineConfig { interval: Interval::seconds(5), grace: Duration::from_millis(1_500), clock: ClockMode::Wall }
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

/// One open window of one series.
#[derive(Clone, Debug)]
struct Window {
    start: Micros,
    open_key: Key,
    close_key: Key,
    open: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
    volume: Decimal,
    quote_volume: Decimal,
    buy_volume: Decimal,
    sell_volume: Decimal,
    trades: u64,
    /// Changed since the last in-progress snapshot.
    dirty: bool,
}

impl Window {
    fn new(start: Micros, key: Key, trade: &Trade, notional: Decimal) -> Window {
        let (buy, sell) = side_split(trade);
        Window {
            start,
            open_key: key,
            close_key: key,
            open: trade.price,
            high: trade.price,
            low: trade.price,
            close: trade.price,
            volume: trade.quantity,
            quote_volume: notional,
            buy_volume: buy,
            sell_volume: sell,
            trades: 1,
            dirty: true,
        }
    }

    #[inline]
    fn add(&mut self, key: Key, trade: &Trade, notional: Decimal) {
        if key < self.open_key {
            self.open_key = key;
            self.open = trade.price;
        }
        if key > self.close_key {
            self.close_key = key;
            self.close = trade.price;
        }
        if trade.price > self.high {
            self.high = trade.price;
        }
        if trade.price < self.low {
            self.low = trade.price;
        }
        self.volume += trade.quantity;
        self.quote_volume += notional;
        let (buy, sell) = side_split(trade);
        self.buy_volume += buy;
        self.sell_volume += sell;
        self.trades += 1;
        self.dirty = true;
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
            volume: self.volume,
            quote_volume: self.quote_volume,
            buy_volume: self.buy_volume,
            sell_volume: self.sell_volume,
            trades: self.trades,
            is_final,
        }
    }
}

#[inline]
fn side_split(trade: &Trade) -> (Decimal, Decimal) {
    match trade.side {
        crate::market::Side::Buy => (trade.quantity, Decimal::ZERO),
        crate::market::Side::Sell => (Decimal::ZERO, trade.quantity),
        crate::market::Side::Unknown => (Decimal::ZERO, Decimal::ZERO),
    }
}

/// One pair and source: its open windows (sorted by start) and where its series stands.
#[derive(Clone, Debug, Default)]
struct Series {
    open: VecDeque<Window>,
    /// Close of the last finalized candle: the price of the next flat candle.
    last_close: Option<Decimal>,
    /// Start of the next window to finalize; `None` until the series' first candle is final.
    next_emit: Option<Micros>,
}

impl Series {
    /// Adds a trade to its window; `false` if this series already finalized that window.
    #[inline]
    fn add(&mut self, start: Micros, key: Key, trade: &Trade, notional: Decimal) -> bool {
        if self.next_emit.is_some_and(|n| start < n) {
            return false;
        }
        // Most trades land in the newest window: search from the back.
        let mut at = self.open.len();
        while at > 0 {
            let w = &mut self.open[at - 1];
            if w.start == start {
                w.add(key, trade, notional);
                return true;
            }
            if w.start < start {
                break;
            }
            at -= 1;
        }
        self.open.insert(at, Window::new(start, key, trade, notional));
        true
    }

    /// Finalizes every window that starts before `before`, appending candles to `out`.
    fn finalize(&mut self, pair: Pair, source: Source, interval: Interval, before: Micros, out: &mut Vec<Candle>) {
        loop {
            let next = match (self.next_emit, self.open.front()) {
                (Some(n), _) => n,
                (None, Some(w)) => w.start,
                (None, None) => return,
            };
            if next >= before {
                return;
            }
            let candle = match self.open.front() {
                Some(w) if w.start == next => {
                    let c = w.candle(pair, source, interval, true);
                    self.open.pop_front();
                    c
                }
                _ => match self.last_close {
                    Some(price) => Candle::flat(pair, source, interval, next, price),
                    // Unreachable: next_emit is only set together with last_close.
                    None => return,
                },
            };
            self.last_close = Some(candle.close);
            self.next_emit = Some(interval.window_end(next));
            out.push(candle);
        }
    }
}

/// All series of one pair: the composite and one per exchange.
#[derive(Clone, Debug)]
struct PairState {
    pair: Pair,
    composite: Series,
    exchanges: [Series; 3],
    /// Which per-exchange series have ever had a trade (or a seed).
    active: [bool; 3],
}

impl PairState {
    fn series_mut(&mut self, source: Source) -> &mut Series {
        match source {
            Source::Composite => &mut self.composite,
            Source::Exchange(e) => &mut self.exchanges[exchange_index(e)],
        }
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
            .flat_map(|p| std::iter::once(&p.composite).chain(p.exchanges.iter()))
            .filter_map(|s| s.open.front().map(|w| w.start))
            .min()
    }

    fn pair_state(&mut self, pair: Pair) -> &mut PairState {
        let at = match self.index.get(&pair) {
            Some(&at) => at,
            None => {
                self.pairs.push(PairState {
                    pair,
                    composite: Series::default(),
                    exchanges: Default::default(),
                    active: [false; 3],
                });
                self.index.insert(pair, self.pairs.len() - 1);
                self.pairs.len() - 1
            }
        };
        &mut self.pairs[at]
    }

    /// Tells the engine that the candle of `source` for the window starting at `start` was
    /// already finalized elsewhere with close `close` (e.g. read back from history after a
    /// restart), so the series continues from there: flat candles after it, no candle for it or
    /// before it again.
    pub fn seed(&mut self, pair: Pair, source: Source, start: Micros, close: Decimal) {
        let interval = self.config.interval;
        let state = self.pair_state(pair);
        if let Source::Exchange(e) = source {
            state.active[exchange_index(e)] = true;
        }
        let series = state.series_mut(source);
        let next = interval.window_end(interval.window_start(start));
        if series.next_emit.is_none_or(|n| n < next) {
            series.next_emit = Some(next);
            series.last_close = Some(close);
            while series.open.front().is_some_and(|w| w.start < next) {
                series.open.pop_front();
            }
        }
    }

    /// Adds one trade to its exchange's and its pair's composite candle.
    #[inline]
    pub fn apply(&mut self, trade: &Trade) -> Outcome {
        let start = self.config.interval.window_start(trade.time);
        if start < self.finalized_before {
            self.late += 1;
            return Outcome::Late;
        }
        if self.watermark.is_none_or(|w| trade.time > w) {
            self.watermark = Some(trade.time);
        }
        self.arrivals += 1;
        let ex = exchange_index(trade.exchange);
        let key: Key = (trade.time, ex as u8, trade.id, self.arrivals);
        let notional = trade.price * trade.quantity;
        let state = self.pair_state(trade.pair);
        state.active[ex] = true;
        let a = state.exchanges[ex].add(start, key, trade, notional);
        let b = state.composite.add(start, key, trade, notional);
        if a || b {
            Outcome::Applied
        } else {
            self.late += 1;
            Outcome::Late
        }
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
        let Some(clock) = self.clock(now) else { return };
        let before = self.config.interval.window_start(Micros(clock.0.saturating_sub(self.config.grace.0)));
        self.finalize_before(before, out);
    }

    /// Finalizes every open window regardless of the clock (the end of a replay).
    pub fn flush(&mut self, out: &mut Vec<Candle>) {
        let interval = self.config.interval;
        let last = self
            .pairs
            .iter()
            .flat_map(|p| std::iter::once(&p.composite).chain(p.exchanges.iter()))
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
            let pair = state.pair;
            state.composite.finalize(pair, Source::Composite, interval, before, out);
            for (i, e) in Exchange::ALL.into_iter().enumerate() {
                if state.active[i] {
                    state.exchanges[i].finalize(pair, Source::Exchange(e), interval, before, out);
                }
            }
        }
        out[first..].sort_by_key(|c| (c.start, c.pair, c.source));
    }

    /// In-progress snapshots (`is_final == false`) of every open window that changed since the
    /// last call, for live updates.
    pub fn take_updates(&mut self, out: &mut Vec<Candle>) {
        let interval = self.config.interval;
        for state in &mut self.pairs {
            let pair = state.pair;
            let sources = std::iter::once((Source::Composite, &mut state.composite)).chain(
                Exchange::ALL.into_iter().map(Source::Exchange).zip(state.exchanges.iter_mut()),
            );
            for (source, series) in sources {
                for w in series.open.iter_mut().filter(|w| w.dirty) {
                    w.dirty = false;
                    out.push(w.candle(pair, source, interval, false));
                }
            }
        }
    }

    /// The current in-progress candle of every open window, changed or not.
    pub fn snapshot(&self, out: &mut Vec<Candle>) {
        let interval = self.config.interval;
        for state in &self.pairs {
            let sources = std::iter::once((Source::Composite, &state.composite))
                .chain(Exchange::ALL.into_iter().map(Source::Exchange).zip(state.exchanges.iter()));
            for (source, series) in sources {
                out.extend(series.open.iter().map(|w| w.candle(state.pair, source, interval, false)));
            }
        }
    }
}
