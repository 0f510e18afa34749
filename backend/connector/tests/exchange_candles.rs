//! The exchange's own 1-minute candle, fetched through the connector's paced REST client from
//! the simulator's candle endpoint and judged by `candles_core::verify`: our candle built from
//! the simulator's trade log matches; with trades lost without an id gap (`hide_ratio`) it
//! mismatches, naming the fields.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use candles_connector::ConnectorConfig;
use candles_connector::rest::RestClient;
use candles_core::verify::{ExchangeCandle, Field, MINUTE, Verdict, verdict};
use candles_core::{Candle, Decimal, Exchange, Micros, Pair, Side, Source, Trade};
use exchange_sim::{SimConfig, SimHandle, TradeSource};
use std::time::Duration;

const TRADES: u64 = 600;

/// A simulator of `exchange` (REST limit on) that made all its trades.
async fn finished(exchange: Exchange, change: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut config = SimConfig {
        exchange,
        source: TradeSource::Synthetic { rate: 500.0 },
        max_trades: Some(TRADES),
        rest_limit: true,
        seed: 15,
        ..SimConfig::default()
    };
    change(&mut config);
    let sim = exchange_sim::start(config).await.expect("simulator starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sim.generated() + (sim.hidden().len() as u64) < TRADES {
        assert!(tokio::time::Instant::now() < deadline, "trades not made");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sim
}

fn pair() -> Pair {
    Pair::defaults()[0]
}

/// Our final candle of `pair`'s minute at `start`, from trades (ordered by time, then id).
fn ours(exchange: Exchange, trades: &[Trade], start: Micros) -> Candle {
    let mut mine: Vec<Trade> = trades
        .iter()
        .filter(|t| t.pair == pair() && MINUTE.window_start(t.time) == start)
        .copied()
        .collect();
    mine.sort_by_key(|t| (t.time, t.id));
    let (first, last) = (mine[0], mine[mine.len() - 1]);
    let sum = |f: &dyn Fn(&Trade) -> Decimal| mine.iter().map(f).sum::<Decimal>();
    let side = |s: Side| {
        move |t: &Trade| {
            if t.side == s {
                t.quantity
            } else {
                Decimal::ZERO
            }
        }
    };
    Candle {
        pair: pair(),
        source: Source::Exchange(exchange),
        interval: MINUTE,
        start,
        open: first.price,
        high: mine.iter().map(|t| t.price).max().unwrap(),
        low: mine.iter().map(|t| t.price).min().unwrap(),
        close: last.price,
        volume: sum(&|t| t.quantity),
        quote_volume: sum(&|t| t.price * t.quantity),
        buy_volume: sum(&side(Side::Buy)),
        sell_volume: sum(&side(Side::Sell)),
        trades: mine.len() as u64,
        is_final: true,
        partial: false,
    }
}

/// The exchange's candle of the minute at `start`, once that minute is over and final there.
async fn theirs(sim: &SimHandle, exchange: Exchange, start: Micros) -> ExchangeCandle {
    let mut config = ConnectorConfig::new(exchange, Pair::defaults());
    config.rest_url = Some(sim.rest_url());
    let client = RestClient::new(&config).unwrap();
    let end = MINUTE.window_end(start);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(75);
    loop {
        let wait = end.0 - Micros::now().0;
        if wait > 0 {
            tokio::time::sleep(Duration::from_micros(wait as u64 + 1_000)).await;
        }
        match client.exchange_candle(&sim.rest_url(), pair(), start).await {
            Ok(Some(candle)) => return candle,
            Ok(None) => assert!(tokio::time::Instant::now() < deadline, "no final candle"),
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The minute of the pair's first trade in `trades`.
fn first_minute(trades: &[Trade]) -> Micros {
    let t = trades.iter().find(|t| t.pair == pair()).expect("a trade");
    MINUTE.window_start(t.time)
}

async fn matches(exchange: Exchange, change: impl FnOnce(&mut SimConfig)) {
    let sim = finished(exchange, change).await;
    let trades = sim.trades();
    let start = first_minute(&trades);
    let theirs = theirs(&sim, exchange, start).await;
    assert_eq!(
        verdict(&ours(exchange, &trades, start), &theirs),
        Verdict::Match
    );
    assert_eq!(sim.rate_limit_violations(), 0);
}

#[tokio::test]
async fn binance_klines_match_our_candle_from_the_trade_log() {
    matches(Exchange::Binance, |_| {}).await;
}

#[tokio::test]
async fn kraken_ohlc_matches_our_candle_with_split_fills_and_vwap() {
    matches(Exchange::Kraken, |c| c.split_ratio = 0.4).await;
}

#[tokio::test]
async fn coinbase_candles_match_our_candle_from_the_trade_log() {
    matches(Exchange::Coinbase, |_| {}).await;
}

/// With hidden trades, our candle (from what was sent: no id gap) mismatches in the fields
/// the exchange publishes that the hidden trades change.
async fn mismatches(exchange: Exchange, must_name: &[Field]) {
    let sim = finished(exchange, |c| c.hide_ratio = 0.2).await;
    let trades = sim.trades();
    let start = first_minute(&sim.hidden());
    let theirs = theirs(&sim, exchange, start).await;
    let Verdict::Mismatch(diffs) = verdict(&ours(exchange, &trades, start), &theirs) else {
        panic!("hidden trades went unnoticed");
    };
    let named: Vec<Field> = diffs.iter().map(|d| d.field).collect();
    for field in must_name {
        assert!(named.contains(field), "{field} not named in {diffs:?}");
    }
}

#[tokio::test]
async fn binance_hidden_trades_are_mismatches_naming_volume_and_trades() {
    mismatches(
        Exchange::Binance,
        &[Field::Volume, Field::QuoteVolume, Field::Trades],
    )
    .await;
}

#[tokio::test]
async fn kraken_hidden_trades_are_mismatches_naming_volume_and_count() {
    mismatches(Exchange::Kraken, &[Field::Volume, Field::Trades]).await;
}

#[tokio::test]
async fn coinbase_hidden_trades_are_mismatches_naming_volume() {
    mismatches(Exchange::Coinbase, &[Field::Volume]).await;
}
