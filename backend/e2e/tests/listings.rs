//! Issue 14, "pairs from the exchanges' own listings", through the full stack: 20 pairs asked of
//! all three connectors, each `exchange-sim` listing its own subset (`--unlisted`, `--halted`)
//! → three `candles-connector` (each reads its exchange's listing: Binance `exchangeInfo`,
//! Kraken `AssetPairs`, Coinbase `products`) → Apache Kafka → `candles-service` → Redis → gRPC.
//!
//! - BTC-JPY is listed by Kraken alone, under its own legacy key `XXBTZJPY` (wsname `XBT/JPY`;
//!   the real Kraken lists it so, Binance and Coinbase do not): served from Kraken only.
//! - Binance does not list the USD pairs (as binance.com) and has LINK-USDT in a halt (`BREAK`);
//!   Kraken does not list AVAX-USDT and has XRP-USD (`XXRPZUSD`) halted (`cancel_only`); Coinbase does not list
//!   ADA-USDT and has LTC-USD halted (`trading_disabled`). ETH-BTC is Kraken's `XETHXXBT`.
//!
//! Checked: every pair gets candles from exactly the exchanges that list and trade it (the
//! per-exchange sources of its candles); `ListMarkets` names each pair's listing on each exchange
//! (the halted and the unlisted ones with their status, Kraken's own key for BTC-JPY); each
//! connector's log names every pair it does not serve in a WARN line with its status, and its
//! `connector_pair_listed` gauge has each pair's status; with trades dropped on the WebSockets,
//! Kraken fills BTC-JPY's id gaps from REST asking for it under its listed key.
//!
//! Needs Apache Kafka's jars and `redis-server` (scripts/install-test-deps.sh). Logs are kept
//! under `$TMPDIR/candles-e2e/` when it fails.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use candles_core::{Exchange, Pair};
use candles_e2e::client::{Collector, Subscription};
use candles_e2e::stack::{Stack, StackConfig};
use candles_proto::v1::ListMarketsRequest;
use candles_proto::v1::candle_service_client::CandleServiceClient;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The 20 pairs asked of every connector.
const PAIRS: &str = "BTC-USDT,ETH-USDT,SOL-USDT,XRP-USDT,DOGE-USDT,ADA-USDT,LTC-USDT,DOT-USDT,\
LINK-USDT,AVAX-USDT,BTC-USD,ETH-USD,SOL-USD,DOGE-USD,XRP-USD,LTC-USD,BTC-EUR,ETH-EUR,ETH-BTC,BTC-JPY";

/// What each simulated exchange does not list, and what it lists in a trading halt.
const LISTINGS: [(Exchange, &str, &str); 3] = [
    (
        Exchange::Binance,
        "BTC-USD,ETH-USD,SOL-USD,DOGE-USD,XRP-USD,LTC-USD,BTC-JPY",
        "LINK-USDT",
    ),
    (Exchange::Kraken, "AVAX-USDT", "XRP-USD"),
    (Exchange::Coinbase, "ADA-USDT,BTC-JPY", "LTC-USD"),
];

/// How long the candles may take to come from every exchange that trades a pair.
const PATIENCE: Duration = Duration::from_secs(40);

fn pairs() -> Vec<Pair> {
    Pair::parse_list(PAIRS).unwrap()
}

fn list(text: &str) -> Vec<Pair> {
    Pair::parse_list(text).unwrap()
}

/// The expected status of `pair` on `exchange`: `trading`, `halted` or `not listed`.
fn expected_status(exchange: Exchange, pair: Pair) -> &'static str {
    let (_, unlisted, halted) = LISTINGS.iter().find(|(e, ..)| *e == exchange).unwrap();
    if list(unlisted).contains(&pair) {
        "not listed"
    } else if list(halted).contains(&pair) {
        "halted"
    } else {
        "trading"
    }
}

fn config() -> StackConfig {
    let mut c = StackConfig::new("listings");
    c.instances = 1;
    c.pairs = PAIRS.into();
    c.rate = 200.0;
    c.max_trades = 0;
    c.trade_logs = false;
    // Id gaps, filled from REST under each exchange's listed symbol (Kraken's `XXBTZJPY`).
    c.sim_args = ["--drop-ratio", "0.05"].map(String::from).to_vec();
    // Re-read during the test: an unchanged listing is not logged again.
    c.connector_args = ["--listing-every", "2s"].map(String::from).to_vec();
    c.sim_args_of = LISTINGS
        .iter()
        .map(|(e, unlisted, halted)| {
            let args = ["--unlisted", unlisted, "--halted", halted];
            (*e, args.map(String::from).to_vec())
        })
        .collect();
    c
}

/// The (pair, exchange) of every final exchange candle received so far.
fn seen(client: &Collector) -> BTreeSet<(String, String)> {
    client
        .received()
        .finals
        .iter()
        .filter(|g| g.candle.source != "composite")
        .map(|g| (g.candle.pair.clone(), g.candle.source.clone()))
        .collect()
}

/// Every (pair, exchange) that must have candles: the exchange lists and trades the pair.
fn owed() -> BTreeSet<(String, String)> {
    let mut owed = BTreeSet::new();
    for pair in pairs() {
        for e in Exchange::ALL {
            if expected_status(e, pair) == "trading" {
                owed.insert((pair.to_string(), e.as_str().to_string()));
            }
        }
    }
    owed
}

