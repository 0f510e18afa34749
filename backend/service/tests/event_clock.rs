//! `--clock event`: a recorded hour replayed at full speed gives the same candles as the
//! reference engine, finalized by trade time, not by the wall clock.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use candles_core::time::Duration as CoreDuration;
use candles_core::{ClockMode, Engine, EngineConfig, Micros};
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_at_full_speed_gives_the_reference_candles() {
    let t0 = Instant::now();
    let deps = Deps::start(1);
    let mut config = deps.config();
    config.engine.clock = ClockMode::Event;
    let service = InProcess::start(config).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let pairs = pairs();
    let watcher = Collected::subscribe(
        &mut service.client().await,
        request(&pairs, all_sources(), 0, false),
    )
    .await;
    // An hour ago: 30 s of trades every 50 ms, produced as fast as possible.
    let start = Micros::now().0 - 3_600_000_000;
    let mut gen_ = TradeGen::new(5);
    let trades: Vec<_> = (0..600)
        .map(|i| gen_.random_trade(&pairs, Micros(start + i * 50_000)))
        .collect();
    let producer = producer(&deps.kafka().brokers());
    for t in &trades {
        produce(&producer, &deps.topic, t, None).await;
    }
    // What an event-time engine finalizes from these trades (the last windows stay open).
    let mut engine = Engine::new(EngineConfig {
        interval: INTERVAL,
        grace: CoreDuration::from_millis(GRACE_MS),
        clock: ClockMode::Event,
    });
    let mut expected = Vec::new();
    for t in &trades {
        engine.apply(t);
        engine.advance(Micros(0), &mut expected);
    }
    assert!(expected.len() >= 28 * 12, "{}", expected.len());
    assert!(
        watcher.wait_for(&expected, Duration::from_secs(20)).await,
        "{:?}",
        check_exact(&watcher.finals(), &expected)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let finals = watcher.finals();
    check_exact(&finals, &expected).unwrap();
    assert_eq!(
        finals.len(),
        expected.len(),
        "nothing beyond the watermark is finalized"
    );
    println!(
        "{} replayed trades → {} candles, exact, in {:?}",
        trades.len(),
        expected.len(),
        t0.elapsed()
    );
    service.stop().await;
}
