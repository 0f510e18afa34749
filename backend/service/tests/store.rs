//! Publish-once in real Redis: two instances publishing the same window publish it once; the
//! history is bounded and ordered; live updates are published but never stored.
#![allow(clippy::unwrap_used, missing_docs)]

use candles_core::{Candle, Decimal, Interval, Micros, Pair, Source};
use candles_service::store::Store;
use futures::StreamExt as _;
use std::time::Duration;

fn candle(start_s: i64, close: i64) -> Candle {
    let mut c = Candle::flat(
        Pair::parse("BTC-USDT").unwrap(),
        Source::Composite,
        Interval::seconds(1),
        Micros(start_s * 1_000_000),
        Decimal::from(close),
    );
    c.trades = 1;
    c.volume = Decimal::ONE;
    c.buy_volume = Decimal::ONE;
    c.quote_volume = Decimal::from(close);
    c
}

#[tokio::test]
async fn publish_once_bounded_history_and_live_updates() {
    let redis = candles_testkit::Redis::start()
        .expect("redis-server must be installed (scripts/install-test-deps.sh)");
    let a = Store::connect(&redis.url(), Interval::seconds(1), 3).unwrap();
    let b = Store::connect(&redis.url(), Interval::seconds(1), 3).unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut sub = client.get_async_pubsub().await.unwrap();
    sub.psubscribe(a.keys().pattern()).await.unwrap();
    let mut messages = sub.into_on_message();

    // Two instances race to publish the same window: exactly one wins.
    let c = candle(100, 10);
    let (ra, rb) = tokio::join!(a.publish_final(&c), b.publish_final(&c));
    assert_eq!(
        u8::from(ra.unwrap()) + u8::from(rb.unwrap()),
        1,
        "published exactly once"
    );
    assert!(!a.publish_final(&c).await.unwrap(), "a replay is a no-op");
    assert!(
        !b.publish_final(&candle(99, 9)).await.unwrap(),
        "an older window of the series is a no-op too"
    );
    for s in 101..=105 {
        assert!(a.publish_final(&candle(s, s)).await.unwrap());
    }
    let mut live = candle(106, 1);
    live.is_final = false;
    a.publish_live(&live).await.unwrap();

    let pair = Pair::parse("BTC-USDT").unwrap();
    let history = a.history(pair, Source::Composite, 10).await.unwrap();
    let starts: Vec<i64> = history.iter().map(|c| c.start.unwrap().seconds).collect();
    assert_eq!(
        starts,
        [103, 104, 105],
        "bounded to 3, oldest first, no live candle"
    );
    assert_eq!(
        a.last_final(pair, Source::Composite)
            .await
            .unwrap()
            .unwrap(),
        candle(105, 105)
    );
    assert_eq!(
        a.markets().await.unwrap(),
        vec![(pair, vec![Source::Composite])]
    );

    let mut got = Vec::new();
    while got.len() < 7 {
        let m = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.get_channel_name(), "candles.v1.1s.BTC-USDT");
        let c: candles_proto::v1::Candle = prost::Message::decode(m.get_payload_bytes()).unwrap();
        got.push((c.start.unwrap().seconds, c.r#final));
    }
    assert_eq!(
        got,
        [
            (100, true),
            (101, true),
            (102, true),
            (103, true),
            (104, true),
            (105, true),
            (106, false)
        ]
    );
}
