//! Several intervals from one service (`--intervals`) on real Apache Kafka + Redis: a client
//! subscribes to one interval at a time, gets only candles of it, and each interval's finals
//! equal a reference engine building that interval alone from the produced trades, also across
//! a restart in the middle of a coarse window (its open part is restored from the finer finals).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use candles_core::{Interval, Intervals, Micros};
use candles_proto::v1::{ListMarketsRequest, SubscribeRequest};
use common::*;
use std::time::{Duration, Instant};

fn subscribe_to(interval: Option<Interval>) -> SubscribeRequest {
    SubscribeRequest {
        interval: interval.map(candles_proto::duration),
        ..request(&pairs(), all_sources(), 0, true)
    }
}

/// The service of `deps` building 1s and 5s.
fn two_intervals(deps: &Deps) -> candles_service::ServiceConfig {
    let set = Intervals::new(&[Interval::seconds(1), Interval::seconds(5)]).unwrap();
    candles_service::ServiceConfig {
        intervals: Some(set),
        ..deps.config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_service_serves_two_intervals_each_equal_to_its_reference() {
    let t0 = Instant::now();
    let deps = Deps::start(3);
    let (one, five) = (Interval::seconds(1), Interval::seconds(5));
    let service = InProcess::start(two_intervals(&deps)).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let fine = Collected::subscribe(&mut service.client().await, subscribe_to(Some(one))).await;
    let coarse = Collected::subscribe(&mut service.client().await, subscribe_to(Some(five))).await;
    let default = Collected::subscribe(&mut service.client().await, subscribe_to(None)).await;
    let trades = produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        pairs(),
        Duration::from_secs(11),
        Duration::from_millis(20),
        None,
        13,
    )
    .await;
    for (watcher, interval, name) in [
        (&fine, one, "1s"),
        (&coarse, five, "5s"),
        (&default, five, "default (5s)"),
    ] {
        let expected = reference_of(interval, &trades);
        assert!(
            watcher.wait_for(&expected, Duration::from_secs(20)).await,
            "{name}: not every final arrived: {:?}",
            check_exact(&watcher.finals(), &expected)
        );
        check_exact(&watcher.finals(), &expected).unwrap();
        let responses = watcher.responses();
        let candles: Vec<_> = responses.iter().filter_map(|r| r.candle.as_ref()).collect();
        assert!(
            candles
                .iter()
                .all(|c| c.interval == Some(candles_proto::duration(interval))),
            "{name}: a candle of another interval"
        );
        assert!(
            candles.iter().any(|c| !c.r#final),
            "{name}: live updates were asked for"
        );
        println!("{name}: {} finals, exact", expected.len());
    }
    let markets = service
        .client()
        .await
        .list_markets(ListMarketsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        markets.intervals,
        vec![candles_proto::duration(one), candles_proto::duration(five)]
    );
    assert_eq!(markets.interval, Some(candles_proto::duration(five)));
    assert_eq!(markets.markets.len(), pairs().len());
    println!("two intervals from one service; {:?}", t0.elapsed());
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_coarse_window_keeps_every_interval_exact() {
    let t0 = Instant::now();
    let deps = Deps::start(3);
    let config = two_intervals(&deps);
    let first = InProcess::start(config.clone()).await;
    wait_serving(first.addr, Duration::from_secs(15)).await;
    let producing = tokio::spawn(produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        pairs(),
        Duration::from_secs(14),
        Duration::from_millis(20),
        None,
        17,
    ));
    // Stop once at least one 5 s window is final, about 2.5 s into the next one.
    tokio::time::sleep(Duration::from_secs(6)).await;
    while !(2_000_000..3_000_000).contains(&Micros::now().0.rem_euclid(5_000_000)) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.stop().await;
    let second = InProcess::start(config).await;
    wait_serving(second.addr, Duration::from_secs(15)).await;
    let trades = producing.await.unwrap();
    for interval in [Interval::seconds(1), Interval::seconds(5)] {
        let req = SubscribeRequest {
            history: 100,
            ..subscribe_to(Some(interval))
        };
        let watcher = Collected::subscribe(&mut second.client().await, req).await;
        let expected = reference_of(interval, &trades);
        assert!(
            watcher.wait_for(&expected, Duration::from_secs(20)).await,
            "{interval}: not every final arrived: {:?}",
            check_exact(&watcher.finals(), &expected)
        );
        check_exact(&watcher.finals(), &expected).unwrap();
        println!(
            "{interval}: {} finals across the restart, exact",
            expected.len()
        );
    }
    println!("restart with two intervals; {:?}", t0.elapsed());
    second.stop().await;
}