/// `ListMarkets`: pair → exchange → (status, detail).
fn markets(
    rt: &tokio::runtime::Runtime,
    url: &str,
) -> BTreeMap<String, BTreeMap<String, (String, String)>> {
    rt.block_on(async {
        let mut client = CandleServiceClient::connect(url.to_string()).await.unwrap();
        let markets = client
            .list_markets(ListMarketsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .markets;
        markets
            .into_iter()
            .map(|m| {
                let by_exchange = m
                    .listings
                    .into_iter()
                    .map(|l| (l.source, (l.status, l.detail)))
                    .collect();
                (m.pair, by_exchange)
            })
            .collect()
    })
}

/// Asserts that every exchange's reported listing of every pair has the expected status.
fn check_listings(listed: &BTreeMap<String, BTreeMap<String, (String, String)>>) {
    for pair in pairs() {
        let by_exchange = listed
            .get(&pair.to_string())
            .unwrap_or_else(|| panic!("ListMarkets does not list {pair}: {listed:#?}"));
        for e in Exchange::ALL {
            let (status, detail) = by_exchange
                .get(e.as_str())
                .unwrap_or_else(|| panic!("{pair}: no listing from {e}: {by_exchange:?}"));
            assert_eq!(status, expected_status(e, pair), "{pair} on {e}: {detail}");
        }
    }
    let jpy = &listed["BTC-JPY"]["kraken"];
    assert_eq!(jpy.1, "XXBTZJPY", "Kraken's own key for BTC-JPY");
    assert!(listed["LINK-USDT"]["binance"].1.contains("BREAK"));
    assert_eq!(listed["ETH-BTC"]["kraken"].1, "XETHXXBT");
    assert_eq!(
        listed["DOGE-USDT"]["kraken"].1, "XDGUSDT",
        "Kraken calls DOGE XDG"
    );
    assert_eq!(listed["XRP-USD"]["kraken"].1, "XXRPZUSD: cancel_only");
}

/// Asserts each connector's `connector_pair_listed` gauge (1 for the expected status) and that
/// Kraken filled BTC-JPY's gaps from REST, asking under its listed key, with nothing unfilled.
fn check_metrics(stack: &Stack) {
    let metrics = stack.counters_by_process(&[
        "connector_pair_listed",
        "connector_trades_backfilled_total",
        "connector_gap_unfilled_total",
    ]);
    for e in Exchange::ALL {
        for pair in pairs() {
            let status = expected_status(e, pair);
            let key = format!(
                "candles-connector-{e} connector_pair_listed{{exchange=\"{e}\",pair=\"{pair}\",status=\"{status}\"}}"
            );
            assert_eq!(metrics.get(&key), Some(&1.0), "{key}: {metrics:#?}");
        }
    }
    assert!(jpy(&metrics, BACKFILLED) > 0.0, "{metrics:#?}");
    assert_eq!(
        jpy(&metrics, "connector_gap_unfilled_total"),
        0.0,
        "{metrics:#?}"
    );
}

/// Trades Kraken's connector fetched from REST for BTC-JPY.
const BACKFILLED: &str = "connector_trades_backfilled_total";

/// Kraken's connector's metric `name` of BTC-JPY in `metrics`, 0 when absent.
fn jpy(metrics: &BTreeMap<String, f64>, name: &str) -> f64 {
    let key = format!("candles-connector-kraken {name}{{exchange=\"kraken\",pair=\"BTC-JPY\"}}");
    metrics.get(&key).copied().unwrap_or(0.0)
}

/// Whether Kraken's connector has filled a BTC-JPY gap from REST yet.
fn jpy_backfilled(stack: &Stack) -> bool {
    jpy(&stack.counters_by_process(&[BACKFILLED]), BACKFILLED) > 0.0
}

/// Asserts that each connector's log names every pair it does not serve in one WARN line (its
/// re-reads of an unchanged listing log nothing).
fn check_logs(stack: &Stack) {
    for e in Exchange::ALL {
        let path = stack.log_dir().join(format!("connector-{e}.log"));
        let log = std::fs::read_to_string(&path).unwrap();
        for pair in pairs() {
            let status = expected_status(e, pair);
            if status == "trading" {
                continue;
            }
            let named = log
                .lines()
                .filter(|l| {
                    l.contains("WARN") && l.contains(&format!("pair={pair} ")) && l.contains(status)
                })
                .count();
            assert_eq!(
                named,
                1,
                "{}: not one WARN line names {pair} as {status}",
                path.display()
            );
        }
    }
}

#[test]
fn twenty_pairs_are_served_from_exactly_the_exchanges_that_list_and_trade_them() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut stack = Stack::start(config()).unwrap();
    let url = stack.grpc_urls()[0].clone();
    let sub = Subscription {
        pairs: pairs().iter().map(Pair::to_string).collect(),
        sources: ["binance", "kraken", "coinbase"].map(String::from).to_vec(),
        history: 100,
        live_updates: false,
        interval: None,
        verifications: false,
    };
    let client = Collector::start(rt.handle(), "client", vec![url.clone()], sub);
    stack.start_feeds().unwrap();
    let owed = owed();
    assert_eq!(
        owed.iter().map(|(p, _)| p).collect::<BTreeSet<_>>().len(),
        20
    );
    let deadline = Instant::now() + PATIENCE;
    while !(owed.is_subset(&seen(&client)) && jpy_backfilled(&stack)) && Instant::now() < deadline {
        stack.check_running().unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    // A few more windows, so a candle from an exchange that must not have one would show.
    std::thread::sleep(Duration::from_secs(3));
    let seen = seen(&client);
    let missing: Vec<_> = owed.difference(&seen).collect();
    let extra: Vec<_> = seen.difference(&owed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "candles missing from {missing:?}, from exchanges that do not trade the pair {extra:?}"
    );
    check_listings(&markets(&rt, &url));
    check_logs(&stack);
    check_metrics(&stack);
    stack.shutdown();
}
