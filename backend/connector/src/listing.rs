//! Which configured pairs the exchange lists and trades, from its own listing (Binance
//! `exchangeInfo`, Kraken `AssetPairs`, Coinbase `products`): pure types and rules.
//!
//! Each exchange's parser (`exchange/*/mod.rs`, `Venue::parse_listing`) finds every configured
//! pair in the listing by the names the listing itself gives (Binance `baseAsset`/`quoteAsset`,
//! Kraken `wsname`/`altname`/its key with `XBT`/`XDG` and legacy `XXBTZUSD` names, Coinbase
//! `base_currency`/`quote_currency`) and reports it as a [`PairListing`]: its [`Status`] and
//! the exchange's own symbol (or why it is not served). `rest::read_listing` asks; the binary
//! serves the [`served`] pairs, names the others in one warning each ([`PairListing::advice`])
//! and re-reads the listing periodically ([`changes`]).

use candles_core::{Exchange, Pair};
use std::collections::HashMap;

/// The Prometheus gauge: 1 for a pair's current listing status, 0 for the others, per
/// exchange, pair and status.
pub const PAIR_LISTED: &str = "connector_pair_listed";

/// A pair's listing on one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Listed and trading: served.
    Trading,
    /// Listed, but trading is halted (Binance `BREAK`/`HALT`, Kraken other than `online`,
    /// Coinbase not `online` or `trading_disabled`): not served.
    Halted,
    /// Listed as delisted: not served.
    Delisted,
    /// Not in the exchange's listing: not served.
    NotListed,
}

impl Status {
    /// Every status, in the order the gauge lists them.
    pub const ALL: [Status; 4] = [
        Status::Trading,
        Status::Halted,
        Status::Delisted,
        Status::NotListed,
    ];

    /// The name in reports and metrics: `trading`, `halted`, `delisted`, `not listed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Trading => "trading",
            Status::Halted => "halted",
            Status::Delisted => "delisted",
            Status::NotListed => "not listed",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One configured pair as the exchange's listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairListing {
    /// The pair.
    pub pair: Pair,
    /// Its status there.
    pub status: Status,
    /// The exchange's own symbol (with its own status word when not trading, e.g.
    /// `LINKUSDT: BREAK`), or why it is not listed.
    pub detail: String,
    /// The symbol the exchange lists it under (what its REST API is asked with); `None` when
    /// not listed.
    pub symbol: Option<String>,
}

impl PairListing {
    /// A pair the listing does not have.
    pub fn not_listed(exchange: Exchange, pair: Pair) -> PairListing {
        PairListing {
            pair,
            status: Status::NotListed,
            detail: format!("{exchange} does not list {pair}"),
            symbol: None,
        }
    }

    /// A pair the listing has under `symbol`, trading when `status` says so; `raw` is the
    /// exchange's own status word, kept in the detail when not trading.
    pub fn listed(pair: Pair, symbol: &str, status: Status, raw: &str) -> PairListing {
        let detail = match status {
            Status::Trading => symbol.to_string(),
            _ => format!("{symbol}: {raw}"),
        };
        PairListing {
            pair,
            status,
            detail,
            symbol: Some(symbol.to_string()),
        }
    }

    /// What the operator should know and do about this listing; `subscribed`: whether this
    /// run of the connector streams the pair (it subscribes at start only).
    pub fn advice(&self, exchange: Exchange, subscribed: bool) -> String {
        let (pair, detail) = (self.pair, &self.detail);
        match (self.status, subscribed) {
            (Status::Trading, true) => format!("{exchange} trades {pair} ({detail})"),
            (Status::Trading, false) => format!(
                "{exchange} trades {pair} ({detail}) now; not subscribed: restart the connector to stream it"
            ),
            (Status::Halted, true) => format!(
                "{exchange} halted trading in {pair} ({detail}); it stays subscribed: trades come when it trades again"
            ),
            (Status::Halted, false) => format!(
                "{exchange} lists {pair} but trading is halted ({detail}); not subscribed: restart the connector once it trades again"
            ),
            (Status::Delisted, _) => format!(
                "{exchange} has delisted {pair} ({detail}); no trades will come: remove it from --pairs"
            ),
            (Status::NotListed, _) => format!(
                "{exchange} does not list {pair}; no trades from {exchange} (the connectors of exchanges that list it serve it): remove it from --pairs for {exchange}, or check the spelling"
            ),
        }
    }
}

