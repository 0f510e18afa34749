//! Canonical trading pairs.
//!
//! A pair is written `BASE-QUOTE` in upper case (`BTC-USDT`). Every CLI and API input accepts
//! `btcusdt`, `BTC-USDT`, `btc/usdt` and `BTC_USDT`, case-insensitively. The concatenated form
//! is split at a known quote asset ([`KNOWN_QUOTES`]). A [`Pair`] is `Copy` and holds no heap
//! memory, so the engine can key maps by it without allocating per trade.

use std::fmt;
use std::str::FromStr;

/// The longest asset symbol we accept (e.g. `FDUSD` is 5; leave room for longer tickers).
pub const MAX_ASSET_LEN: usize = 10;

/// Quote assets recognised when a pair is written without a separator (`btcusdt`), longest first
/// so that `USDT` wins over `USD`.
pub const KNOWN_QUOTES: &[&str] = &[
    "FDUSD", "USDT", "USDC", "TUSD", "BUSD", "EUR", "USD", "GBP", "BTC", "ETH", "BNB",
];

/// The pairs the system watches when none are given.
pub const DEFAULT_PAIRS: &str = "BTC-USDT,ETH-USDT,SOL-USDT";

/// One asset symbol, upper-case ASCII letters and digits, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Asset {
    bytes: [u8; MAX_ASSET_LEN],
    len: u8,
}

impl Asset {
    /// Parses one asset symbol; letters are upper-cased.
    pub fn parse(text: &str) -> Option<Asset> {
        let len = text.len();
        if len == 0 || len > MAX_ASSET_LEN || !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let mut bytes = [0u8; MAX_ASSET_LEN];
        for (slot, b) in bytes.iter_mut().zip(text.bytes()) {
            *slot = b.to_ascii_uppercase();
        }
        Some(Asset {
            bytes,
            len: len as u8,
        })
    }

    /// The symbol as text, e.g. `"BTC"`.
    pub fn as_str(&self) -> &str {
        // Only ASCII alphanumerics are ever stored, so this cannot fail.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl fmt::Debug for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A canonical pair such as `BTC-USDT`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    /// The asset bought and sold (`BTC`).
    pub base: Asset,
    /// The asset prices are quoted in (`USDT`).
    pub quote: Asset,
}

/// Why a pair could not be parsed. The message names the input and the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid pair {input}: {reason}; write pairs as BASE-QUOTE, e.g. btcusdt, BTC-USDT, btc/usdt or BTC_USDT (without a separator the quote must be one of {quotes})",
    quotes = KNOWN_QUOTES.join(", ")
)]
pub struct PairError {
    /// The text as the user wrote it, as [`crate::excerpt`] shows it (quoted, cut when long).
    pub input: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

impl Pair {
    /// Parses any accepted spelling: `btcusdt`, `BTC-USDT`, `btc/usdt`, `BTC_USDT`.
    pub fn parse(input: &str) -> Result<Pair, PairError> {
        let err = |reason| PairError {
            input: crate::excerpt(input),
            reason,
        };
        let text = input.trim();
        if text.is_empty() {
            return Err(err("it is empty"));
        }
        let seps: Vec<usize> = text
            .char_indices()
            .filter(|(_, c)| matches!(c, '-' | '/' | '_'))
            .map(|(i, _)| i)
            .collect();
        let (base, quote) = match seps.as_slice() {
            [] => {
                let upper = text.to_ascii_uppercase();
                let quote = KNOWN_QUOTES
                    .iter()
                    .find(|q| upper.len() > q.len() && upper.ends_with(*q))
                    .ok_or_else(|| {
                        err("it has no separator and does not end in a known quote asset")
                    })?;
                let split = text.len() - quote.len();
                (&text[..split], &text[split..])
            }
            [i] => (&text[..*i], &text[*i + 1..]),
            _ => return Err(err("it has more than one separator")),
        };
        let base = Asset::parse(base)
            .ok_or_else(|| err("the base asset is not 1-10 letters or digits"))?;
        let quote = Asset::parse(quote)
            .ok_or_else(|| err("the quote asset is not 1-10 letters or digits"))?;
        if base == quote {
            return Err(err("base and quote are the same asset"));
        }
        Ok(Pair { base, quote })
    }

