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
    /// How many exchanges there are: the length of [`Exchange::ALL`] and of every per-exchange
    /// array (the engine's series, for one).
    pub const COUNT: usize = 3;

    /// Every exchange, in a fixed order (which is also the tie-break order across exchanges).
    /// THE exchange list: adding an exchange means adding its variant, its entry here and its
    /// name in [`Exchange::as_str`]; everything else (names, parsing, sources) derives from it.
    pub const ALL: [Exchange; Exchange::COUNT] =
        [Exchange::Binance, Exchange::Kraken, Exchange::Coinbase];

    /// Lower-case name: `binance`, `kraken`, `coinbase`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Exchange::Binance => "binance",
            Exchange::Kraken => "kraken",
            Exchange::Coinbase => "coinbase",
        }
    }

    /// The position of this exchange in [`Exchange::ALL`] (`0..COUNT`), for per-exchange arrays.
    pub const fn index(self) -> usize {
        // The variants are declared in the order of `ALL` (a test checks it).
        self as usize
    }

    /// Every exchange's name, comma-separated in the order of [`Exchange::ALL`]:
    /// `binance, kraken, coinbase`.
    pub fn names() -> String {
        Exchange::ALL.map(Exchange::as_str).join(", ")
    }
}

// `Exchange::index` is the position in `Exchange::ALL`: checked when compiling.
const _: () = {
    let mut i = 0;
    while i < Exchange::COUNT {
        assert!(
            Exchange::ALL[i].index() == i,
            "declare the variants in the order of ALL"
        );
        i += 1;
    }
};

/// The error for an unknown exchange or source name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {input}: expected one of {expected}")]
pub struct NameError {
    /// What was being parsed: "exchange" or "source".
    pub what: &'static str,
    /// The text given, as [`crate::excerpt`] shows it (quoted, cut when long).
    pub input: String,
    /// The accepted names (from [`Exchange::ALL`]).
    pub expected: String,
}

impl FromStr for Exchange {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        Exchange::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| NameError {
                what: "exchange",
                input: crate::excerpt(s),
                expected: Exchange::names(),
            })
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
    pub const ALL: [Source; Exchange::COUNT + 1] = {
        let mut all = [Source::Composite; Exchange::COUNT + 1];
        let mut i = 0;
        while i < Exchange::COUNT {
            all[i + 1] = Source::Exchange(Exchange::ALL[i]);
            i += 1;
        }
        all
    };

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
                expected: format!("composite, {}", Exchange::names()),
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

    #[test]
    fn the_exchange_list_is_the_one_order() {
        for (i, e) in Exchange::ALL.into_iter().enumerate() {
            assert_eq!(e.index(), i, "{e}");
            assert_eq!(e.as_str().parse::<Exchange>().unwrap(), e);
            assert_eq!(Source::ALL[i + 1], Source::Exchange(e));
        }
        assert_eq!(Exchange::names(), "binance, kraken, coinbase");
        let err = "ftx".parse::<Exchange>().unwrap_err().to_string();
        assert!(
            err.ends_with("expected one of binance, kraken, coinbase"),
            "{err}"
        );
    }
}
