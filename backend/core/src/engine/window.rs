//! One window's aggregate ([`Window`]: OHLC, volumes, trade count, ordered by trade key) and
//! where a series stands in its run of final candles ([`Progress`]). The exchange series, the
//! composite and the coarser intervals' rollups are all made of these.

use crate::candle::Candle;
use crate::market::{Side, Source};
use crate::pair::Pair;
use crate::time::{Interval, Micros};
use crate::trade::Trade;
use rust_decimal::Decimal;
use std::cmp::Ordering;

/// Total order of trades within a window: (trade time, exchange, trade id, arrival).
pub(super) type Key = (Micros, u8, u64, u64);

/// A series that had no trade for this many windows in a row ends (see the module docs): at
/// most this many flat candles follow its last trade, and one `advance` emits at most this many
/// per series.
pub const MAX_QUIET_WINDOWS: u32 = 10_000;

/// One open window of one exchange's series. The pair's composite window for the same start is
/// the merge of its exchanges' windows ([`Window::merge`]), built only when a composite candle
/// is needed, so each trade is added once.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    pub(super) start: Micros,
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
    pub(super) dirty: bool,
    /// Changed since the last in-progress snapshot of the composite candle.
    pub(super) composite_dirty: bool,
    /// Holds a trade after an unfilled gap, or a part that is partial (see [`Candle::partial`]).
    pub(super) partial: bool,
}

impl Window {
    pub(super) fn new(start: Micros, key: Key, trade: &Trade, notional: Decimal) -> Window {
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
            partial: trade.after_unfilled_gap,
        };
        *w.side_volume(trade.side) = trade.quantity;
        w
    }

    /// The window of a final candle published before a restart, standing for its trades: its
    /// open and close rank before every trade after its end (and after every trade before its
    /// start), so merging it in order with later windows gives the candle of all their trades.
    /// A partial candle gives a partial window.
    pub(super) fn restored(c: &Candle) -> Window {
        let last = Micros(c.end().0 - 1);
        let unknown_volume = (c.volume.checked_sub(c.buy_volume))
            .and_then(|v| v.checked_sub(c.sell_volume))
            .unwrap_or(Decimal::ZERO);
        Window {
            start: c.start,
            open_key: (c.start, 0, 0, 0),
            close_key: (last, u8::MAX, u64::MAX, u64::MAX),
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            quote_volume: c.quote_volume,
            buy_volume: c.buy_volume,
            sell_volume: c.sell_volume,
            unknown_volume,
            trades: c.trades,
            dirty: false,
            composite_dirty: false,
            partial: c.partial,
        }
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
    pub(super) fn add(&mut self, key: Key, trade: &Trade, notional: Decimal) {
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
        self.partial |= trade.after_unfilled_gap;
    }

    /// Adds another window of the same start (another exchange's) into this one: the result is
    /// the window that every trade of both would have built.
    pub(super) fn merge(&mut self, other: &Window) {
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
        self.partial |= other.partial;
    }

    pub(super) fn candle(
        &self,
        pair: Pair,
        source: Source,
        interval: Interval,
        is_final: bool,
    ) -> Candle {
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
            partial: self.partial,
        }
    }
}

/// Where one series (a pair and source) stands in its sequence of final candles.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Progress {
    /// Close of the last finalized candle: the price of the next flat candle.
    pub(super) last_close: Option<Decimal>,
    /// Start of the next window to finalize; `None` until the series' first candle is final,
    /// and again once it has ended after [`MAX_QUIET_WINDOWS`] flat candles.
    pub(super) next_emit: Option<Micros>,
    /// Flat candles in a row since the last window with a trade.
    quiet: u32,
}

impl Progress {
    /// Whether the window starting at `start` was already finalized (or seeded) in this series.
    #[inline]
    pub(super) fn is_final(&self, start: Micros) -> bool {
        self.next_emit.is_some_and(|n| start < n)
    }

    /// Records that the window ending at `next` was already finalized elsewhere with close
    /// `close` (unless this series is already further on).
    pub(super) fn seed(&mut self, next: Micros, close: Decimal) {
        if self.next_emit.is_none_or(|n| n < next) {
            self.next_emit = Some(next);
            self.last_close = Some(close);
        }
    }

    /// The next window to finalize if it starts before `before`: its start.
    pub(super) fn next_before(&self, first_open: Option<Micros>, before: Micros) -> Option<Micros> {
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
    pub(super) fn final_candle(
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
