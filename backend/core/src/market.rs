//! Exchanges, candle sources and taker sides.

use std::fmt;
use std::str::FromStr;

/// An exchange the system has a connector for.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Exchange {
    /// Binance spot.
    Binance,
    /// Kraken spot (WebSocket v2).
    Kraken,
    /// Coinbase Exchange.
    Coinbase,
}

impl Exchange {
    /// Every exchange, in a fixed order (which is also the tie-break order across exchanges).
    pub const ALL: [Exchange; 3] = [Exchange::Binance, Exchange::Kraken, Exchange::Coinbase];

    /// Lower-case name: `binance`, `kraken`, `coinbase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Exchange::Binance => "binance",
            Exchange::Kraken => "kraken",
            Exchange::Coinbase => "coinbase",
        }
    }
}

/// The error for an unknown exchange or source name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {input}: expected one of {expected}")]
pub struct NameError {
    /// What was being parsed: "exchange" or "source".
    pub what: &'static str,
    /// The text given, as [`crate::excerpt`] shows it (quoted, cut when long).
    pub input: String,
    /// The accepted names.
    pub expected: &'static str,
}

impl FromStr for Exchange {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "binance" => Ok(Exchange::Binance),
            "kraken" => Ok(Exchange::Kraken),
            "coinbase" => Ok(Exchange::Coinbase),
            _ => Err(NameError {
                what: "exchange",
                input: crate::excerpt(s),
                expected: "binance, kraken, coinbase",
            }),
        }
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a candle's trades come from: one exchange, or all of them together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// All exchanges' trades for the pair.
    Composite,
    /// One exchange's trades.
    Exchange(Exchange),
}

impl Source {
    /// Every source: the composite first, then each exchange.
    pub const ALL: [Source; 4] = [
        Source::Composite,
        Source::Exchange(Exchange::Binance),
        Source::Exchange(Exchange::Kraken),
        Source::Exchange(Exchange::Coinbase),
    ];

    /// `composite` or the exchange's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Composite => "composite",
            Source::Exchange(e) => e.as_str(),
        }
    }
}

impl FromStr for Source {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("composite") {
            return Ok(Source::Composite);
        }
        s.parse::<Exchange>()
            .map(Source::Exchange)
            .map_err(|_| NameError {
                what: "source",
                input: crate::excerpt(s),
                expected: "composite, binance, kraken, coinbase",
            })
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The taker side of a trade: the side of the order that crossed the spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The taker bought (an up-tick).
    Buy,
    /// The taker sold (a down-tick).
    Sell,
    /// The exchange did not say.
    Unknown,
}

impl Side {
    /// `buy`, `sell` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
            Side::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_errors_list_the_choices() {
        for s in Source::ALL {
            assert_eq!(s.as_str().parse::<Source>().unwrap(), s);
        }
        assert_eq!("KRAKEN".parse::<Exchange>().unwrap(), Exchange::Kraken);
        let err = "ftx".parse::<Source>().unwrap_err().to_string();
        assert!(
            err.contains("\"ftx\"") && err.contains("composite, binance"),
            "{err}"
        );
    }
}
