//! `--rest-limit` and `--omit-split-trades` over real sockets: each exchange's own rate-limit
//! answer beyond its published limit, violations counted separately, and Kraken's WebSocket
//! leaving out split fills that REST still lists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candles_core::Exchange;
use common::*;
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn binance_answers_429_with_retry_after_then_418_to_who_keeps_going() {
    let sim = sim(Exchange::Binance, |c| c.rest_limit = true).await;
    wait_generated(&sim, 5).await;
    // 6,000 weight a minute, 25 per trades request: 240 requests pass.
    for i in 0..240 {
        let r = get(&sim, "/api/v3/historicalTrades?symbol=BTCUSDT&limit=1").await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
    }
    let limited = get(&sim, "/api/v3/historicalTrades?symbol=BTCUSDT&limit=1").await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.json()["code"], -1003);
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!((sim.rate_limited(), sim.rate_limit_violations()), (1, 0));
    let banned = get(&sim, "/api/v3/exchangeInfo?symbol=BTCUSDT").await;
    assert_eq!(banned.status, 418, "{}", banned.body);
    assert!(banned.header("retry-after").is_some());
    assert_eq!((sim.rate_limited(), sim.rate_limit_violations()), (2, 1));
}

#[tokio::test]
async fn kraken_answers_too_many_requests_beyond_about_one_call_a_second() {
    let sim = sim(Exchange::Kraken, |c| c.rest_limit = true).await;
    for _ in 0..3 {
        let r = get(&sim, "/0/public/AssetPairs?pair=XBTUSDT").await;
        assert_eq!(r.json()["error"], json("[]"), "{}", r.body);
    }
    let limited = get(&sim, "/0/public/Trades?pair=XBTUSDT").await;
    assert_eq!(limited.status, 200);
    assert_eq!(
        limited.json()["error"],
        json(r#"["EGeneral:Too many requests"]"#)
    );
    assert_eq!(sim.rate_limit_violations(), 0);
    // After a second, one call again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(&sim, "/0/public/Trades?pair=XBTUSDT").await;
    assert_eq!(r.json()["error"], json("[]"), "{}", r.body);
    assert_eq!((sim.rate_limited(), sim.rate_limit_violations()), (1, 0));
    // Unlimited without the flag.
    let free = common::sim(Exchange::Kraken, |_| {}).await;
    for _ in 0..10 {
        let r = get(&free, "/0/public/AssetPairs?pair=XBTUSDT").await;
        assert_eq!(r.json()["error"], json("[]"));
    }
    assert_eq!(free.rate_limited(), 0);
}

#[tokio::test]
async fn coinbase_answers_429_beyond_ten_a_second() {
    let sim = sim(Exchange::Coinbase, |c| c.rest_limit = true).await;
    let statuses: Vec<u16> = futures::future::join_all((0..20).map(|_| get(&sim, "/products")))
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!((3..=5).contains(&refused), "burst of 15: {statuses:?}");
    assert_eq!(sim.rate_limited(), refused as u64);
}

#[tokio::test]
async fn kraken_leaves_split_fills_off_the_websocket_and_rest_lists_them() {
    let sim = sim(Exchange::Kraken, |c| {
        c.split_ratio = 0.4;
        c.omit_split_trades = true;
        c.pairs = vec![candles_core::Pair::parse("BTC-USDT").unwrap()];
        c.source = exchange_sim::TradeSource::Synthetic { rate: 200.0 };
    })
    .await;
    let mut ws = connect(&sim.ws_url()).await;
    next_text(&mut ws, Duration::from_secs(5), "the status message").await;
    send(
        &mut ws,
        r#"{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USDT"],"snapshot":false}}"#,
    )
    .await;
    let mut sent: Vec<u64> = Vec::new();
    for text in collect(&mut ws, Duration::from_secs(2), |m| m.len() >= 150).await {
        let v = json(&text);
        if v["channel"] == "trade" {
            let items = v["data"].as_array().unwrap();
            sent.extend(items.iter().map(|i| i["trade_id"].as_u64().unwrap()));
        }
    }
    let truth = sim.trades();
    let (first, last) = (sent[0], *sent.last().unwrap());
    let span: Vec<_> = truth
        .windows(2)
        .filter(|w| w[1].id >= first && w[1].id <= last)
        .collect();
    let split: Vec<u64> = span
        .iter()
        .filter(|w| w[1].time == w[0].time)
        .map(|w| w[1].id)
        .collect();
    let whole: Vec<u64> = span
        .iter()
        .filter(|w| w[1].time != w[0].time)
        .map(|w| w[1].id)
        .collect();
    assert!(
        split.len() * 3 >= span.len(),
        "a third or more split fills: {} of {}",
        split.len(),
        span.len()
    );
    assert!(
        split.iter().all(|id| !sent.contains(id)),
        "split fills are left out"
    );
    assert!(
        whole.iter().all(|id| sent.contains(id)),
        "the others are sent"
    );
    // REST lists all of them.
    let since = truth.iter().find(|t| t.id == first).unwrap().time.0 as i128 * 1000 - 1;
    let page = get(
        &sim,
        &format!("/0/public/Trades?pair=XBTUSDT&since={since}"),
    )
    .await;
    let listed: Vec<u64> = page.json()["result"]["XBTUSDT"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row: &Value| row[6].as_u64().unwrap())
        .collect();
    assert!(
        split.iter().all(|id| listed.contains(id)),
        "REST lists split fills"
    );
}
