//! Each exchange's 1-minute candle endpoint over a real socket: computed from every trade,
//! including those `hide_ratio` lost without an id gap (never sent nor listed, the ids of the
//! rest contiguous).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candles_core::symbols::rest_symbol;
use candles_core::{Decimal, Exchange, Pair, Trade};
use common::*;
use serde_json::Value;

/// A finished simulator of `exchange` that hid about a quarter of its trades.
async fn hiding(exchange: Exchange) -> exchange_sim::SimHandle {
    let sim = sim(exchange, |c| {
        c.hide_ratio = 0.25;
        c.max_trades = Some(400);
    })
    .await;
    // Hidden trades are not published: wait for all 400 made.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while sim.generated() + (sim.hidden().len() as u64) < 400 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "trades not made in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    sim
}

/// The pair's sent trades and its hidden ones.
fn split(sim: &exchange_sim::SimHandle, pair: Pair) -> (Vec<Trade>, Vec<Trade>) {
    let of = |list: Vec<Trade>| list.into_iter().filter(|t| t.pair == pair).collect();
    (of(sim.trades()), of(sim.hidden()))
}

fn dec(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.to_string().parse().unwrap(),
        other => panic!("not a decimal: {other}"),
    }
}

/// Checks what every exchange's rows must show: all trades counted, ids of the sent ones
/// contiguous (the loss leaves no gap).
fn check(sent: &[Trade], hidden: &[Trade], volume: Decimal, count: Option<u64>) {
    assert!(!hidden.is_empty() && !sent.is_empty());
    let ids: Vec<u64> = sent.iter().map(|t| t.id).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "ids have a gap");
    let all: Decimal = sent.iter().chain(hidden).map(|t| t.quantity).sum();
    assert_eq!(volume, all);
    if let Some(count) = count {
        assert_eq!(count as usize, sent.len() + hidden.len());
    }
}

#[tokio::test]
async fn binance_klines_count_every_trade_hidden_ones_included() {
    let sim = hiding(Exchange::Binance).await;
    let pair = Pair::defaults()[0];
    let symbol = rest_symbol(Exchange::Binance, pair);
    let r = get(&sim, &format!("/api/v3/klines?symbol={symbol}&interval=1m")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = r.json().as_array().unwrap().clone();
    let volume = rows.iter().map(|row| dec(&row[5])).sum();
    let count = rows.iter().map(|row| row[8].as_u64().unwrap()).sum();
    for row in &rows {
        assert_eq!(row.as_array().unwrap().len(), 12);
        assert_eq!(row[6].as_i64().unwrap(), row[0].as_i64().unwrap() + 59_999);
        assert!(dec(&row[9]) <= dec(&row[5]));
        assert_eq!(row[1].as_str().unwrap().split('.').nth(1).unwrap().len(), 8);
    }
    let (sent, hidden) = split(&sim, pair);
    check(&sent, &hidden, volume, Some(count));
    let bad = get(&sim, &format!("/api/v3/klines?symbol={symbol}&interval=7m")).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[tokio::test]
async fn kraken_ohlc_counts_every_trade_and_ends_with_the_current_minute() {
    let sim = hiding(Exchange::Kraken).await;
    let pair = Pair::defaults()[0];
    let key = rest_symbol(Exchange::Kraken, pair);
    let r = get(&sim, &format!("/0/public/OHLC?pair={key}&interval=1")).await;
    let body = r.json();
    assert_eq!(body["error"], json("[]"), "{}", r.body);
    let rows = body["result"][key.as_str()].as_array().unwrap().clone();
    let volume = rows.iter().map(|row| dec(&row[6])).sum();
    let count = rows.iter().map(|row| row[7].as_u64().unwrap()).sum();
    let now_minute = candles_core::Micros::now().0 / 60_000_000 * 60;
    let newest = rows.last().unwrap()[0].as_i64().unwrap();
    assert_eq!(newest, now_minute, "the newest row is the current minute");
    if rows.len() > 1 {
        let last = body["result"]["last"].as_i64().unwrap();
        assert_eq!(last, rows[rows.len() - 2][0].as_i64().unwrap());
    }
    let (sent, hidden) = split(&sim, pair);
    check(&sent, &hidden, volume, Some(count));
}

#[tokio::test]
async fn coinbase_candles_count_every_trade_newest_first() {
    let sim = hiding(Exchange::Coinbase).await;
    let pair = Pair::defaults()[0];
    let product = rest_symbol(Exchange::Coinbase, pair);
    let r = get(&sim, &format!("/products/{product}/candles?granularity=60")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = r.json().as_array().unwrap().clone();
    let times: Vec<i64> = rows.iter().map(|row| row[0].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "newest first");
    for row in &rows {
        assert!(row.as_array().unwrap().iter().all(Value::is_number));
        assert!(dec(&row[1]) <= dec(&row[2]), "low ≤ high");
    }
    let volume = rows.iter().map(|row| dec(&row[5])).sum();
    let (sent, hidden) = split(&sim, pair);
    check(&sent, &hidden, volume, None);
    let bad = get(&sim, &format!("/products/{product}/candles?granularity=61")).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[tokio::test]
async fn the_hiding_fault_ends_at_hide_until() {
    // Trades are dated by the wall clock: the fault ends 300 ms into the run.
    let until = candles_core::Micros(candles_core::Micros::now().0 + 300_000);
    let sim = sim(Exchange::Kraken, |c| {
        c.hide_ratio = 0.5;
        c.hide_until = Some(until);
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let hidden = sim.hidden();
    assert!(!hidden.is_empty(), "nothing hidden while the fault was on");
    assert!(
        hidden.iter().all(|t| t.time < until),
        "a trade dated after --hide-until was hidden"
    );
    assert!(
        sim.trades().iter().any(|t| t.time >= until),
        "no trade sent after the fault ended"
    );
}
