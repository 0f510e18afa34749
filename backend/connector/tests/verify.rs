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

/// Every final 1-minute candle (each exchange's and the composite) of the minute at `start`,
/// built by the engine from the simulator's trades (what the WebSocket carried, nothing hidden),
/// once that minute is final.
async fn finals(sim: &SimHandle, start: Micros) -> Vec<Candle> {
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
    finals.retain(|c| c.start == start);
    finals
}

/// Our final 1-minute candles of `exchange` for the minute at `start` (see [`finals`]).
async fn our_candles(sim: &SimHandle, exchange: Exchange, start: Micros) -> Vec<Candle> {
    let mut ours = finals(sim, start).await;
    ours.retain(|c| c.source == Source::Exchange(exchange));
    ours
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

/// In the connector binary's set-up (`verify::relay`): Redis is down when verification starts;
/// once it is up, the final candles the services publish on the 1m candle channels (every
/// source, live updates too) are verified, each verdict is stored as the latest and published
/// on the verifications channel, and the tally continues from the latest verdict stored before.
#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_connector_verdicts_on_the_services_candles_reach_redis_with_the_tally_continued() {
    use candles_reports::{Keys, Reporter, candle_channel, decode_verification, read_latest};
    use prost::Message as _;

    let exchange = Exchange::Binance;
    let pairs = pairs(&["BTC-USDT", "ETH-USDT"]);
    let btc = pairs[0];
    let mut redis = candles_testkit::redis::Redis::start().expect("redis-server starts");
    let url = redis.url();
    let earlier = v1::Verification {
        pair: btc.to_string(),
        source: exchange.as_str().into(),
        outcome: v1::Outcome::Match as i32,
        tally: Some(v1::VerificationTally {
            matched: 57,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut before = Reporter::connect(&url, None).await.unwrap();
    before.verification(&earlier).await.unwrap();
    redis.stop();

    let sim = sim(exchange, &pairs, |_| {}).await;
    let start = minute_to_verify();
    let mut config = ConnectorConfig::new(exchange, pairs.clone());
    config.rest_url = Some(sim.rest_url());
    let shutdown = CancellationToken::new();
    let reporter = Reporter::connect_in_background(&url, None, |_| {}).unwrap();
    candles_connector::verify::relay::spawn(
        &config,
        &url,
        reporter,
        Settings::for_exchange(exchange),
        shutdown.clone(),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart().expect("redis-server restarts");

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut verdicts = client.get_async_pubsub().await.unwrap();
    verdicts
        .subscribe(Keys::new("").verifications())
        .await
        .unwrap();
    let mut conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let channels: Vec<String> = pairs
        .iter()
        .map(|&p| candle_channel("", MINUTE, p))
        .collect();
    // The relay subscribes once Redis is back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let subscribed: Vec<(String, u64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channels)
            .query_async(&mut conn)
            .await
            .unwrap();
        if subscribed.iter().all(|(_, n)| *n == 1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let finals = finals(&sim, start).await;
    assert_eq!(
        finals.len(),
        2 * pairs.len(),
        "binance and composite per pair"
    );
    for candle in &finals {
        let mut live = v1::Candle::from(candle);
        live.r#final = false;
        let channel = candle_channel("", MINUTE, candle.pair);
        for wire in [live, v1::Candle::from(candle)] {
            let _: i64 = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(wire.encode_to_vec())
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
    let mut messages = verdicts.on_message();
    let mut by_pair = BTreeMap::new();
    while by_pair.len() < pairs.len() {
        let msg = tokio::time::timeout(
            Duration::from_secs(60),
            futures::StreamExt::next(&mut messages),
        )
        .await
        .expect("a verdict on the verifications channel within 60 s")
        .unwrap();
        let v = decode_verification(msg.get_payload_bytes()).unwrap();
        assert!(
            by_pair.insert(v.pair.clone(), v).is_none(),
            "one verdict per pair"
        );
    }
    for v in by_pair.values() {
        assert_eq!(outcome(v), v1::Outcome::Match, "{v:?}");
        assert_eq!(v.source, "binance");
        assert_eq!(v.start, Some(candles_proto::timestamp(start)));
    }
    assert_eq!(by_pair["BTC-USDT"].tally.unwrap().matched, 58);
    assert_eq!(by_pair["ETH-USDT"].tally.unwrap().matched, 1);
    let (latest, mismatch) =
        read_latest(&mut conn, &Keys::new(""), btc, Source::Exchange(exchange))
            .await
            .unwrap();
    assert_eq!(latest.as_ref(), Some(&by_pair["BTC-USDT"]));
    assert_eq!(mismatch, None);
    shutdown.cancel();
    sim.stop().await;
}
