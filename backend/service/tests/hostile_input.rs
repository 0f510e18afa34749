//! Hostile and buggy producers against the real service (in-process) on real Apache Kafka and
//! Redis (issue 17, findings 1–4): a huge poison record, a trade keyed by another pair, 20,000
//! made-up pairs, trades dated 1970 and 2100 (wall and event clock). Each test failed on the
//! service before `admission.rs` and the bounded dead letters; each prints the figures it
//! measured (`cargo test -p candles-service --test hostile_input -- --nocapture`).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use candles_core::{ClockMode, Exchange, Micros, Pair, Source};
use candles_proto::v1;
use common::*;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::FutureRecord;
use std::time::{Duration, Instant};

/// The resident memory of this process (the in-process service is most of it), in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_poison_record_is_dead_lettered_cut_and_the_next_trade_is_consumed_at_once() {
    let deps = Deps::start(1);
    let config = deps.config();
    let dlq = config.dlq_topic.clone();
    deps.kafka().create_topic(&dlq, 1).unwrap();
    let service = InProcess::start(config).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let watcher = live_watcher(&service).await;
    let producer = producer(&deps.kafka().brokers());
    // 170 KB of \x01 as the price: every layer's error used to echo it (Debug-escaped, several
    // times over), the dead letter outgrew the broker's record limit and was retried for ever.
    let mut poison = v1::Trade::from(&marker("1"));
    poison.price = "\u{1}".repeat(170_000);
    let poison = poison.encode_to_vec();
    // Twice: the first dead letter also pays for the service's producer finding the topic.
    for (round, price) in [(1, "4242.42"), (2, "4343.43")] {
        produce_raw(&producer, &deps.topic, "BTC-USDT", &poison, None).await;
        send_marker(&producer, &deps.topic, price).await;
        let took = wait_marker(&watcher, price, Duration::from_secs(20)).await;
        println!(
            "poison #{round}: {} byte record; the next trade reached a live client {took:?} after it was produced",
            poison.len()
        );
        assert!(
            took.is_some(),
            "the trade after poison record #{round} was never consumed"
        );
    }
    let letters = dead_letters(&deps.kafka().brokers(), &dlq, 2).await;
    let letter = &letters[0];
    let error = &letter.headers["error"];
    println!(
        "poison: dead letter of {} bytes, error ({} bytes): {error}",
        letter.value.len(),
        error.len()
    );
    assert!(error.len() < 1_000, "a short error: {error}");
    assert!(
        error.contains("price") && error.contains("170000 bytes"),
        "{error}"
    );
    assert_eq!(letter.key.as_deref(), Some(&b"BTC-USDT"[..]));
    assert!(letter.value.len() <= candles_service::consumer::DLQ_MAX_VALUE);
    assert_eq!(
        letter.value[..],
        poison[..letter.value.len()],
        "the value's first bytes"
    );
    assert_eq!(letter.headers["value.bytes"], poison.len().to_string());
    wait_serving(service.addr, Duration::from_secs(2)).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_the_broker_refuses_is_counted_and_skipped_not_retried_for_ever() {
    let deps = Deps::start(1);
    let config = deps.config();
    // A dead-letter topic that takes no record over 2,000 bytes.
    deps.kafka()
        .create_topic_with(&config.dlq_topic, 1, &[("max.message.bytes", "2000")])
        .unwrap();
    let service = InProcess::start(config).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let watcher = live_watcher(&service).await;
    let producer = producer(&deps.kafka().brokers());
    produce_raw(
        &producer,
        &deps.topic,
        "BTC-USDT",
        &vec![0xff; 10_000],
        None,
    )
    .await;
    send_marker(&producer, &deps.topic, "5151.51").await;
    let took = wait_marker(&watcher, "5151.51", Duration::from_secs(20)).await;
    println!(
        "refused dead letter: the next trade reached a live client {took:?} after it was produced"
    );
    assert!(
        took.is_some(),
        "the service is stuck on a dead letter the broker refuses"
    );
    wait_serving(service.addr, Duration::from_secs(2)).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_keyed_by_another_pair_is_dead_lettered_and_every_final_stays_exact() {
    let deps = Deps::start(3);
    let config = deps.config();
    let dlq = config.dlq_topic.clone();
    deps.kafka().create_topic(&dlq, 1).unwrap();
    let service = InProcess::start(config).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let eth = pairs()[1];
    let watcher = Collected::subscribe(
        &mut service.client().await,
        request(&[eth], vec![], 0, false),
    )
    .await;
    let producing = tokio::spawn(produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        vec![eth],
        Duration::from_secs(4),
        Duration::from_millis(20),
        None,
        11,
    ));
    // One ETH trade at 100 under BTC's key, in every partition: it must start no ETH series
    // anywhere (its flat candles at 100 used to win publish-once over the real finals).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let producer = producer(&deps.kafka().brokers());
    let mut stray = TradeGen::new(99).trade(Exchange::Binance, eth, Micros::now());
    stray.price = "100".parse().unwrap();
    let stray = v1::Trade::from(&stray).encode_to_vec();
    for partition in 0..3 {
        produce_raw(&producer, &deps.topic, "BTC-USDT", &stray, Some(partition)).await;
    }
    let trades = producing.await.unwrap();
    let expected: Vec<_> = reference(&trades)
        .into_iter()
        .filter(|c| c.source == Source::Composite)
        .collect();
    assert!(
        watcher.wait_for(&expected, Duration::from_secs(20)).await,
        "every ETH final arrived"
    );
    // A few more windows, to see any flat candle a stray series would make.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let finals = watcher.finals();
    check_exact(&finals, &expected).unwrap();
    assert!(
        finals.iter().all(|c| c.close != "100"),
        "no ETH candle at the stray price"
    );
    let letters = dead_letters(&deps.kafka().brokers(), &dlq, 3).await;
    for letter in &letters {
        let error = &letter.headers["error"];
        assert!(
            error.contains("\"BTC-USDT\"") && error.contains("ETH-USDT"),
            "names the key and the pair: {error}"
        );
    }
    println!(
        "misrouted: {} ETH finals exact; 3 stray trades dead-lettered: {}",
        expected.len(),
        letters[0].headers["error"]
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_made_up_pairs_leave_memory_and_redis_flat() {
    let deps = Deps::start(1);
    let service = InProcess::start(deps.config()).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let watcher = live_watcher(&service).await;
    let producer = producer(&deps.kafka().brokers());
    send_marker(&producer, &deps.topic, "1111.11").await;
    assert!(
        wait_marker(&watcher, "1111.11", Duration::from_secs(20))
            .await
            .is_some()
    );
    let redis = redis::Client::open(deps.redis.url()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let dbsize = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("DBSIZE")
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
        }
    };
    let (keys_before, rss_before) = (dbsize(&mut conn).await, rss_mib());
    let started = Instant::now();
    let mut gen_ = TradeGen::new(5);
    let mut futures = Vec::new();
    for i in 0..20_000 {
        let pair = Pair::parse(&format!("Z{i}-USDT")).unwrap();
        let t = gen_.trade(Exchange::Binance, pair, Micros::now());
        let (key, value) = (pair.to_string(), v1::Trade::from(&t).encode_to_vec());
        let record = FutureRecord::to(&deps.topic)
            .key(&key)
            .payload(&value)
            .partition(0);
        futures.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for f in futures {
        f.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
    send_marker(&producer, &deps.topic, "2222.22").await;
    assert!(
        wait_marker(&watcher, "2222.22", Duration::from_secs(30))
            .await
            .is_some(),
        "the service read past the made-up pairs"
    );
    // Several windows: made-up series would now be making finals every second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (keys_after, rss_after) = (dbsize(&mut conn).await, rss_mib());
    println!(
        "made-up pairs: 20,000 produced and read in {:?}; Redis keys {keys_before} → {keys_after}; RSS {rss_before:.0} → {rss_after:.0} MiB",
        started.elapsed()
    );
    assert!(
        keys_after <= keys_before + 8,
        "Redis keys {keys_before} → {keys_after}"
    );
    assert!(
        rss_after - rss_before < 100.0,
        "RSS {rss_before:.0} → {rss_after:.0} MiB"
    );
    let markets = service
        .client()
        .await
        .list_markets(v1::ListMarketsRequest {})
        .await
        .unwrap()
        .into_inner();
    let listed = format!("{markets:?}");
    assert!(
        !listed.contains("Z1-USDT"),
        "ListMarkets lists only served pairs: {listed:.300}"
    );
    service.stop().await;
}

/// The committed offset of `group` in partition 0 of `topic`.
fn committed(brokers: &str, group: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let tpl = consumer
        .committed_offsets(tpl, Duration::from_secs(5))
        .ok()?;
    match tpl.find_partition(topic, 0)?.offset() {
        rdkafka::Offset::Offset(o) => Some(o),
        _ => None,
    }
}

async fn absurd_times_are_dead_lettered(clock: ClockMode) {
    let deps = Deps::start(1);
    let mut config = deps.config();
    config.engine.clock = clock;
    let dlq = config.dlq_topic.clone();
    deps.kafka().create_topic(&dlq, 1).unwrap();
    let producer = producer(&deps.kafka().brokers());
    // Produced before the service starts, so they are read during catch-up (the wall clock's
    // engine has not advanced yet: a 1970 trade then made one flat candle per window since).
    let mut gen_ = TradeGen::new(3);
    for time in [Micros(0), Micros(4_102_444_800_000_000)] {
        let t = gen_.trade(Exchange::Coinbase, pairs()[0], time);
        produce_raw(
            &producer,
            &deps.topic,
            "BTC-USDT",
            &v1::Trade::from(&t).encode_to_vec(),
            None,
        )
        .await;
    }
    let rss_before = rss_mib();
    let service = InProcess::start(config.clone()).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let watcher = Collected::subscribe(
        &mut service.client().await,
        request(&pairs(), vec![], 0, false),
    )
    .await;
    let trades = produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        pairs(),
        Duration::from_secs(3),
        Duration::from_millis(20),
        None,
        21,
    )
    .await;
    let mut expected: Vec<_> = reference(&trades)
        .into_iter()
        .filter(|c| c.source == Source::Composite)
        .collect();
    if clock == ClockMode::Event {
        // The event clock finalizes a window once a later trade passes its end plus grace: the
        // last windows stay open when the trades stop.
        let last = expected.iter().map(|c| c.start).max().unwrap();
        expected.retain(|c| c.start.0 < last.0 - 2_000_000);
    }
    assert!(
        watcher.wait_for(&expected, Duration::from_secs(20)).await,
        "{clock:?}: the real trades' finals arrived"
    );
    check_exact(&watcher.finals(), &expected).unwrap();
    let letters = dead_letters(&deps.kafka().brokers(), &dlq, 2).await;
    let errors: Vec<&String> = letters.iter().map(|l| &l.headers["error"]).collect();
    assert!(
        errors[0].contains("1970-01-01") && errors[0].contains("--max-trade-age"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("2100-01-01") && errors[1].contains("--max-trade-lead"),
        "{}",
        errors[1]
    );
    let rss_after = rss_mib();
    println!(
        "{clock:?} clock: 1970 and 2100 trades dead-lettered ({}); RSS {rss_before:.0} → {rss_after:.0} MiB",
        errors[0]
    );
    assert!(
        rss_after - rss_before < 100.0,
        "RSS {rss_before:.0} → {rss_after:.0} MiB"
    );
    if clock == ClockMode::Wall {
        // The 2100 trade (offset 1) holds no window open: the commit moves past it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let at = committed(&deps.kafka().brokers(), &config.group, &deps.topic);
            if at.is_some_and(|o| o > 2) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the committed offset stays at {at:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_dated_1970_or_2100_are_dead_lettered_with_the_wall_clock() {
    absurd_times_are_dead_lettered(ClockMode::Wall).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_dated_2100_cannot_move_the_event_clock() {
    absurd_times_are_dead_lettered(ClockMode::Event).await;
}
