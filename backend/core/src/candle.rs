//! The OHLC candle and its identity.

use crate::market::Source;
use crate::pair::Pair;
use crate::time::{Interval, Micros};
use rust_decimal::Decimal;

/// What identifies a candle: re-processing the same trades yields the identical candle for the
/// same identity, and a client never sees two different finals for one identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CandleId {
    /// Canonical pair.
    pub pair: Pair,
    /// Composite or one exchange.
    pub source: Source,
    /// Window length.
    pub interval: Interval,
    /// Window start (inclusive).
    pub start: Micros,
}

/// One candle: the trades of one pair and source in `[start, start + interval)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candle {
    /// Canonical pair.
    pub pair: Pair,
    /// Composite or one exchange.
    pub source: Source,
    /// Window length.
    pub interval: Interval,
    /// Window start, aligned to the epoch.
    pub start: Micros,
    /// Price of the earliest trade by trade time (ties: exchange, trade id, arrival).
    pub open: Decimal,
    /// Highest price.
    pub high: Decimal,
    /// Lowest price.
    pub low: Decimal,
    /// Price of the latest trade by trade time (same tie-break as `open`).
    pub close: Decimal,
    /// Σ quantity (base asset).
    pub volume: Decimal,
    /// Σ price × quantity (quote asset).
    pub quote_volume: Decimal,
    /// Σ quantity of trades whose taker bought.
    pub buy_volume: Decimal,
    /// Σ quantity of trades whose taker sold.
    pub sell_volume: Decimal,
    /// Number of trades (0 for an empty window's flat candle).
    pub trades: u64,
    /// Final (the window was closed) or an in-progress snapshot.
    pub is_final: bool,
}

impl Candle {
    /// The identity of this candle.
    pub fn id(&self) -> CandleId {
        CandleId {
            pair: self.pair,
            source: self.source,
            interval: self.interval,
            start: self.start,
        }
    }

    /// Window end (exclusive).
    pub fn end(&self) -> Micros {
        self.interval.window_end(self.start)
    }

    /// Volume-weighted average price, `quote_volume / volume`; `None` for an empty window.
    pub fn vwap(&self) -> Option<Decimal> {
        if self.volume.is_zero() {
            None
        } else {
            self.quote_volume
                .checked_div(self.volume)
                .map(|v| v.normalize())
        }
    }

    /// A flat candle for an empty window: open = high = low = close = `price`, volume 0.
    pub fn flat(
        pair: Pair,
        source: Source,
        interval: Interval,
        start: Micros,
        price: Decimal,
    ) -> Candle {
        Candle {
            pair,
            source,
            interval,
            start,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: Decimal::ZERO,
            quote_volume: Decimal::ZERO,
            buy_volume: Decimal::ZERO,
            sell_volume: Decimal::ZERO,
            trades: 0,
            is_final: true,
        }
    }
}
