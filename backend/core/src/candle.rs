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
    /// The window's trades are known to be incomplete: it starts before its exchange's stream
    /// was complete (a cold start), or holds a trade after a gap REST could not fill; a rollup
    /// or composite is partial when one of its parts is (see [`crate::engine`]).
    pub partial: bool,
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

    /// What is wrong with this candle, if anything: the rules every candle built by
    /// [`crate::engine`] satisfies (window aligned to the interval, low ≤ open, close ≤ high,
    /// volumes not negative, buy + sell = volume, no trades exactly when no volume). For
    /// candles that come back from outside (Redis), where anyone with write access can put one.
    pub fn inconsistency(&self) -> Option<&'static str> {
        let d = Decimal::ZERO;
        if self.interval.window_start(self.start) != self.start {
            Some("start is not aligned to the interval")
        } else if self.low > self.high
            || self.open < self.low
            || self.open > self.high
            || self.close < self.low
            || self.close > self.high
        {
            Some("open or close outside [low, high]")
        } else if self.low <= d {
            Some("a price is not positive")
        } else if self.volume < d
            || self.quote_volume < d
            || self.buy_volume < d
            || self.sell_volume < d
        {
            Some("a negative volume")
        } else if self.buy_volume.checked_add(self.sell_volume) != Some(self.volume) {
            Some("buy + sell volume is not the volume")
        } else if (self.trades == 0) != self.volume.is_zero() {
            Some("trades and volume disagree")
        } else {
            None
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
            partial: false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::engine::{Engine, EngineConfig};
    use crate::{Exchange, Side, Trade};

    fn built() -> Candle {
        let pair = Pair::parse("ETH-USDT").unwrap();
        let mut engine = Engine::new(EngineConfig::default());
        let t0 = Micros(1_700_000_000_000_000);
        for (id, price, qty, side) in [(1, "2", "1.5", Side::Buy), (2, "3", "0.25", Side::Sell)] {
            let trade = Trade::new(Exchange::Binance, pair, id, price, qty, side, t0).unwrap();
            engine.apply(&trade);
        }
        let mut out = Vec::new();
        engine.snapshot(&mut out);
        out.pop().unwrap()
    }

    #[test]
    fn a_candle_the_engine_built_is_consistent_and_each_broken_rule_is_named() {
        let good = built();
        assert_eq!(good.inconsistency(), None, "{good:?}");
        let flat = Candle::flat(
            good.pair,
            good.source,
            good.interval,
            good.start,
            good.close,
        );
        assert_eq!(flat.inconsistency(), None);
        type Break = fn(&mut Candle);
        let broken: [(&str, Break); 7] = [
            ("aligned", |c| c.start.0 += 1),
            ("outside", |c| c.high = c.low - Decimal::ONE / Decimal::TEN),
            ("outside", |c| c.close = c.high + Decimal::ONE),
            ("not positive", |c| {
                c.low = Decimal::ZERO;
                c.open = Decimal::ZERO;
            }),
            ("negative", |c| c.sell_volume = -c.sell_volume),
            ("buy + sell", |c| c.volume += Decimal::ONE),
            ("disagree", |c| c.trades = 0),
        ];
        for (rule, brk) in broken {
            let mut c = good;
            brk(&mut c);
            let why = c.inconsistency().unwrap_or_else(|| panic!("{rule}: {c:?}"));
            assert!(why.contains(rule), "{rule}: {why}");
        }
    }
}
