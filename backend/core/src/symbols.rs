//! The one place where canonical pairs map to each exchange's own symbols and back.
//!
//! | exchange | WebSocket | REST |
//! |---|---|---|
//! | Binance | stream `btcusdt@trade`, payload `s` = `BTCUSDT` | `symbol=BTCUSDT` |
//! | Kraken (v2) | `BTC/USDT` | `pair=XBTUSDT` (BTC is `XBT`, DOGE is `XDG` in REST and v1; legacy keys such as `XXBTZUSD` are read too) |
//! | Coinbase | product id `BTC-USDT` | `/products/BTC-USDT/trades` |

use crate::market::Exchange;
use crate::pair::{Pair, PairError};

/// The symbol the exchange's WebSocket payloads carry for `pair`.
pub fn ws_symbol(exchange: Exchange, pair: Pair) -> String {
    match exchange {
        Exchange::Binance => pair.join(""),
        Exchange::Kraken => pair.join("/"),
        Exchange::Coinbase => pair.join("-"),
    }
}

/// Binance's stream name for the raw trade stream: `btcusdt@trade`.
pub fn binance_stream(pair: Pair) -> String {
    format!("{}@trade", pair.join("").to_ascii_lowercase())
}

/// Kraken's own asset names (REST, WebSocket v1 and `AssetPairs`), canonical first.
const KRAKEN_ASSETS: &[(&str, &str)] = &[("BTC", "XBT"), ("DOGE", "XDG")];

/// Kraken's name for a canonical asset: `XBT` for BTC, `XDG` for DOGE, others as they are.
pub fn kraken_asset(asset: &str) -> &str {
    KRAKEN_ASSETS
        .iter()
        .find(|(canonical, _)| *canonical == asset)
        .map_or(asset, |(_, kraken)| kraken)
}

/// The symbol the exchange's REST API uses for `pair`.
pub fn rest_symbol(exchange: Exchange, pair: Pair) -> String {
    match exchange {
        Exchange::Binance => pair.join(""),
        Exchange::Kraken => format!(
            "{}{}",
            kraken_asset(pair.base.as_str()),
            kraken_asset(pair.quote.as_str())
        ),
        Exchange::Coinbase => pair.join("-"),
    }
}

/// A Kraken symbol with canonical asset names: `XBT/USDT` → `BTC/USDT`, `XDGUSDT` →
/// `DOGEUSDT`, and the legacy key `XXBTZUSD` → `BTC/USD`.
fn kraken_canonical(symbol: &str) -> String {
    let legacy = symbol.len() == 8
        && symbol.is_ascii()
        && symbol.starts_with('X')
        && matches!(symbol.as_bytes()[4], b'X' | b'Z');
    let mut fixed = if legacy {
        format!("{}/{}", &symbol[1..4], &symbol[5..])
    } else {
        symbol.to_string()
    };
    for (canonical, kraken) in KRAKEN_ASSETS {
        fixed = fixed.replace(kraken, canonical);
    }
    fixed
}

/// The canonical pair for a symbol as the exchange writes it (WebSocket or REST form).
pub fn pair_from_symbol(exchange: Exchange, symbol: &str) -> Result<Pair, PairError> {
    match exchange {
        Exchange::Kraken => Pair::parse(&kraken_canonical(symbol)),
        Exchange::Binance | Exchange::Coinbase => Pair::parse(symbol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_round_trip_for_every_exchange() {
        for pair in Pair::defaults() {
            for e in Exchange::ALL {
                assert_eq!(pair_from_symbol(e, &ws_symbol(e, pair)).unwrap(), pair);
                assert_eq!(pair_from_symbol(e, &rest_symbol(e, pair)).unwrap(), pair);
            }
        }
        let btc = Pair::parse("BTC-USDT").unwrap();
        assert_eq!(ws_symbol(Exchange::Kraken, btc), "BTC/USDT");
        assert_eq!(rest_symbol(Exchange::Kraken, btc), "XBTUSDT");
        assert_eq!(binance_stream(btc), "btcusdt@trade");
        assert_eq!(ws_symbol(Exchange::Coinbase, btc), "BTC-USDT");
        assert_eq!(ws_symbol(Exchange::Binance, btc), "BTCUSDT");
    }

    #[test]
    fn kraken_names_doge_xdg_and_legacy_keys_read_back() {
        let doge = Pair::parse("DOGE-USDT").unwrap();
        assert_eq!(rest_symbol(Exchange::Kraken, doge), "XDGUSDT");
        assert_eq!(ws_symbol(Exchange::Kraken, doge), "DOGE/USDT");
        for symbol in ["XDGUSDT", "XDG/USDT", "DOGE/USDT"] {
            assert_eq!(pair_from_symbol(Exchange::Kraken, symbol).unwrap(), doge);
        }
        let btc_usd = Pair::parse("BTC-USD").unwrap();
        assert_eq!(
            pair_from_symbol(Exchange::Kraken, "XXBTZUSD").unwrap(),
            btc_usd
        );
        assert_eq!(kraken_asset("ETH"), "ETH");
    }
}
