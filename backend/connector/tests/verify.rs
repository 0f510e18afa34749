//! The verifier against real exchange simulators: our final 1-minute candles, built by the
//! engine from exactly the simulator's own trades, are fed to `candles_connector::verify`,
//! which asks the simulator's candle endpoint through the connector's paced REST client.
//!
//! - every pair's minute is `match` on each exchange;
//! - with trades lost without an id gap (`hide_ratio` 0.2) every pair's minute is `mismatch`,
//!   naming the fields the lost trades change;
//! - under the simulator's REST limit, with the client paced faster than the exchange allows
//!   (as two connectors behind one IP would be), the exchange answers with its rate-limit error,
//!   the verifier never asks while told to wait, and still reaches every verdict.
//!
//! Each test waits for the end of the minute the simulator started in (at most ~70 s).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use candles_connector::ConnectorConfig;
use candles_connector::pacer::{Pacer, RestLimit};
use candles_connector::verify::{Settings, Verifier};
use candles_core::verify::MINUTE;
use candles_core::{Candle, ClockMode, Engine, EngineConfig, Exchange, Micros, Pair, Source};
use candles_proto::v1;
use exchange_sim::{SimConfig, SimHandle, TradeSource};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The engine's grace: a minute's candle is final this long after its end.
const GRACE: Duration = Duration::from_millis(1_500);

fn pairs(names: &[&str]) -> Vec<Pair> {
    names.iter().map(|p| Pair::parse(p).unwrap()).collect()
}

/// A simulator of `exchange` (REST limit on) trading `pairs`.
async fn sim(exchange: Exchange, pairs: &[Pair], change: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut config = SimConfig {
        exchange,
        pairs: pairs.to_vec(),
        source: TradeSource::Synthetic {
            rate: 40.0 * pairs.len() as f64,
        },
        rest_limit: true,
        seed: 15,
        ..SimConfig::default()
    };
    change(&mut config);
    exchange_sim::start(config).await.expect("simulator starts")
}

/// The minute to verify: the current one, or the next when less than 10 s of it are left (so
/// every pair has trades in it).
fn minute_to_verify() -> Micros {
    let now = Micros::now();
    let start = MINUTE.window_start(now);
    if MINUTE.window_end(start).0 - now.0 < 10_000_000 {
        MINUTE.window_end(start)
    } else {
        start
    }
}

/// Sleeps until the wall clock reaches `t`.
async fn sleep_until(t: Micros) {
    let wait = t.0 - Micros::now().0;
    if wait > 0 {
        tokio::time::sleep(Duration::from_micros(wait as u64)).await;
    }
}

/// Our final 1-minute candles of `exchange` for the minute at `start`, built by the engine from
/// the simulator's trades (what the WebSocket carried, nothing hidden), once that minute is final.
async fn our_candles(sim: &SimHandle, exchange: Exchange, start: Micros) -> Vec<Candle> {
    let end = MINUTE.window_end(start);
    sleep_until(Micros(end.0 + GRACE.as_micros() as i64 + 100_000)).await;
    let mut engine = Engine::new(EngineConfig {
        interval: MINUTE,
        grace: candles_core::time::Duration::from_millis(GRACE.as_millis() as i64),
        clock: ClockMode::Wall,
    });
    for trade in sim.trades() {
        engine.apply(&trade);
    }
    let mut finals = Vec::new();
    engine.advance(Micros::now(), &mut finals);
    finals.retain(|c| c.start == start && c.source == Source::Exchange(exchange));
    finals
}

/// Verifies `exchange`'s candles of one minute (the REST client paced by `pace`, or at the
/// exchange's public limit) and returns each pair's verdict.
async fn verdicts(
    sim: &SimHandle,
    exchange: Exchange,
    pairs: &[Pair],
    pace: Option<RestLimit>,
) -> BTreeMap<String, v1::Verification> {
    let start = minute_to_verify();
    let mut config = ConnectorConfig::new(exchange, pairs.to_vec());
    config.rest_url = Some(sim.rest_url());
    if let Some(limit) = pace {
        config.rest_pacer = Arc::new(Pacer::new(limit));
    }
    let shutdown = CancellationToken::new();
    let (verifier, mut rx) =
        Verifier::spawn(&config, Settings::for_exchange(exchange), shutdown.clone()).unwrap();
    let ours = our_candles(sim, exchange, start).await;
    assert_eq!(
        ours.len(),
        pairs.len(),
        "one final candle per pair: {ours:?}"
    );
    for candle in &ours {
        assert!(verifier.check(candle, false), "{candle:?} taken");
    }
    let mut by_pair = BTreeMap::new();
    while by_pair.len() < pairs.len() {
        let v = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("every verdict within 60 s")
            .expect("the verifier runs");
        assert_eq!(v.start, Some(candles_proto::timestamp(start)));
        by_pair.insert(v.pair.clone(), v);
    }
    shutdown.cancel();
    assert_eq!(verifier.dropped(), 0);
    by_pair
}

