//! The verdict on one of our final 1-minute candles against the exchange's own candle for the
//! same minute: exact decimal comparison of every field the exchange publishes.
//!
//! Pure: the caller fetches the exchange's candle (the connector's candle clients) and passes
//! both. What each exchange publishes:
//! - Binance klines: open, high, low, close, volume, quote volume, trade count, taker buy volume;
//! - Kraken OHLC: open, high, low, close, volume, VWAP, count;
//! - Coinbase candles: open, high, low, close, volume.
//!
//! Kraken rounds its VWAP to the pair's price decimals, so ours is compared at the digits
//! Kraken gives: it matches when ours, rounded to that many decimals (half away from zero or
//! half to even, as the exchange's rounding rule is not documented), equals theirs. Every other
//! field is compared exactly (`1.50` equals `1.5`: decimals compare by value).

use crate::candle::Candle;
use crate::time::{Interval, Micros};
use rust_decimal::{Decimal, RoundingStrategy};
use std::fmt;

/// One field of a candle that an exchange publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// First trade's price.
    Open,
    /// Highest price.
    High,
    /// Lowest price.
    Low,
    /// Last trade's price.
    Close,
    /// Σ quantity (base asset).
    Volume,
    /// Σ price × quantity (quote asset).
    QuoteVolume,
    /// Number of trades.
    Trades,
    /// Σ quantity of trades whose taker bought.
    TakerBuyVolume,
    /// Volume-weighted average price.
    Vwap,
}

impl Field {
    /// Every field, in the order verdicts list them.
    pub const ALL: [Field; 9] = [
        Field::Open,
        Field::High,
        Field::Low,
        Field::Close,
        Field::Volume,
        Field::QuoteVolume,
        Field::Trades,
        Field::TakerBuyVolume,
        Field::Vwap,
    ];

    /// The field's name as shown to users (`open`, `quote_volume`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Field::Open => "open",
            Field::High => "high",
            Field::Low => "low",
            Field::Close => "close",
            Field::Volume => "volume",
            Field::QuoteVolume => "quote_volume",
            Field::Trades => "trades",
            Field::TakerBuyVolume => "taker_buy_volume",
            Field::Vwap => "vwap",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An exchange's own candle for one minute: the fields that exchange publishes (`None` where it
/// does not publish one), exact decimals from its text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExchangeCandle {
    /// Window start.
    pub start: Micros,
    /// First trade's price.
    pub open: Decimal,
    /// Highest price.
    pub high: Decimal,
    /// Lowest price.
    pub low: Decimal,
    /// Last trade's price.
    pub close: Decimal,
    /// Σ quantity (base asset).
    pub volume: Decimal,
    /// Σ price × quantity (Binance).
    pub quote_volume: Option<Decimal>,
    /// Number of trades (Binance, Kraken).
    pub trades: Option<u64>,
    /// Σ quantity of taker buys (Binance).
    pub taker_buy_volume: Option<Decimal>,
    /// Volume-weighted average price, rounded by the exchange (Kraken).
    pub vwap: Option<Decimal>,
}

/// One field that differs: ours and theirs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDiff {
    /// Which field.
    pub field: Field,
    /// Our value.
    pub ours: Decimal,
    /// The exchange's value.
    pub theirs: Decimal,
}

impl fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ours {} theirs {}",
            self.field, self.ours, self.theirs
        )
    }
}

/// The outcome of checking one candle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every published field is equal.
    Match,
    /// These fields differ (in [`Field`] order).
    Mismatch(Vec<FieldDiff>),
    /// No comparison was possible, and why.
    Unavailable(String),
}

/// The 1-minute interval, the only one the exchanges' candles are checked at.
pub const MINUTE: Interval = Interval::seconds(60);

/// Compares our final 1-minute candle with the exchange's candle for the same minute.
///
/// `Unavailable` when ours is not a final 1-minute candle or the two are not the same minute;
/// otherwise `Match` or `Mismatch` naming every differing field.
pub fn verdict(ours: &Candle, theirs: &ExchangeCandle) -> Verdict {
    if ours.interval != MINUTE {
        return Verdict::Unavailable(format!("interval {} is not 1m", ours.interval));
    }
    if !ours.is_final {
        return Verdict::Unavailable("our candle is not final".to_string());
    }
    if ours.start != theirs.start {
        return Verdict::Unavailable(format!(
            "the exchange's candle starts at {}, ours at {}",
            theirs.start.to_rfc3339(),
            ours.start.to_rfc3339()
        ));
    }
    let diffs = diffs(ours, theirs);
    if diffs.is_empty() {
        Verdict::Match
    } else {
        Verdict::Mismatch(diffs)
    }
}

/// Every published field that differs.
fn diffs(ours: &Candle, theirs: &ExchangeCandle) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    let mut exact = |field, ours: Decimal, theirs: Option<Decimal>| {
        if let Some(theirs) = theirs
            && ours != theirs
        {
            out.push(FieldDiff {
                field,
                ours,
                theirs,
            });
        }
    };
    exact(Field::Open, ours.open, Some(theirs.open));
    exact(Field::High, ours.high, Some(theirs.high));
    exact(Field::Low, ours.low, Some(theirs.low));
    exact(Field::Close, ours.close, Some(theirs.close));
    exact(Field::Volume, ours.volume, Some(theirs.volume));
    exact(Field::QuoteVolume, ours.quote_volume, theirs.quote_volume);
    exact(
        Field::Trades,
        Decimal::from(ours.trades),
        theirs.trades.map(Decimal::from),
    );
    exact(
        Field::TakerBuyVolume,
        ours.buy_volume,
        theirs.taker_buy_volume,
    );
    if let Some(their_vwap) = theirs.vwap {
        let our_vwap = ours.vwap().unwrap_or(Decimal::ZERO);
        if !same_at_their_digits(our_vwap, their_vwap) {
            out.push(FieldDiff {
                field: Field::Vwap,
                ours: our_vwap,
                theirs: their_vwap,
            });
        }
    }
    out
}

