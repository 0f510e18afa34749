//! Faults on demand, seen from a real client: disconnects, stalls, garbage; and the market's
//! own promises: max_trades, determinism by seed, the trade log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candles_core::Exchange;
use common::*;
use exchange_sim::TradeSource;
use std::time::Duration;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn disconnect_every_closes_each_socket_and_reconnects_work() {
    let sim = sim(Exchange::Binance, |c| {
        c.disconnect_every = Some(Duration::from_millis(400))
    })
    .await;
    for round in 1..=2 {
        let mut ws = connect(&sim.ws_url()).await;
        send(
            &mut ws,
            r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}"#,
        )
        .await;
        let started = Instant::now();
        let messages = collect(&mut ws, WAIT, |_| false).await;
        assert!(messages.len() > 2, "trades flow before the disconnect");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "closed after ~400 ms, not {:?}",
            started.elapsed()
        );
        assert_eq!(sim.connections(), round);
    }
    sim.stop().await;
}

#[tokio::test]
async fn a_stalled_connection_goes_silent_then_resumes() {
    let sim = sim(Exchange::Kraken, |c| {
        c.stall = Some(Duration::from_millis(1500));
        c.timing.stall_after = Duration::from_millis(300);
        c.timing.heartbeat_every = Duration::from_millis(100);
    })
    .await;
    let mut ws = connect(&sim.ws_url()).await;
    next_text(&mut ws, WAIT, "status").await;
    send(&mut ws, r#"{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USDT","ETH/USDT","SOL/USDT"],"snapshot":false}}"#).await;
    let mut arrivals = Vec::new();
    let mut pinged = false;
    let mut pong_at = None;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2800) {
        if !pinged && start.elapsed() > Duration::from_millis(600) {
            // During the stall: not answered until it ends.
            send(&mut ws, r#"{"method":"ping","req_id":5}"#).await;
            pinged = true;
        }
        if let Seen::Text(t) = next(&mut ws, Duration::from_millis(50)).await {
            if t.contains("pong") {
                pong_at = Some(start.elapsed());
            }
            arrivals.push(start.elapsed());
        }
    }
    let (gap_at, gap) = arrivals
        .windows(2)
        .map(|w| (w[0], w[1] - w[0]))
        .max_by_key(|(_, g)| *g)
        .unwrap();
    assert!(
        gap >= Duration::from_millis(1300),
        "expected ~1.5 s of silence, longest gap {gap:?}"
    );
    assert!(
        gap_at >= Duration::from_millis(200) && gap_at <= Duration::from_millis(800),
        "the stall starts ~300 ms after subscribing, not {gap_at:?}"
    );
    assert!(
        arrivals.last().unwrap() > &(gap_at + gap),
        "messages resume after the stall"
    );
    let pong_at = pong_at.expect("the ping is answered after the stall");
    assert!(
        pong_at >= gap_at + gap - Duration::from_millis(100),
        "pong at {pong_at:?} came during the stall"
    );
    sim.stop().await;
}

#[tokio::test]
async fn malformed_messages_are_interleaved_with_valid_trades() {
    let sim = sim(Exchange::Binance, |c| c.malformed_ratio = 0.3).await;
    let mut ws = connect(&sim.ws_url()).await;
    send(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"],"id":1}"#,
    )
    .await;
    next_text(&mut ws, WAIT, "the reply").await;
    let (mut valid, mut garbage) = (0, 0);
    for text in collect(&mut ws, WAIT, |m| m.len() >= 150).await {
        let event: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        let trade = event.as_ref().filter(|e| e["e"] == "trade").and_then(|e| {
            let price =
                candles_core::trade::parse_positive_decimal("price", e["p"].as_str()?).ok()?;
            Some((e["s"].as_str()?.to_string(), e["t"].as_u64()?, price))
        });
        match trade {
            Some((symbol, id, price)) => {
                valid += 1;
                assert_eq!(price, truth(&sim, &symbol, id).price);
            }
            None => garbage += 1,
        }
    }
    assert!(
        valid >= 80 && garbage >= 10,
        "valid {valid}, garbage {garbage}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn max_trades_stops_generation_but_not_the_service() {
    let sim = sim(Exchange::Kraken, |c| {
        c.max_trades = Some(50);
        c.source = TradeSource::Synthetic { rate: 1000.0 };
        c.timing.heartbeat_every = Duration::from_millis(100);
    })
    .await;
    let deadline = Instant::now() + WAIT;
    while !sim.done() {
        assert!(Instant::now() < deadline, "never done");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sim.generated(), 50);
    assert_eq!(sim.trades().len(), 50);
    let mut ws = connect(&sim.ws_url()).await;
    next_text(&mut ws, WAIT, "status").await;
    send(&mut ws, r#"{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USDT"],"snapshot":true}}"#).await;
    let messages = collect(&mut ws, WAIT, |m| m.iter().any(|t| t.contains("heartbeat"))).await;
    assert!(messages.iter().any(|t| t.contains(r#""type":"snapshot""#)));
    let body = get(&sim, "/0/public/Trades?pair=XBTUSDT").await.json();
    let btc = sim
        .trades()
        .iter()
        .filter(|t| t.pair.base.as_str() == "BTC")
        .count();
    assert_eq!(body["result"]["XBTUSDT"].as_array().unwrap().len(), btc);
    sim.stop().await;
}

#[tokio::test]
async fn the_same_seed_gives_the_same_trades_and_the_log_records_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trades.jsonl");
    let config = |seed: u64, log: Option<std::path::PathBuf>| {
        move |c: &mut exchange_sim::SimConfig| {
            c.seed = seed;
            c.max_trades = Some(300);
            c.source = TradeSource::Synthetic { rate: 3000.0 };
            c.trade_log = log;
        }
    };
    let a = sim(Exchange::Coinbase, config(5, Some(log.clone()))).await;
    let b = sim(Exchange::Coinbase, config(5, None)).await;
    let c = sim(Exchange::Coinbase, config(6, None)).await;
    for s in [&a, &b, &c] {
        let deadline = Instant::now() + WAIT;
        while !s.done() {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let strip = |s: &exchange_sim::SimHandle| -> Vec<_> {
        s.trades()
            .iter()
            .map(|t| (t.pair, t.id, t.price, t.quantity, t.side))
            .collect()
    };
    assert_eq!(strip(&a).len(), 300);
    assert_eq!(strip(&a), strip(&b));
    assert_ne!(strip(&a), strip(&c));

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(json)
        .collect();
    assert_eq!(lines.len(), 300);
    for (line, t) in lines.iter().zip(a.trades()) {
        assert_eq!(line["exchange"], "coinbase");
        assert_eq!(line["pair"], t.pair.to_string());
        assert_eq!(line["id"], t.id);
        assert_eq!(line["price"], t.price.to_string());
        assert_eq!(line["quantity"], t.quantity.to_string());
        assert_eq!(line["side"], t.side.as_str());
        assert_eq!(line["time_us"], t.time.0);
    }
    for s in [a, b, c] {
        s.stop().await;
    }
}

/// The hostile faults, from a real Binance client: trades dated 1970 and 2100 (half only on
/// REST), frames of a pair it did not subscribe to, one huge frame per connection. Off by
/// default.
#[tokio::test]
async fn hostile_faults_send_what_a_connector_must_refuse() {
    let sim = sim(Exchange::Binance, |c| {
        c.absurd_time_every = Some(5);
        c.unsubscribed_every = Some(3);
        c.huge_frame = Some(100_000);
        c.max_trades = Some(200);
    })
    .await;
    let mut ws = connect(&sim.ws_url()).await;
    send(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade","solusdt@trade"],"id":1}"#,
    )
    .await;
    let messages = collect(&mut ws, Duration::from_secs(3), |_| false).await;
    let huge: Vec<&String> = messages.iter().filter(|m| m.len() >= 100_000).collect();
    assert_eq!(huge.len(), 2, "one garbage frame and one huge-price trade");
    let foreign = messages
        .iter()
        .filter(|m| m.contains(r#""s":"XRPUSDT""#))
        .count();
    assert!(foreign >= 5, "{foreign} frames of an unsubscribed pair");
    // Absurd times on the WebSocket: 1970 (T = 1000 ms) and 2100.
    assert!(messages.iter().any(|m| m.contains(r#""T":1000,"#)));
    assert!(messages.iter().any(|m| m.contains(r#""T":4102444800000,"#)));
    // Every absurd trade is ground truth and on REST; half never came on the WebSocket.
    let truth = sim.trades();
    let absurd: Vec<_> = truth
        .iter()
        .filter(|t| t.time.0 == 1_000_000 || t.time.0 == 4_102_444_800_000_000)
        .collect();
    assert!(absurd.len() >= 20, "{}", absurd.len());
    let on_ws = |id: u64| {
        messages
            .iter()
            .any(|m| m.contains(&format!(r#""t":{id},"#)))
    };
    let withheld: Vec<_> = absurd.iter().filter(|t| !on_ws(t.id)).collect();
    assert_eq!(withheld.len(), absurd.len() / 2, "half are REST-only");
    let t = withheld[0];
    let rest = get(
        &sim,
        &format!(
            "/api/v3/historicalTrades?symbol={}&fromId={}&limit=1",
            candles_core::symbols::rest_symbol(Exchange::Binance, t.pair),
            t.id
        ),
    )
    .await;
    assert!(
        rest.body.contains(&format!(r#""id":{}"#, t.id)),
        "{}",
        rest.body
    );
    sim.stop().await;

    // Off by default: nothing hostile.
    let calm = sim_default_binance().await;
    assert!(
        calm.trades()
            .iter()
            .all(|t| t.time.0 > 1_000_000_000_000_000)
    );
    calm.stop().await;
}

async fn sim_default_binance() -> exchange_sim::SimHandle {
    let sim = sim(Exchange::Binance, |c| c.max_trades = Some(100)).await;
    wait_generated(&sim, 100).await;
    sim
}
