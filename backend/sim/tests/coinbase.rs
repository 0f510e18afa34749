//! Coinbase Exchange over a real socket: subscriptions, last_match, matches equal to the ground
//! truth (maker side), heartbeats, unknown products, the subscribe timeout, REST pagination.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candles_core::{Exchange, Pair, Side};
use common::*;
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

fn match_row(v: &Value) -> Row {
    let time = time::OffsetDateTime::parse(
        v["time"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let side = match v["side"].as_str().unwrap() {
        "sell" => Side::Buy, // maker sold: the taker bought
        "buy" => Side::Sell,
        other => panic!("side {other}"),
    };
    for key in ["maker_order_id", "taker_order_id"] {
        assert_eq!(v[key].as_str().unwrap().len(), 36, "{v}");
    }
    assert!(v["sequence"].is_u64());
    (
        Pair::parse(v["product_id"].as_str().unwrap())
            .unwrap()
            .to_string(),
        v["trade_id"].as_u64().unwrap(),
        v["price"].as_str().unwrap().to_string(),
        v["size"].as_str().unwrap().to_string(),
        side,
        (time.unix_timestamp_nanos() / 1000) as i64,
    )
}

const SUBSCRIBE: &str = r#"{"type":"subscribe","product_ids":["BTC-USDT","ETH-USDT"],"channels":["matches","heartbeat"]}"#;

#[tokio::test]
async fn subscriptions_last_match_then_matches_equal_the_ground_truth() {
    let sim = sim(Exchange::Coinbase, |_| {}).await;
    assert_eq!(sim.ws_url(), format!("ws://{}/", sim.addr()));
    wait_generated(&sim, 50).await;
    let mut ws = connect(&sim.ws_url()).await;
    send(&mut ws, SUBSCRIBE).await;
    let reply = json(&next_text(&mut ws, WAIT, "subscriptions").await);
    assert_eq!(
        reply,
        json(
            r#"{"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USDT","ETH-USDT"]},{"name":"heartbeat","product_ids":["BTC-USDT","ETH-USDT"]}]}"#
        )
    );
    let messages = collect(&mut ws, WAIT, |m| {
        m.iter().filter(|t| t.contains(r#""type":"match""#)).count() >= 30
            && m.iter().filter(|t| t.contains("heartbeat")).count() >= 2
    })
    .await;
    let mut last_matches = 0;
    let mut last_id = std::collections::BTreeMap::new();
    for text in &messages {
        let v = json(text);
        match v["type"].as_str().unwrap() {
            "last_match" => {
                last_matches += 1;
                let row = match_row(&v);
                assert_eq!(row, common::row(&truth(&sim, &row.0, row.1)));
                assert!(
                    last_id.insert(row.0, row.1).is_none(),
                    "one last_match per product, first"
                );
            }
            "match" => {
                let row = match_row(&v);
                assert_eq!(row, common::row(&truth(&sim, &row.0, row.1)), "{text}");
                let prev = last_id
                    .insert(row.0.clone(), row.1)
                    .expect("last_match comes first");
                assert_eq!(row.1, prev + 1, "contiguous after last_match: {text}");
            }
            "heartbeat" => {
                let product = v["product_id"].as_str().unwrap();
                assert!(product == "BTC-USDT" || product == "ETH-USDT");
                assert!(
                    v["last_trade_id"].is_u64() && v["sequence"].is_u64() && v["time"].is_string()
                );
            }
            other => panic!("unexpected {other}: {text}"),
        }
    }
    assert_eq!(last_matches, 2);
    sim.stop().await;
}

#[tokio::test]
async fn per_channel_objects_work_and_unknown_products_fail() {
    let sim = sim(Exchange::Coinbase, |_| {}).await;
    let mut ws = connect(&sim.ws_url()).await;
    send(&mut ws, r#"{"type":"subscribe","channels":[{"name":"matches","product_ids":["SOL-USDT","DOGE-USDT"]}]}"#).await;
    let error = json(&next_text(&mut ws, WAIT, "an error").await);
    assert_eq!(
        error,
        json(
            r#"{"type":"error","message":"Failed to subscribe","reason":"DOGE-USDT is not a valid product"}"#
        )
    );
    send(
        &mut ws,
        r#"{"type":"subscribe","channels":[{"name":"matches","product_ids":["SOL-USDT"]}]}"#,
    )
    .await;
    let reply = json(&next_text(&mut ws, WAIT, "subscriptions").await);
    assert_eq!(
        reply["channels"],
        json(r#"[{"name":"matches","product_ids":["SOL-USDT"]}]"#)
    );
    let next = json(&next_text(&mut ws, WAIT, "a match").await);
    assert_eq!(next["product_id"], "SOL-USDT");
    assert_eq!(get(&sim, "/products/DOGE-USDT").await.status, 404);
    assert_eq!(
        get(&sim, "/products/DOGE-USDT").await.json(),
        json(r#"{"message":"NotFound"}"#)
    );
    let product = get(&sim, "/products/BTC-USDT").await;
    assert_eq!(
        product.json(),
        json(
            r#"{"id":"BTC-USDT","base_currency":"BTC","quote_currency":"USDT","status":"online"}"#
        )
    );
    sim.stop().await;
}

#[tokio::test]
async fn clients_that_do_not_subscribe_are_closed() {
    let sim = sim(Exchange::Coinbase, |c| {
        c.timing.subscribe_timeout = Duration::from_millis(300)
    })
    .await;
    let mut ws = connect(&sim.ws_url()).await;
    assert!(matches!(next(&mut ws, WAIT).await, Seen::Closed));
    sim.stop().await;
}

#[tokio::test]
async fn rest_pages_newest_first_and_fills_dropped_matches() {
    let sim = sim(Exchange::Coinbase, |c| c.drop_ratio = 0.3).await;
    let mut ws = connect(&sim.ws_url()).await;
    send(
        &mut ws,
        r#"{"type":"subscribe","product_ids":["BTC-USDT"],"channels":["matches"]}"#,
    )
    .await;
    let ids: Vec<u64> = collect(&mut ws, WAIT, |m| m.len() >= 60)
        .await
        .iter()
        .map(|t| json(t))
        .filter(|v| v["type"] == "match")
        .map(|v| v["trade_id"].as_u64().unwrap())
        .collect();
    let missing: Vec<u64> = (ids[0]..=*ids.last().unwrap())
        .filter(|id| !ids.contains(id))
        .collect();
    assert!(!missing.is_empty(), "gaps expected in {ids:?}");
    // Walk pages backwards from just after the newest received id, like a connector.
    let mut cursor = ids.last().unwrap() + 1;
    let mut served = Vec::new();
    while cursor > ids[0] {
        let page = get(
            &sim,
            &format!("/products/BTC-USDT/trades?after={cursor}&limit=7"),
        )
        .await;
        assert_eq!(page.status, 200);
        let items = page.json();
        let items = items.as_array().unwrap();
        assert!(!items.is_empty() && items.len() <= 7);
        let page_ids: Vec<u64> = items
            .iter()
            .map(|i| i["trade_id"].as_u64().unwrap())
            .collect();
        assert!(
            page_ids.windows(2).all(|w| w[0] == w[1] + 1),
            "newest first, contiguous: {page_ids:?}"
        );
        assert!(page_ids.iter().all(|id| *id < cursor));
        assert_eq!(
            page.header("cb-after").unwrap().parse::<u64>().unwrap(),
            *page_ids.last().unwrap()
        );
        for item in items {
            let t = truth(&sim, "BTC-USDT", item["trade_id"].as_u64().unwrap());
            assert_eq!(item["price"].as_str().unwrap(), t.price.to_string());
            assert_eq!(item["size"].as_str().unwrap(), t.quantity.to_string());
            assert_eq!(
                item["side"],
                if t.side == Side::Buy { "sell" } else { "buy" }
            );
        }
        served.extend(page_ids);
        cursor = page.header("cb-after").unwrap().parse().unwrap();
    }
    assert!(missing.iter().all(|id| served.contains(id)));
    let newest = get(&sim, "/products/BTC-USDT/trades").await.json();
    let newest = newest.as_array().unwrap();
    assert!((1..=100).contains(&newest.len()));
    assert!(newest[0]["trade_id"].as_u64().unwrap() >= *ids.last().unwrap());
    assert_eq!(
        get(&sim, "/products/BTC-USDT/trades?limit=1001")
            .await
            .status,
        400
    );
    sim.stop().await;
}
