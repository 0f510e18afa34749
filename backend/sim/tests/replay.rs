//! Replay of the shared sample files: every line reaches a subscribed client verbatim and in
//! order, the parsed trades become the ground truth and are served by REST; pacing by trade time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candles_core::Exchange;
use common::*;
use exchange_sim::{Speed, TradeSource};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(5);

fn replay(path: PathBuf, speed: Speed) -> impl FnOnce(&mut exchange_sim::SimConfig) {
    move |c| c.source = TradeSource::Replay { path, speed }
}

/// Asserts that `lines` appear in `received` in order (the simulator's own acks and heartbeats
/// may come in between).
fn assert_in_order(lines: &[String], received: &[String]) {
    let mut rest = received.iter();
    for line in lines {
        assert!(
            rest.any(|r| r == line),
            "line not received verbatim (in order): {line}\nreceived: {received:#?}"
        );
    }
}

async fn wait_done(sim: &exchange_sim::SimHandle) {
    let deadline = Instant::now() + WAIT;
    while !sim.done() {
        assert!(Instant::now() < deadline, "replay never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn file_lines(name: &str) -> Vec<String> {
    std::fs::read_to_string(shared_file(name))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn binance_samples_are_replayed_verbatim() {
    let name = "binance_trade_samples.jsonl";
    let sim = sim(Exchange::Binance, replay(shared_file(name), Speed::Max)).await;
    let mut ws = connect(&sim.ws_url()).await;
    // Nothing plays before a client subscribes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sim.generated(), 0);
    send(&mut ws, r#"{"method":"SUBSCRIBE","params":["bnbbtc@trade","btcusdt@trade","nknusdt@trade"],"id":1}"#).await;
    let lines = file_lines(name);
    let received = collect(&mut ws, WAIT, |m| m.len() > lines.len()).await;
    assert_in_order(&lines, &received);
    wait_done(&sim).await;
    let ids: Vec<u64> = sim.trades().iter().map(|t| t.id).collect();
    assert_eq!(
        ids,
        [12345, 276229663],
        "the @trade lines are the ground truth (aggTrade is not a trade)"
    );
    let rest = get(&sim, "/api/v3/historicalTrades?symbol=BTCUSDT&fromId=0")
        .await
        .json();
    assert_eq!(
        rest,
        json(
            r#"[{"id":276229663,"price":"43381.54000000","qty":"0.10820000","quoteQty":"4693.88262800","time":1706602794681,"isBuyerMaker":false,"isBestMatch":true}]"#
        )
    );
    sim.stop().await;
}

#[tokio::test]
async fn kraken_samples_are_replayed_verbatim() {
    let name = "kraken_v2_trade_samples.jsonl";
    let sim = sim(Exchange::Kraken, replay(shared_file(name), Speed::Max)).await;
    let mut ws = connect(&sim.ws_url()).await;
    next_text(&mut ws, WAIT, "status").await;
    send(&mut ws, r#"{"method":"subscribe","params":{"channel":"trade","symbol":["MATIC/USD"],"snapshot":false}}"#).await;
    let lines = file_lines(name);
    let received = collect(&mut ws, WAIT, |m| m.len() > lines.len()).await;
    assert_in_order(&lines, &received);
    wait_done(&sim).await;
    let trades = sim.trades();
    assert_eq!(
        trades.iter().map(|t| t.id).collect::<Vec<_>>(),
        [4665846, 4665847]
    );
    assert_eq!(trades[1].quantity.to_string(), "1136.19677815");
    let rest = get(&sim, "/0/public/Trades?pair=MATICUSD&since=0")
        .await
        .json();
    let entries = rest["result"]["MATICUSD"].as_array().unwrap();
    assert_eq!(
        entries[0].to_string(),
        r#"["0.5147","6423.46326000",1695628116.925533,"b","l","",4665846]"#
    );
    sim.stop().await;
}

#[tokio::test]
async fn coinbase_samples_are_replayed_verbatim() {
    let name = "coinbase_matches_samples.jsonl";
    let sim = sim(Exchange::Coinbase, replay(shared_file(name), Speed::Max)).await;
    let mut ws = connect(&sim.ws_url()).await;
    send(&mut ws, r#"{"type":"subscribe","product_ids":["BTC-USD","BAND-GBP","SKL-USD"],"channels":["matches"]}"#).await;
    let lines = file_lines(name);
    let received = collect(&mut ws, WAIT, |m| m.len() > lines.len()).await;
    assert_in_order(&lines, &received);
    wait_done(&sim).await;
    let ids: Vec<u64> = sim.trades().iter().map(|t| t.id).collect();
    assert_eq!(ids, [10, 881613, 1568268, 1568269]);
    let page = get(&sim, "/products/SKL-USD/trades").await;
    assert_eq!(
        page.json(),
        json(
            r#"[{"time":"2021-04-17T16:43:37.140491Z","trade_id":1568269,"price":"0.7912","size":"1787","side":"sell"},{"time":"2021-04-17T16:43:37.121358Z","trade_id":1568268,"price":"0.791","size":"450","side":"sell"}]"#
        )
    );
    assert_eq!(page.header("cb-after"), Some("1568268"));
    sim.stop().await;
}

#[tokio::test]
async fn replay_is_paced_by_trade_times_and_speed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.jsonl");
    let line = |id: u64, ms: i64| {
        format!(
            r#"{{"e":"trade","E":{ms},"s":"BTCUSDT","t":{id},"p":"60000.00000000","q":"0.00100000","T":{ms},"m":false,"M":true}}"#
        )
    };
    let lines = [line(1, 1_000), line(2, 1_400), line(3, 2_200)];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    // Twice real time: 1.2 s of trades take ~0.6 s.
    let sim = sim(Exchange::Binance, replay(path, Speed::Factor(2.0))).await;
    let mut ws = connect(&sim.ws_url()).await;
    send(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}"#,
    )
    .await;
    next_text(&mut ws, WAIT, "the reply").await;
    let start = Instant::now();
    let received = collect(&mut ws, WAIT, |m| m.len() == 3).await;
    let elapsed = start.elapsed();
    assert_eq!(received, lines);
    assert!(
        elapsed >= Duration::from_millis(550),
        "paced replay took only {elapsed:?}"
    );
    wait_done(&sim).await;
    sim.stop().await;
}

#[tokio::test]
async fn max_trades_cuts_a_replay_short() {
    let sim = sim(Exchange::Coinbase, |c| {
        c.source = TradeSource::Replay {
            path: shared_file("coinbase_matches_samples.jsonl"),
            speed: Speed::Max,
        };
        c.max_trades = Some(2);
    })
    .await;
    let mut ws = connect(&sim.ws_url()).await;
    send(
        &mut ws,
        r#"{"type":"subscribe","product_ids":["BTC-USD"],"channels":["matches"]}"#,
    )
    .await;
    wait_done(&sim).await;
    assert_eq!(
        sim.trades().iter().map(|t| t.id).collect::<Vec<_>>(),
        [10, 881613]
    );
    sim.stop().await;
}