/// The pairs to subscribe to: those listed and trading, in the configured order.
pub fn served(listings: &[PairListing]) -> Vec<Pair> {
    listings
        .iter()
        .filter(|l| l.status == Status::Trading)
        .map(|l| l.pair)
        .collect()
}

/// The listed symbol of every served pair, for its REST requests.
pub fn symbols(listings: &[PairListing]) -> HashMap<Pair, String> {
    listings
        .iter()
        .filter(|l| l.status == Status::Trading)
        .filter_map(|l| Some((l.pair, l.symbol.clone()?)))
        .collect()
}

/// Every configured pair in `pairs` order: its entry in `found`, else not listed.
pub fn complete(exchange: Exchange, pairs: &[Pair], found: Vec<PairListing>) -> Vec<PairListing> {
    pairs
        .iter()
        .map(|&pair| {
            found
                .iter()
                .find(|l| l.pair == pair)
                .cloned()
                .unwrap_or_else(|| PairListing::not_listed(exchange, pair))
        })
        .collect()
}

/// The listings in `new` whose status differs from the one in `old` (a pair absent from `old`
/// counts as changed).
pub fn changes<'a>(old: &[PairListing], new: &'a [PairListing]) -> Vec<&'a PairListing> {
    new.iter()
        .filter(|n| {
            old.iter()
                .find(|o| o.pair == n.pair)
                .is_none_or(|o| o.status != n.status)
        })
        .collect()
}

/// Why none of the pairs is served: each pair and its reason, one per line.
pub fn none_served(exchange: Exchange, listings: &[PairListing]) -> String {
    listings
        .iter()
        .map(|l| format!("{}: {} ({})", l.pair, l.status, l.advice(exchange, false)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Sets [`PAIR_LISTED`] for every listing: 1 for its status, 0 for the others.
pub fn record_gauge(exchange: Exchange, listings: &[PairListing]) {
    for l in listings {
        for status in Status::ALL {
            metrics::gauge!(PAIR_LISTED, "exchange" => exchange.as_str(), "pair" => l.pair.to_string(), "status" => status.as_str())
                .set(if status == l.status { 1.0 } else { 0.0 });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pair(s: &str) -> Pair {
        Pair::parse(s).unwrap()
    }

    #[test]
    fn only_trading_pairs_are_served_and_missing_ones_are_not_listed() {
        let (btc, eth, doge) = (pair("BTC-USDT"), pair("ETH-USDT"), pair("DOGE-USDT"));
        let found = vec![
            PairListing::listed(eth, "ETHUSDT", Status::Halted, "BREAK"),
            PairListing::listed(btc, "BTCUSDT", Status::Trading, "TRADING"),
        ];
        let all = complete(Exchange::Binance, &[btc, eth, doge], found);
        assert_eq!(
            all.iter().map(|l| l.status).collect::<Vec<_>>(),
            [Status::Trading, Status::Halted, Status::NotListed]
        );
        assert_eq!(all[0].detail, "BTCUSDT");
        assert_eq!(all[1].detail, "ETHUSDT: BREAK");
        assert_eq!(served(&all), [btc]);
        assert_eq!(symbols(&all), HashMap::from([(btc, "BTCUSDT".to_string())]));
        let why = none_served(Exchange::Binance, &all[1..]);
        assert!(why.contains("ETH-USDT: halted") && why.contains("DOGE-USDT: not listed"));
        assert!(all[1].advice(Exchange::Binance, false).contains("restart"));
        assert!(
            all[1]
                .advice(Exchange::Binance, true)
                .contains("stays subscribed")
        );
        assert!(all[0].advice(Exchange::Binance, false).contains("restart"));
        assert!(!all[0].advice(Exchange::Binance, true).contains("restart"));
        assert!(
            all[2]
                .advice(Exchange::Binance, false)
                .contains("remove it from --pairs")
        );
    }

    #[test]
    fn a_status_change_is_found_on_a_re_read() {
        let btc = pair("BTC-USDT");
        let before = vec![PairListing::listed(
            btc,
            "BTCUSDT",
            Status::Trading,
            "TRADING",
        )];
        let same = before.clone();
        assert!(changes(&before, &same).is_empty());
        let halted = vec![PairListing::listed(btc, "BTCUSDT", Status::Halted, "HALT")];
        assert_eq!(changes(&before, &halted), vec![&halted[0]]);
        assert_eq!(Status::NotListed.to_string(), "not listed");
    }
}
