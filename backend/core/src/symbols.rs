//! The one place where canonical pairs map to each exchange's own symbols and back.
//!
//! | exchange | WebSocket | REST |
//! |---|---|---|
//! | Binance | stream `btcusdt@trade`, payload `s` = `BTCUSDT` | `symbol=BTCUSDT` |
//! | Kraken (v2) | `BTC/USDT` | `pair=XBTUSDT` (BTC is `XBT` in REST and v1) |
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

/// The symbol the exchange's REST API uses for `pair`.
pub fn rest_symbol(exchange: Exchange, pair: Pair) -> String {
    match exchange {
        Exchange::Binance => pair.join(""),
        Exchange::Kraken => {
            let base = if pair.base.as_str() == "BTC" {
                "XBT"
            } else {
                pair.base.as_str()
            };
            let quote = if pair.quote.as_str() == "BTC" {
                "XBT"
            } else {
                pair.quote.as_str()
            };
            format!("{base}{quote}")
        }
        Exchange::Coinbase => pair.join("-"),
    }
}

/// The canonical pair for a symbol as the exchange writes it (WebSocket or REST form).
pub fn pair_from_symbol(exchange: Exchange, symbol: &str) -> Result<Pair, PairError> {
    match exchange {
        Exchange::Kraken => {
            let fixed = symbol.replace("XBT", "BTC");
            Pair::parse(&fixed)
        }
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
}