/// Whether `ours`, rounded to the decimals `theirs` is written with, equals `theirs`.
fn same_at_their_digits(ours: Decimal, theirs: Decimal) -> bool {
    let dp = theirs.scale();
    [
        RoundingStrategy::MidpointAwayFromZero,
        RoundingStrategy::MidpointNearestEven,
    ]
    .into_iter()
    .any(|s| ours.round_dp_with_strategy(dp, s) == theirs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::market::{Exchange, Source};
    use crate::pair::Pair;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn ours() -> Candle {
        Candle {
            pair: Pair::parse("BTC-USDT").unwrap(),
            source: Source::Exchange(Exchange::Binance),
            interval: MINUTE,
            start: Micros(1_700_000_040_000_000),
            open: d("100.5"),
            high: d("101"),
            low: d("99"),
            close: d("100"),
            volume: d("3"),
            quote_volume: d("300.5"),
            buy_volume: d("2"),
            sell_volume: d("1"),
            trades: 3,
            is_final: true,
            partial: false,
        }
    }

    fn binance() -> ExchangeCandle {
        ExchangeCandle {
            start: Micros(1_700_000_040_000_000),
            open: d("100.50000000"),
            high: d("101.00000000"),
            low: d("99.00000000"),
            close: d("100.00000000"),
            volume: d("3.00000000"),
            quote_volume: Some(d("300.50000000")),
            trades: Some(3),
            taker_buy_volume: Some(d("2.00000000")),
            vwap: None,
        }
    }

    #[test]
    fn equal_values_match_whatever_their_decimals() {
        assert_eq!(verdict(&ours(), &binance()), Verdict::Match);
    }

    #[test]
    fn every_field_is_caught() {
        let bump = |x: &mut Decimal| *x += d("0.00000001");
        type Change = Box<dyn Fn(&mut ExchangeCandle)>;
        let cases: Vec<(Field, Change)> = vec![
            (Field::Open, Box::new(move |c| bump(&mut c.open))),
            (Field::High, Box::new(move |c| bump(&mut c.high))),
            (Field::Low, Box::new(move |c| bump(&mut c.low))),
            (Field::Close, Box::new(move |c| bump(&mut c.close))),
            (Field::Volume, Box::new(move |c| bump(&mut c.volume))),
            (
                Field::QuoteVolume,
                Box::new(move |c| bump(c.quote_volume.as_mut().unwrap())),
            ),
            (Field::Trades, Box::new(|c| c.trades = Some(4))),
            (
                Field::TakerBuyVolume,
                Box::new(move |c| bump(c.taker_buy_volume.as_mut().unwrap())),
            ),
            (Field::Vwap, Box::new(|c| c.vwap = Some(d("100.1")))),
        ];
        for (field, change) in cases {
            let mut theirs = binance();
            change(&mut theirs);
            let Verdict::Mismatch(diffs) = verdict(&ours(), &theirs) else {
                panic!("{field} not caught");
            };
            assert_eq!(diffs.len(), 1, "{diffs:?}");
            assert_eq!(diffs[0].field, field);
        }
    }

    #[test]
    fn a_mismatch_names_ours_and_theirs() {
        let mut theirs = binance();
        theirs.trades = Some(5);
        theirs.high = d("102");
        let Verdict::Mismatch(diffs) = verdict(&ours(), &theirs) else {
            panic!("not a mismatch");
        };
        let text: Vec<String> = diffs.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["high ours 101 theirs 102", "trades ours 3 theirs 5"]);
    }

    #[test]
    fn fields_the_exchange_does_not_publish_are_not_compared() {
        let coinbase = ExchangeCandle {
            quote_volume: None,
            trades: None,
            taker_buy_volume: None,
            ..binance()
        };
        let mut different = ours();
        different.trades = 99;
        different.quote_volume = d("1");
        assert_eq!(verdict(&different, &coinbase), Verdict::Match);
    }

    #[test]
    fn kraken_vwap_is_compared_at_the_digits_kraken_gives() {
        // Ours: 300.5 / 3 = 100.1666…; Kraken writes it with one decimal.
        let kraken = |vwap: &str| ExchangeCandle {
            quote_volume: None,
            taker_buy_volume: None,
            vwap: Some(d(vwap)),
            ..binance()
        };
        assert_eq!(verdict(&ours(), &kraken("100.2")), Verdict::Match);
        assert_eq!(verdict(&ours(), &kraken("100.17")), Verdict::Match);
        assert!(matches!(
            verdict(&ours(), &kraken("100.1")),
            Verdict::Mismatch(_)
        ));
        // A half at the last digit matches either rounding.
        assert!(same_at_their_digits(d("1.25"), d("1.2")));
        assert!(same_at_their_digits(d("1.25"), d("1.3")));
    }

    #[test]
    fn another_minute_or_a_live_candle_is_unavailable() {
        let mut theirs = binance();
        theirs.start = Micros(theirs.start.0 + 60_000_000);
        assert!(matches!(verdict(&ours(), &theirs), Verdict::Unavailable(_)));
        let mut live = ours();
        live.is_final = false;
        assert!(matches!(
            verdict(&live, &binance()),
            Verdict::Unavailable(_)
        ));
        let mut five = ours();
        five.interval = Interval::seconds(5);
        assert!(matches!(
            verdict(&five, &binance()),
            Verdict::Unavailable(_)
        ));
    }
}
