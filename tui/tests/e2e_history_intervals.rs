//! The dashboard switches 5s → 1m against a real candles-service (in this process, on real
//! Apache Kafka + Redis) building both: trades an hour in the past under `--clock event` give
//! history in both intervals before the dashboard starts; `>` shows the 1m candles from that
//! history: the inspect readout of each, newest to oldest, equals the 1m final the service has for
//! its window.
#![allow(clippy::unwrap_used)]

mod common;

use candles_core::{
    Candle, ClockMode, Decimal, Exchange, Interval, Intervals, Micros, Pair, Side, Trade,
};
use candles_proto::v1::SubscribeRequest;
use candles_proto::v1::candle_service_client::CandleServiceClient;
use candles_service::ServiceConfig;
use common::{Deps, Service, Tmux};
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::str::FromStr;
use std::time::{Duration, Instant};

const FIVE_S: Interval = Interval::seconds(5);
const ONE_M: Interval = Interval::seconds(60);
/// Whole minutes of trades; the last one stays open (event clock), the others are final.
const MINUTES: i64 = 5;

fn btc() -> Pair {
    Pair::parse("BTC-USDT").unwrap()
}

/// Binance BTC-USDT trades every 2 s over [`MINUTES`] minutes from `start`, prices varying so
/// that every minute has its own open, high, low and close.
fn trades_from(start: Micros) -> Vec<Trade> {
    (0..MINUTES * 30)
        .map(|i| {
            let price = format!(
                "{}.{}",
                97_000 + (i * 7) % 23,
                ["25", "5", "75"][i as usize % 3]
            );
            let side = if i % 3 == 0 { Side::Sell } else { Side::Buy };
            let qty = format!("0.{}", 100 + i % 11);
            let mut t = Trade::new(
                Exchange::Binance,
                btc(),
                i as u64 + 1,
                &price,
                &qty,
                side,
                Micros(start.0 + i * 2_000_000),
            )
            .unwrap();
            t.received = Micros::now();
            t
        })
        .collect()
}

/// Writes `trades` to Kafka as a connector does (key = pair, value = candles.v1.Trade).
async fn produce_all(brokers: &str, topic: &str, trades: &[Trade]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "10000")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for t in trades {
        let bytes = candles_proto::v1::Trade::from(t).encode_to_vec();
        let key = t.pair.to_string();
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&bytes),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
}

/// The final composite BTC-USDT candles of `interval` the service has in its history.
async fn finals_of(url: &str, interval: Interval) -> Vec<Candle> {
    let mut client = CandleServiceClient::connect(url.to_string()).await.unwrap();
    let request = SubscribeRequest {
        pairs: vec![btc().to_string()],
        sources: vec!["composite".into()],
        history: 100,
        live_updates: false,
        interval: Some(candles_proto::duration(interval)),
        verifications: false,
    };
    let mut stream = client.subscribe(request).await.unwrap().into_inner();
    let mut finals = Vec::new();
    while let Ok(Ok(Some(message))) =
        tokio::time::timeout(Duration::from_millis(500), stream.message()).await
    {
        let candle = Candle::try_from(message.candle.as_ref().unwrap()).unwrap();
        if candle.is_final {
            finals.push(candle);
        }
    }
    finals
}

/// Waits until the service has at least `count` finals of `interval` in its history.
async fn history_of(url: &str, interval: Interval, count: usize) -> Vec<Candle> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let finals = finals_of(url, interval).await;
        if finals.len() >= count {
            return finals;
        }
        assert!(
            Instant::now() < deadline,
            "{interval}: {} finals in the service's history, {count} expected",
            finals.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The value after `name ` in a readout line (`O 97000.50  H ...` → `97000.50` for `O`).
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let at = line
        .find(&format!("{name} "))
        .unwrap_or_else(|| panic!("{name} in {line}"));
    line[at + name.len() + 1..]
        .split_whitespace()
        .next()
        .unwrap()
}

/// The four readout lines (window, OHLC, volumes, VWAP and trades) on `screen`.
fn readout(screen: &str) -> [&str; 4] {
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("◆ "))
        .unwrap_or_else(|| panic!("no readout on\n{screen}"));
    [lines[at], lines[at + 1], lines[at + 2], lines[at + 3]]
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// The readout on `screen` shows `candle`'s OHLC, volumes and trade count.
fn check_readout(screen: &str, candle: &Candle) {
    let [_, ohlc, volumes, rest] = readout(screen);
    for (line, name, value) in [
        (ohlc, "O", candle.open),
        (ohlc, "H", candle.high),
        (ohlc, "L", candle.low),
        (ohlc, "C", candle.close),
        (volumes, "V", candle.volume),
        (volumes, "buy", candle.buy_volume),
        (volumes, "sell", candle.sell_volume),
    ] {
        assert_eq!(
            dec(field(line, name)),
            value,
            "{name}: {line} vs {candle:?}"
        );
    }
    assert_eq!(field(rest, "trades"), candle.trades.to_string(), "{rest}");
    assert_eq!(candle.trades, 30, "a whole minute of trades every 2 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greater_than_switches_5s_to_1m_and_shows_the_services_1m_history() {
    let deps = Deps::start();
    let mut config = ServiceConfig {
        intervals: Some(Intervals::new(&[FIVE_S, ONE_M]).unwrap()),
        ..deps.config()
    };
    config.engine.clock = ClockMode::Event;
    let service = Service::start(config, "127.0.0.1:0".parse().unwrap()).await;
    let url = service.url();

    // An hour ago, minute-aligned: every minute but the last is final at once (event clock).
    let now = Micros::now().0;
    let start = Micros(now - 3_600_000_000 - (now % 60_000_000));
    produce_all(&deps.kafka.brokers(), &deps.topic, &trades_from(start)).await;
    let minutes = history_of(&url, ONE_M, MINUTES as usize - 1).await;
    history_of(&url, FIVE_S, (MINUTES as usize - 1) * 12).await;
    assert_eq!(minutes.first().unwrap().start, start, "{minutes:?}");

    let logs = tempfile::tempdir().unwrap();
    let tmux = Tmux::start(
        &["--server", &url, "--pairs", "btcusdt"],
        120,
        40,
        logs.path(),
    );
    tmux.wait_for("5s candles from history", Duration::from_secs(30), |s| {
        s.contains("BTC-USDT · composite · 5s") && s.contains("97")
    })
    .await;
    tmux.keys(">");
    let screen = tmux
        .wait_for("the 1m panel", Duration::from_secs(15), |s| {
            s.contains("BTC-USDT · composite · 1m")
        })
        .await;
    assert!(!screen.contains("· 5s"), "{screen}");

    // Every 1m final of the service's history is on the chart, the readout equal to it:
    // from the newest (where inspect starts) leftwards to the oldest.
    assert_eq!(minutes.len(), MINUTES as usize - 1, "{minutes:?}");
    tmux.keys("i");
    for candle in minutes.iter().rev() {
        let window = format!(
            "◆ {} – {}",
            candle.start.to_rfc3339_short(),
            candle.end().to_rfc3339_short()
        );
        let screen = tmux
            .wait_for(&window, Duration::from_secs(10), |s| {
                s.contains(&window) && s.contains("final") && s.contains("VWAP")
            })
            .await;
        check_readout(&screen, candle);
        tmux.keys("Left");
    }

    tmux.keys("q");
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    service.stop().await;
}