fn outcome(v: &v1::Verification) -> v1::Outcome {
    v1::Outcome::try_from(v.outcome).unwrap()
}

async fn every_pair_matches(exchange: Exchange) {
    let pairs = pairs(&["BTC-USDT", "ETH-USDT", "SOL-USDT"]);
    let sim = sim(exchange, &pairs, |_| {}).await;
    let verdicts = verdicts(&sim, exchange, &pairs, None).await;
    for (pair, v) in &verdicts {
        assert_eq!(outcome(v), v1::Outcome::Match, "{exchange} {pair}: {v:?}");
        assert_eq!(v.source, exchange.as_str());
        assert_eq!(v.tally.unwrap().matched, 1);
    }
    assert_eq!(sim.rate_limit_violations(), 0, "{exchange}");
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_every_minute_of_every_pair_matches() {
    every_pair_matches(Exchange::Binance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_every_minute_of_every_pair_matches() {
    every_pair_matches(Exchange::Kraken).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_every_minute_of_every_pair_matches() {
    every_pair_matches(Exchange::Coinbase).await;
}

/// With trades hidden (no id gap: our candles cannot know), every pair mismatches, naming
/// `must_name` among the differing fields, ours and theirs.
async fn hidden_trades_mismatch(exchange: Exchange, must_name: &[&str]) {
    let pairs = pairs(&["BTC-USDT", "ETH-USDT", "SOL-USDT"]);
    let sim = sim(exchange, &pairs, |c| c.hide_ratio = 0.2).await;
    let verdicts = verdicts(&sim, exchange, &pairs, None).await;
    for (pair, v) in &verdicts {
        assert_eq!(
            outcome(v),
            v1::Outcome::Mismatch,
            "{exchange} {pair}: {v:?}"
        );
        let named: Vec<&str> = v.diffs.iter().map(|d| d.field.as_str()).collect();
        for field in must_name {
            assert!(
                named.contains(field),
                "{exchange} {pair}: {field} not named in {named:?}"
            );
        }
        assert!(
            v.diffs
                .iter()
                .all(|d| d.ours != d.theirs && !d.ours.is_empty())
        );
        assert_eq!(v.tally.unwrap().mismatched, 1);
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_hidden_trades_are_mismatches_naming_volume_quote_volume_and_trades() {
    hidden_trades_mismatch(Exchange::Binance, &["volume", "quote_volume", "trades"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_hidden_trades_are_mismatches_naming_volume_and_trades() {
    hidden_trades_mismatch(Exchange::Kraken, &["volume", "trades"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_hidden_trades_are_mismatches_naming_volume() {
    hidden_trades_mismatch(Exchange::Coinbase, &["volume"]).await;
}

/// Eight Kraken pairs checked at once by a client paced at 50 requests a second against
/// Kraken's ~1 a second: the simulator answers `EGeneral:Too many requests`, the verifier holds
/// off every time (no request while told to wait) and still reaches a `match` for every pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_rate_limit_answers_are_obeyed_and_every_verdict_is_reached() {
    let pairs = pairs(&[
        "BTC-USDT",
        "ETH-USDT",
        "SOL-USDT",
        "ADA-USDT",
        "XRP-USDT",
        "LTC-USDT",
        "DOT-USDT",
        "LINK-USDT",
    ]);
    let sim = sim(Exchange::Kraken, &pairs, |_| {}).await;
    let fast = RestLimit {
        burst: 50.0,
        per_second: 50.0,
    };
    let verdicts = verdicts(&sim, Exchange::Kraken, &pairs, Some(fast)).await;
    for (pair, v) in &verdicts {
        assert_eq!(outcome(v), v1::Outcome::Match, "{pair}: {v:?}");
    }
    println!(
        "kraken: {} REST requests, {} rate-limit answers, {} violations",
        sim.rest_requests(),
        sim.rate_limited(),
        sim.rate_limit_violations()
    );
    assert!(sim.rate_limited() >= 1, "the exchange's limit was reached");
    assert_eq!(sim.rate_limit_violations(), 0);
    sim.stop().await;
}