    /// Parses a comma-separated list (`btcusdt,eth-usdt`), rejecting duplicates.
    pub fn parse_list(input: &str) -> Result<Vec<Pair>, PairError> {
        let mut pairs = Vec::new();
        for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let pair = Pair::parse(part)?;
            if !pairs.contains(&pair) {
                pairs.push(pair);
            }
        }
        if pairs.is_empty() {
            return Err(PairError {
                input: crate::excerpt(input),
                reason: "it names no pair",
            });
        }
        Ok(pairs)
    }

    /// The default pairs: BTC-USDT, ETH-USDT, SOL-USDT.
    pub fn defaults() -> Vec<Pair> {
        Pair::parse_list(DEFAULT_PAIRS).unwrap_or_default()
    }

    /// Whether `bytes` is this pair's canonical text (`BTC-USDT`), without building it: the
    /// check of every Kafka record's key.
    pub fn is_written(&self, bytes: &[u8]) -> bool {
        let (base, quote) = (
            self.base.as_str().as_bytes(),
            self.quote.as_str().as_bytes(),
        );
        bytes.len() == base.len() + 1 + quote.len()
            && bytes.starts_with(base)
            && bytes[base.len()] == b'-'
            && bytes.ends_with(quote)
    }

    /// `BASE` + `QUOTE` with a separator of your choice, e.g. `("BTC", "/", "USDT")` → `BTC/USDT`.
    pub fn join(&self, sep: &str) -> String {
        format!("{}{sep}{}", self.base, self.quote)
    }
}

impl FromStr for Pair {
    type Err = PairError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pair::parse(s)
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.base, self.quote)
    }
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl serde::Serialize for Pair {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Pair {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Pair::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_spelling_gives_the_canonical_pair() {
        for input in [
            "btcusdt",
            "BTCUSDT",
            "BTC-USDT",
            "btc-usdt",
            "btc/usdt",
            "BTC_USDT",
            " BtC_uSdT ",
        ] {
            assert_eq!(
                Pair::parse(input).unwrap().to_string(),
                "BTC-USDT",
                "{input}"
            );
        }
        assert_eq!(Pair::parse("xrpeth").unwrap().to_string(), "XRP-ETH");
        assert_eq!(Pair::parse("ethusd").unwrap().to_string(), "ETH-USD");
        assert_eq!(Pair::parse("solusdc").unwrap().to_string(), "SOL-USDC");
    }

    #[test]
    fn is_written_matches_only_the_canonical_text() {
        let p = Pair::parse("btcusdt").unwrap();
        assert!(p.is_written(b"BTC-USDT"));
        for other in [
            &b"BTC-USD"[..],
            b"btc-usdt",
            b"BTCUSDT",
            b"BTC_USDT",
            b"BTC-USDTX",
            b"",
        ] {
            assert!(!p.is_written(other), "{other:?}");
        }
    }

    #[test]
    fn malformed_pairs_are_errors_that_name_the_input_and_the_forms() {
        for input in [
            "",
            "btc",
            "usdt",
            "btc--usdt",
            "btc-",
            "-usdt",
            "btc-usd-t",
            "b@c-usdt",
            "usdt-usdt",
            "averyveryverylongcoin-usdt",
        ] {
            let err = Pair::parse(input).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{input:?}")), "{msg}");
            assert!(msg.contains("BTC-USDT"), "{msg}");
        }
    }

    #[test]
    fn lists_parse_and_deduplicate() {
        let pairs = Pair::parse_list("btcusdt, ETH-USDT,btc/usdt").unwrap();
        assert_eq!(
            pairs.iter().map(Pair::to_string).collect::<Vec<_>>(),
            ["BTC-USDT", "ETH-USDT"]
        );
        assert!(Pair::parse_list(" , ").is_err());
        assert_eq!(Pair::defaults().len(), 3);
    }

    #[test]
    fn pair_is_small_and_copy() {
        assert!(std::mem::size_of::<Pair>() <= 24);
    }
}
