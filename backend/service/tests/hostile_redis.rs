//! Redis as an input (issue 17, findings 7 and 8), over the real service, real Apache Kafka and
//! real redis-server: forged candles on Pub/Sub (5 MB, unserved pair, dated 2100, inconsistent,
//! another interval) never reach a client and the stream goes on; a forged history entry dated
//! 2100 does not silence the real finals; two deployments on two DBs of one server do not
//! cross-feed; `rediss://` with a password works and the password never shows in an error.
//! `cargo test -p candles-service --test hostile_redis -- --nocapture`
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use candles_core::{Candle, Micros, Pair, Source};
use candles_proto::v1;
use candles_service::store::Keys;
use common::*;
use prost::Message as _;
use rust_decimal::Decimal;
use std::time::Duration;

/// A well-formed final BTC composite candle at `start` closing at `close`.
fn forged(start: Micros, close: &str) -> Candle {
    let mut c = Candle::flat(
        pairs()[0],
        Source::Composite,
        INTERVAL,
        INTERVAL.window_start(start),
        close.parse().unwrap(),
    );
    c.volume = Decimal::ONE;
    c.buy_volume = Decimal::ONE;
    c.quote_volume = c.close;
    c.trades = 1;
    c
}

fn wire(c: &Candle) -> Vec<u8> {
    v1::Candle::from(c).encode_to_vec()
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Every close price a stream delivered.
fn closes(c: &Collected) -> Vec<String> {
    c.responses()
        .into_iter()
        .filter_map(|r| r.candle)
        .map(|c| c.close)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_candles_on_pubsub_never_reach_a_client_and_the_stream_goes_on() {
    let deps = Deps::start(1);
    let service = InProcess::start(deps.config()).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let watcher = live_watcher(&service).await;
    let producer = producer(&deps.kafka().brokers());
    send_marker(&producer, &deps.topic, "100.5").await;
    assert!(
        wait_marker(&watcher, "100.5", Duration::from_secs(20))
            .await
            .is_some()
    );

    let mut redis = redis_conn(&deps.redis.url()).await;
    let channel = Keys::new(INTERVAL).channel(pairs()[0]);
    let now = Micros::now();
    let mut unserved = forged(now, "666.1");
    unserved.pair = Pair::parse("DOGE-USDT").unwrap();
    let mut inconsistent = forged(now, "666.2");
    inconsistent.high = Decimal::ONE;
    let mut other_interval = forged(now, "666.3");
    other_interval.interval = candles_core::Interval::seconds(60);
    other_interval.start = other_interval.interval.window_start(now);
    let mut huge = v1::Candle::from(&forged(now, "666.4"));
    huge.pair = "X".repeat(5_000_000);
    let attacks: Vec<(&str, Vec<u8>)> = vec![
        ("5 MB candle", huge.encode_to_vec()),
        ("unserved pair", wire(&unserved)),
        (
            "dated 2100",
            wire(&forged(Micros(4_102_444_800_000_000), "666.5")),
        ),
        ("high below close", wire(&inconsistent)),
        ("another interval", wire(&other_interval)),
        ("not protobuf", b"\xff\xff\xff not a candle".to_vec()),
    ];
    for (what, payload) in &attacks {
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async(&mut redis)
            .await
            .unwrap();
        println!(
            "PUBLISH {what} ({} bytes) on {channel}: {receivers} subscriber(s)",
            payload.len()
        );
        assert_eq!(receivers, 1, "the service's subscriber is listening");
    }
    // A trade after the attacks still reaches the client: the stream did not end.
    send_marker(&producer, &deps.topic, "101.5").await;
    let took = wait_marker(&watcher, "101.5", Duration::from_secs(20)).await;
    println!("after the forged candles, the next trade reached the client in {took:?}");
    assert!(took.is_some(), "the stream went on: {:?}", watcher.ended);
    assert!(watcher.ended.lock().unwrap().is_none());
    let seen = closes(&watcher);
    assert!(
        seen.iter().all(|c| !c.starts_with("666")),
        "a forged candle reached the client: {seen:?}"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_history_entry_dated_2100_does_not_silence_the_real_finals() {
    let deps = Deps::start(1);
    let btc = pairs()[0];
    let keys = Keys::new(INTERVAL);
    let history = keys.history(btc, Source::Composite);
    let mut redis = redis_conn(&deps.redis.url()).await;
    // Before the service starts: a forged final dated 2100 and a garbage member at a plausible
    // score. Publish-once compared every real final with the 2100 entry and refused them all.
    let in_2100 = Micros(4_102_444_800_000_000);
    let _: i64 = redis::cmd("ZADD")
        .arg(&history)
        .arg(in_2100.0)
        .arg(wire(&forged(in_2100, "777.1")))
        .arg(Micros::now().0 - 60_000_000)
        .arg(b"garbage".as_slice())
        .query_async(&mut redis)
        .await
        .unwrap();

    let service = InProcess::start(deps.config()).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let mut client = service.client().await;
    let watcher = Collected::subscribe(
        &mut client,
        request(&[btc], vec!["composite".into()], 0, false),
    )
    .await;
    let producer = producer(&deps.kafka().brokers());
    let mut trades = Vec::new();
    let mut trade_gen = TradeGen::new(17);
    for _ in 0..3 {
        let t = trade_gen.trade(candles_core::Exchange::Binance, btc, Micros::now());
        produce(&producer, &deps.topic, &t, None).await;
        trades.push(t);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
    let expected: Vec<Candle> = reference(&trades)
        .into_iter()
        .filter(|c| c.source == Source::Composite)
        .collect();
    assert!(
        watcher.wait_for(&expected, Duration::from_secs(20)).await,
        "every real final reached the client; got {:?}",
        closes(&watcher)
    );
    check_exact(&watcher.finals(), &expected).unwrap();
    let newest: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
        .arg(&history)
        .arg(-1)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        newest[0].1 < in_2100.0 as f64,
        "the 2100 entry was removed: {newest:?}"
    );
    // A history request skips the garbage member and serves only real finals.
    let replay = Collected::subscribe(
        &mut client,
        request(&[btc], vec!["composite".into()], 100, false),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let replayed = replay.finals();
    println!(
        "history after the forged entries: {} finals, closes {:?}",
        replayed.len(),
        closes(&replay)
    );
    check_exact(&replayed, &expected).unwrap();
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployments_on_two_dbs_of_one_redis_do_not_cross_feed() {
    let a = Deps::start(1);
    let b = Deps::start(1);
    let mut config_a = a.config();
    config_a.redis_url = format!("{}1", a.redis.url());
    let mut config_b = b.config();
    config_b.redis_url = format!("{}2", a.redis.url());
    let service_a = InProcess::start(config_a).await;
    let service_b = InProcess::start(config_b).await;
    wait_serving(service_a.addr, Duration::from_secs(15)).await;
    wait_serving(service_b.addr, Duration::from_secs(15)).await;
    let watch_a = live_watcher(&service_a).await;
    let watch_b = live_watcher(&service_b).await;
    let producer = producer(&a.kafka().brokers());
    send_marker(&producer, &a.topic, "201.5").await;
    send_marker(&producer, &b.topic, "202.5").await;
    assert!(
        wait_marker(&watch_a, "201.5", Duration::from_secs(20))
            .await
            .is_some()
    );
    assert!(
        wait_marker(&watch_b, "202.5", Duration::from_secs(20))
            .await
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (seen_a, seen_b) = (closes(&watch_a), closes(&watch_b));
    println!("DB 1 clients saw {seen_a:?}; DB 2 clients saw {seen_b:?}");
    assert!(!seen_a.contains(&"202.5".to_string()), "{seen_a:?}");
    assert!(!seen_b.contains(&"201.5".to_string()), "{seen_b:?}");
    service_a.stop().await;
    service_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_runs_on_rediss_with_a_password_that_no_error_shows() {
    let deps = Deps::start(1);
    let tls = candles_testkit::Redis::start_tls("s3cret-pw")
        .expect("redis-server and openssl must be installed (scripts/install-test-deps.sh)");
    let mut config = deps.config();
    config.redis_url = tls.url();
    assert!(config.redis_url.starts_with("rediss://"));
    let dir = tempfile::tempdir().unwrap();
    // The binary, so that it trusts the test CA through SSL_CERT_FILE as a user's would.
    let ca = tls.ca_file();
    let mut child = Child::spawn_with_env(
        &config,
        "tls",
        dir.path(),
        &[("SSL_CERT_FILE", ca.as_os_str())],
    );
    let log = child.log.clone();
    let serving = tokio::spawn(wait_serving(child.addr, Duration::from_secs(20)));
    if serving.await.is_err() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        panic!("the service over rediss:// never served; its log ends:\n{tail:#?}");
    }
    let watcher = Collected::subscribe(
        &mut connect(child.addr).await,
        request(&pairs()[..1], vec!["composite".into()], 0, true),
    )
    .await;
    let producer = producer(&deps.kafka().brokers());
    send_marker(&producer, &deps.topic, "301.5").await;
    let took = wait_marker(&watcher, "301.5", Duration::from_secs(20)).await;
    println!("over rediss:// a trade reached the client in {took:?}");
    assert!(took.is_some(), "live candles flow through a TLS Redis");
    child.child.kill().unwrap();
    let _ = child.child.wait();

    // A malformed URL: the error names the flag and hides the password.
    let mut bad = deps.config();
    bad.redis_url = "rediss://user:s3cret-pw@127.0.0.1:notaport/".into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = candles_service::serve(bad, listener, Default::default())
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    println!("malformed Redis URL: {text}");
    assert!(text.contains("--redis"), "{text}");
    assert!(!text.contains("s3cret-pw"), "the password leaked: {text}");
    let log = std::fs::read_to_string(&child.log).unwrap();
    assert!(!log.contains("s3cret-pw"), "the password is in the log");
}
