//! Binance protocol over a real socket: SUBSCRIBE, raw and combined `@trade` events equal to the
//! ground truth, unknown symbols, REST backfill of dropped trades, exchangeInfo.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candles_core::{Exchange, Micros, Pair, Side};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

/// A Binance trade event as a comparable row.
fn event_row(event: &Value) -> Row {
    assert_eq!(event["e"], "trade", "{event}");
    assert_eq!(event["M"], true);
    assert!(event["E"].as_i64().unwrap() >= event["T"].as_i64().unwrap());
    let pair = Pair::parse(event["s"].as_str().unwrap())
        .unwrap()
        .to_string();
    let side = if event["m"].as_bool().unwrap() {
        Side::Sell
    } else {
        Side::Buy
    };
    (
        pair,
        event["t"].as_u64().unwrap(),
        event["p"].as_str().unwrap().to_string(),
        event["q"].as_str().unwrap().to_string(),
        side,
        Micros::from_millis(event["T"].as_i64().unwrap()).0,
    )
}

#[tokio::test]
async fn subscribed_clients_receive_the_ground_truth_trades() {
    let sim = sim(Exchange::Binance, |_| {}).await;
    assert_eq!(sim.ws_url(), format!("ws://{}/ws", sim.addr()));
    let mut ws = connect(&sim.ws_url()).await;
    send(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"],"id":1}"#,
    )
    .await;
    assert_eq!(
        next_text(&mut ws, WAIT, "the SUBSCRIBE reply").await,
        r#"{"result":null,"id":1}"#
    );
    let messages = collect(&mut ws, WAIT, |m| m.len() >= 40).await;
    assert_eq!(messages.len(), 40);
    let mut last_ids = BTreeMap::new();
    for text in &messages {
        let row = event_row(&json(text));
        assert!(
            row.0 == "BTC-USDT" || row.0 == "ETH-USDT",
            "unsubscribed pair {row:?}"
        );
        assert_eq!(row, common::row(&truth(&sim, &row.0, row.1)), "{text}");
        // 8 decimals, Binance style; ids contiguous per pair without faults.
        assert_eq!(row.2.split('.').nth(1).map(str::len), Some(8), "{text}");
        if let Some(prev) = last_ids.insert(row.0.clone(), row.1) {
            assert_eq!(row.1, prev + 1, "ids must be contiguous: {text}");
        }
    }
    send(&mut ws, r#"{"method":"LIST_SUBSCRIPTIONS","id":"x"}"#).await;
    let list = collect(&mut ws, WAIT, |m| {
        m.last().is_some_and(|t| t.contains("result"))
    })
    .await;
    assert_eq!(
        json(list.last().unwrap()),
        json(r#"{"result":["btcusdt@trade","ethusdt@trade"],"id":"x"}"#)
    );
    sim.stop().await;
}

#[tokio::test]
async fn combined_streams_wrap_events_without_a_subscribe() {
    let sim = sim(Exchange::Binance, |_| {}).await;
    let url = format!(
        "ws://{}/stream?streams=solusdt@trade/btcusdt@trade",
        sim.addr()
    );
    let mut ws = connect(&url).await;
    for text in collect(&mut ws, WAIT, |m| m.len() >= 20).await {
        let v = json(&text);
        let stream = v["stream"].as_str().unwrap();
        let row = event_row(&v["data"]);
        assert_eq!(
            stream,
            candles_core::symbols::binance_stream(Pair::parse(&row.0).unwrap())
        );
        assert_eq!(row, common::row(&truth(&sim, &row.0, row.1)));
    }
    // Streams in the raw path work too.
    let mut raw = connect(&format!("ws://{}/ws/ethusdt@trade", sim.addr())).await;
    let first = json(&next_text(&mut raw, WAIT, "a raw event").await);
    assert_eq!(first["s"], "ETHUSDT");
    sim.stop().await;
}

#[tokio::test]
async fn unknown_symbols_are_accepted_and_send_nothing() {
    let sim = sim(Exchange::Binance, |_| {}).await;
    let mut ws = connect(&sim.ws_url()).await;
    send(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["dogeusdt@trade"],"id":7}"#,
    )
    .await;
    assert_eq!(
        next_text(&mut ws, WAIT, "the reply").await,
        r#"{"result":null,"id":7}"#
    );
    assert!(matches!(
        next(&mut ws, Duration::from_millis(500)).await,
        Seen::Silence
    ));
    send(&mut ws, "not json").await;
    let error = json(&next_text(&mut ws, WAIT, "an error").await);
    assert_eq!(error["code"], 3, "{error}");
    let info = get(&sim, "/api/v3/exchangeInfo?symbol=DOGEUSDT").await;
    assert_eq!(info.status, 400);
    assert_eq!(
        info.json(),
        json(r#"{"code":-1121,"msg":"Invalid symbol."}"#)
    );
    let info = get(&sim, "/api/v3/exchangeInfo?symbol=BTCUSDT").await;
    assert_eq!(info.status, 200);
    assert_eq!(
        info.json()["symbols"],
        json(r#"[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT"}]"#)
    );
    assert_eq!(
        get(&sim, "/api/v3/historicalTrades?symbol=DOGEUSDT")
            .await
            .status,
        400
    );
    sim.stop().await;
}

#[tokio::test]
async fn dropped_trades_leave_id_gaps_that_rest_fills() {
    let sim = sim(Exchange::Binance, |c| c.drop_ratio = 0.3).await;
    let mut ws = connect(&sim.ws_url()).await;
    send(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}"#,
    )
    .await;
    next_text(&mut ws, WAIT, "the reply").await;
    let rows: Vec<Row> = collect(&mut ws, WAIT, |m| m.len() >= 60)
        .await
        .iter()
        .map(|t| event_row(&json(t)))
        .collect();
    let (first, last) = (rows[0].1, rows.last().unwrap().1);
    let received: Vec<u64> = rows.iter().map(|r| r.1).collect();
    let missing: Vec<u64> = (first..=last).filter(|id| !received.contains(id)).collect();
    assert!(
        !missing.is_empty(),
        "a 30% drop ratio must leave gaps in {received:?}"
    );

    // Backfill exactly like a connector: fromId = first missing id.
    let response = get(
        &sim,
        &format!(
            "/api/v3/historicalTrades?symbol=BTCUSDT&fromId={}&limit=1000",
            missing[0]
        ),
    )
    .await;
    assert_eq!(response.status, 200);
    let backfill = response.json();
    let backfill = backfill.as_array().unwrap();
    assert_eq!(backfill[0]["id"].as_u64(), Some(missing[0]));
    for id in &missing {
        let item = backfill
            .iter()
            .find(|i| i["id"].as_u64() == Some(*id))
            .expect("the missing trade is served");
        let t = truth(&sim, "BTC-USDT", *id);
        assert_eq!(item["price"].as_str().unwrap(), t.price.to_string());
        assert_eq!(item["qty"].as_str().unwrap(), t.quantity.to_string());
        assert_eq!(item["time"].as_i64().unwrap(), t.time.as_millis());
        assert_eq!(
            item["isBuyerMaker"].as_bool().unwrap(),
            t.side == Side::Sell
        );
        let quote = (t.price * t.quantity).round_dp(8);
        assert_eq!(
            item["quoteQty"]
                .as_str()
                .unwrap()
                .parse::<candles_core::Decimal>()
                .unwrap(),
            quote
        );
    }
    // limit bounds.
    let page = get(
        &sim,
        &format!("/api/v3/historicalTrades?symbol=BTCUSDT&fromId={first}&limit=2"),
    )
    .await
    .json();
    assert_eq!(page.as_array().unwrap().len(), 2);
    assert_eq!(
        get(&sim, "/api/v3/historicalTrades?symbol=BTCUSDT&limit=1001")
            .await
            .status,
        400
    );
    sim.stop().await;
}

#[tokio::test]
async fn the_server_pings() {
    let sim = sim(Exchange::Binance, |c| {
        c.timing.ws_ping_every = Duration::from_millis(200)
    })
    .await;
    let mut ws = connect(&sim.ws_url()).await;
    assert!(matches!(next(&mut ws, WAIT).await, Seen::Ping));
    sim.stop().await;
}
