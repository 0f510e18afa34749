//! The whole backend: three exchange simulators → three connectors → Kafka → two
//! candles-service instances in one group → Redis → gRPC clients on both instances. Both
//! clients receive the same final candles, equal to a reference computed from the trades.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use candles_connector::{ConnState, ConnectorConfig, KafkaSink};
use candles_core::{Exchange, Pair, Trade};
use common::*;
use exchange_sim::{SimConfig, TradeSource};
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const PARTITIONS: u32 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulators_to_connectors_to_two_instances_give_identical_exact_candles() {
    let t0 = Instant::now();
    let deps = Deps::start(PARTITIONS);
    // The production default grace: connectors, Kafka and two services share two loaded cores
    // here, and a trade that arrives after its window's end + grace is late by design.
    let mut config = deps.config();
    config.engine.grace = candles_core::time::Duration::from_millis(1500);
    let a = InProcess::start(config.clone()).await;
    let b = InProcess::start(config).await;
    wait_serving(a.addr, Duration::from_secs(15)).await;
    wait_serving(b.addr, Duration::from_secs(15)).await;
    let pairs = Pair::defaults();
    let on_a = Collected::subscribe(
        &mut a.client().await,
        request(&pairs, all_sources(), 0, false),
    )
    .await;
    let on_b = Collected::subscribe(
        &mut b.client().await,
        request(&pairs, all_sources(), 0, false),
    )
    .await;

    let shutdown = CancellationToken::new();
    let mut sims = Vec::new();
    let mut connectors = Vec::new();
    let mut sinks = Vec::new();
    for (i, exchange) in Exchange::ALL.into_iter().enumerate() {
        let sim = exchange_sim::start(SimConfig {
            exchange,
            pairs: pairs.clone(),
            source: TradeSource::Synthetic { rate: 40.0 },
            max_trades: Some(240),
            seed: 100 + i as u64,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let mut config = ConnectorConfig::new(exchange, pairs.clone());
        config.ws_url = Some(sim.ws_url());
        config.rest_url = Some(sim.rest_url());
        // This simulator runs without `--rest-limit`: pacing at Kraken's real ~1 request/s would
        // hold the third pair's first trades behind its start-up fill for longer than the
        // test's 400 ms grace (late by design, and not what this test is about).
        config.rest_pacer = std::sync::Arc::new(candles_connector::pacer::Pacer::new(
            candles_connector::pacer::RestLimit {
                burst: 100.0,
                per_second: 100.0,
            },
        ));
        let sink = KafkaSink::new(&deps.kafka().brokers(), &deps.topic).unwrap();
        let (status, _) = watch::channel(ConnState::Connecting);
        connectors.push(tokio::spawn(candles_connector::run(
            config,
            sink.clone(),
            status,
            shutdown.clone(),
        )));
        sinks.push(sink);
        sims.push(sim);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sims.iter().all(|s| s.done()) {
        assert!(Instant::now() < deadline, "simulators did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for sink in &sinks {
        sink.flush(Duration::from_secs(5)).await.unwrap();
    }
    shutdown.cancel();
    for c in connectors {
        c.await.unwrap().unwrap();
    }

    // The trades as they are in Kafka, checked against the simulators' ground truth.
    let in_kafka = read_all(&deps.kafka().brokers(), &deps.topic);
    let mut truth: BTreeMap<(Exchange, Pair), Vec<u64>> = BTreeMap::new();
    for s in &sims {
        for t in s.trades() {
            truth.entry((t.exchange, t.pair)).or_default().push(t.id);
        }
    }
    let mut got: BTreeMap<(Exchange, Pair), Vec<u64>> = BTreeMap::new();
    for t in &in_kafka {
        got.entry((t.exchange, t.pair)).or_default().push(t.id);
    }
    for (series, ids) in &got {
        let all = &truth[series];
        let from = all.iter().position(|id| *id == ids[0]).unwrap();
        assert_eq!(
            &all[from..],
            &ids[..],
            "{series:?}: Kafka holds every trade from the connector's first, once"
        );
    }
    // The reference runs on event time over one engine: feed it in trade-time order (the topic
    // interleaves partitions arbitrarily when read back).
    let mut by_time = in_kafka.clone();
    by_time.sort_by_key(|t| t.time);
    let expected = reference(&by_time);
    assert!(
        on_a.wait_for(&expected, Duration::from_secs(20)).await,
        "A: {:?}",
        check_exact(&on_a.finals(), &expected)
    );
    assert!(
        on_b.wait_for(&expected, Duration::from_secs(5)).await,
        "B: {:?}",
        check_exact(&on_b.finals(), &expected)
    );
    check_exact(&on_a.finals(), &expected).unwrap();
    check_exact(&on_b.finals(), &expected).unwrap();
    println!(
        "{} trades made, {} through connectors → {} candles, identical and exact on both instances in {:?}",
        sims.iter().map(|s| s.trades().len()).sum::<usize>(),
        in_kafka.len(),
        expected.len(),
        t0.elapsed()
    );
    for s in sims {
        s.stop().await;
    }
    let _ = tokio::join!(a.stop(), b.stop());
}

/// Every trade in the topic, partition by partition (assign: no group join).
fn read_all(brokers: &str, topic: &str) -> Vec<Trade> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(2) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let wire = candles_proto::v1::Trade::decode(m.payload().unwrap()).unwrap();
            out.push(Trade::try_from(&wire).unwrap());
            quiet = Instant::now();
        }
    }
    std::thread::spawn(move || drop(consumer));
    out
}
