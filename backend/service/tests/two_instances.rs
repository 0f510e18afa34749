//! Two instances in one consumer group: clients on both receive exactly the same final
//! candles, equal to an independent reference computation.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_serve_identical_exact_candles() {
    let t0 = Instant::now();
    let deps = Deps::start(6);
    let a = InProcess::start(deps.config()).await;
    let b = InProcess::start(deps.config()).await;
    wait_serving(a.addr, Duration::from_secs(15)).await;
    wait_serving(b.addr, Duration::from_secs(15)).await;
    let pairs = pairs();
    let req = || request(&pairs, all_sources(), 0, false);
    let on_a = Collected::subscribe(&mut a.client().await, req()).await;
    let on_b = Collected::subscribe(&mut b.client().await, req()).await;

    let trades = produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        pairs.clone(),
        Duration::from_secs(4),
        Duration::from_millis(15),
        None,
        42,
    )
    .await;
    let expected = reference(&trades);
    assert!(
        expected.len() >= 4 * 12,
        "{} expected candles",
        expected.len()
    );
    assert!(
        on_a.wait_for(&expected, Duration::from_secs(30)).await,
        "instance A's client did not get every candle: {:?}",
        check_exact(&on_a.finals(), &expected)
    );
    assert!(
        on_b.wait_for(&expected, Duration::from_secs(5)).await,
        "instance B's client did not get every candle: {:?}",
        check_exact(&on_b.finals(), &expected)
    );
    check_exact(&on_a.finals(), &expected).unwrap();
    check_exact(&on_b.finals(), &expected).unwrap();
    let last = expected.iter().map(|c| c.start.0).max().unwrap();
    let upto = |c: &Collected| on_or_before(c.finals(), last);
    assert_eq!(
        upto(&on_a),
        upto(&on_b),
        "both instances' clients saw the same finals"
    );
    println!(
        "{} trades → {} candles, checked on both instances after {:?}",
        trades.len(),
        expected.len(),
        t0.elapsed()
    );
    let (sa, sb) = tokio::join!(a.stop(), b.stop());
    println!("shutdown took {sa:?} and {sb:?}");
}

fn on_or_before(
    mut finals: Vec<candles_proto::v1::Candle>,
    last: i64,
) -> Vec<candles_proto::v1::Candle> {
    finals.retain(|c| start_of(c) <= last);
    finals.sort_by_key(id_of);
    finals
}

/// A second instance joins mid-stream: the first loses partitions (with open windows) in the
/// rebalance; a client on the first instance still gets every candle exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_out_mid_window_loses_and_duplicates_nothing() {
    let t0 = Instant::now();
    let deps = Deps::start(6);
    let a = InProcess::start(deps.config()).await;
    wait_serving(a.addr, Duration::from_secs(15)).await;
    let pairs = pairs();
    let on_a = Collected::subscribe(
        &mut a.client().await,
        request(&pairs, all_sources(), 0, false),
    )
    .await;
    let producing = tokio::spawn(produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        pairs.clone(),
        Duration::from_secs(9),
        Duration::from_millis(15),
        None,
        77,
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while on_a.finals().len() < 24 {
        assert!(Instant::now() < deadline, "A published nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = InProcess::start(deps.config()).await;
    let joined = t0.elapsed();
    let on_b = Collected::subscribe(
        &mut b.client().await,
        request(&pairs, all_sources(), 0, false),
    )
    .await;
    let trades = producing.await.unwrap();
    let expected = reference(&trades);
    assert!(
        on_a.wait_for(&expected, Duration::from_secs(25)).await,
        "{:?}",
        check_exact(&on_a.finals(), &expected)
    );
    check_exact(&on_a.finals(), &expected).unwrap();
    // B's client joined late: what it got is exact too.
    let last = expected.iter().map(|c| c.start.0).max().unwrap();
    let b_span: Vec<_> = expected
        .iter()
        .filter(|c| on_b.finals().iter().any(|f| start_of(f) <= c.start.0))
        .copied()
        .collect();
    check_exact(&on_or_before(on_b.finals(), last), &b_span).unwrap();
    println!(
        "B joined at {joined:?}; {} trades → {} candles exact on A ({:?})",
        trades.len(),
        expected.len(),
        t0.elapsed()
    );
    let _ = tokio::join!(a.stop(), b.stop());
}
