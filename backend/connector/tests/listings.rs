//! Each exchange's listing read by the connector's library (`read_listing`) from the simulator
//! of that exchange, with pairs it does not list (`unlisted`) and pairs in a trading halt
//! (`halted`): every pair gets its status and the exchange's own symbol, BTC-JPY is found under
//! Kraken's legacy key `XXBTZJPY`, and Binance's refusal of a symbol list with one unknown
//! symbol falls back to asking each pair alone. No Kafka, no Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use candles_connector::listing::{self, Status};
use candles_connector::{ConnectorConfig, read_listing};
use candles_core::{Exchange, Pair};
use exchange_sim::SimConfig;
use std::collections::HashMap;

const PAIRS: &str = "BTC-USDT,DOGE-USDT,ETH-BTC,BTC-JPY,LINK-USDT";

/// What `exchange`'s simulator lists of [`PAIRS`]: (pair, status, the exchange's symbol).
fn expected(exchange: Exchange) -> Vec<(&'static str, Status, &'static str)> {
    use Status::{Halted, NotListed, Trading};
    match exchange {
        Exchange::Binance => vec![
            ("BTC-USDT", Trading, "BTCUSDT"),
            ("DOGE-USDT", Trading, "DOGEUSDT"),
            ("ETH-BTC", Trading, "ETHBTC"),
            ("BTC-JPY", NotListed, "binance does not list BTC-JPY"),
            ("LINK-USDT", Halted, "LINKUSDT: BREAK"),
        ],
        Exchange::Kraken => vec![
            ("BTC-USDT", Trading, "XBTUSDT"),
            ("DOGE-USDT", Trading, "XDGUSDT"),
            ("ETH-BTC", Trading, "XETHXXBT"),
            ("BTC-JPY", Trading, "XXBTZJPY"),
            ("LINK-USDT", Halted, "LINKUSDT: cancel_only"),
        ],
        Exchange::Coinbase => vec![
            ("BTC-USDT", Trading, "BTC-USDT"),
            ("DOGE-USDT", Trading, "DOGE-USDT"),
            ("ETH-BTC", Trading, "ETH-BTC"),
            ("BTC-JPY", NotListed, "coinbase does not list BTC-JPY"),
            ("LINK-USDT", Halted, "LINK-USDT: trading_disabled"),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exchange_names_each_pair_with_its_status_and_own_symbol() {
    let pairs = Pair::parse_list(PAIRS).unwrap();
    let jpy = Pair::parse("BTC-JPY").unwrap();
    let link = Pair::parse("LINK-USDT").unwrap();
    for exchange in Exchange::ALL {
        let unlisted = if exchange == Exchange::Kraken {
            Vec::new()
        } else {
            vec![jpy]
        };
        let sim = exchange_sim::start(SimConfig {
            exchange,
            pairs: pairs.clone(),
            unlisted,
            halted: vec![link],
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let mut config = ConnectorConfig::new(exchange, pairs.clone());
        config.rest_url = Some(sim.rest_url());
        let listings = read_listing(&config).await.unwrap();
        let got: Vec<(String, Status, String)> = listings
            .iter()
            .map(|l| (l.pair.to_string(), l.status, l.detail.clone()))
            .collect();
        let want: Vec<(String, Status, String)> = expected(exchange)
            .into_iter()
            .map(|(p, s, d)| (p.to_string(), s, d.to_string()))
            .collect();
        assert_eq!(got, want, "{exchange}");
        let symbols: HashMap<Pair, String> = listing::symbols(&listings);
        assert_eq!(
            listing::served(&listings).len(),
            symbols.len(),
            "{exchange}"
        );
        sim.stop().await;
    }
}
