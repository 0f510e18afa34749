//! Real child processes: `kill -9` of the instance that owns pairs mid-window loses nothing and
//! duplicates nothing; SIGTERM exits 0 within a few seconds.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use candles_core::Micros;
use common::*;
use std::time::{Duration, Instant};

/// Pair i goes to partition 2i, so with range assignment over 6 partitions one instance owns two
/// pairs and the other one.
fn partition_of(i: usize) -> i32 {
    2 * i as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_owner_mid_window_loses_and_duplicates_nothing() {
    let t0 = Instant::now();
    let deps = Deps::start(6);
    let dir = tempfile::tempdir().unwrap();
    let mut config = deps.config();
    config.session_timeout = Duration::from_secs(3);
    let a = Child::spawn(&config, "a", dir.path());
    let b = Child::spawn(&config, "b", dir.path());
    let mut children = vec![a, b];
    for c in &children {
        wait_serving(c.addr, Duration::from_secs(15)).await;
    }
    let pairs = pairs();
    let mut clients = Vec::new();
    for c in &children {
        clients.push(
            Collected::subscribe(
                &mut connect(c.addr).await,
                request(&pairs, all_sources(), 0, false),
            )
            .await,
        );
    }
    let producing = tokio::spawn(produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        pairs.clone(),
        Duration::from_secs(9),
        Duration::from_millis(15),
        Some(partition_of),
        7,
    ));

    // Wait for the group to settle and candles to flow.
    let deadline = Instant::now() + Duration::from_secs(20);
    let victim = loop {
        let owners: Vec<Option<Vec<i32>>> = children.iter().map(|c| c.assigned()).collect();
        let settled = owners
            .iter()
            .all(|o| o.as_ref().is_some_and(|p| !p.is_empty()));
        if settled && clients.iter().all(|c| !c.finals().is_empty()) {
            break owners
                .iter()
                .position(|o| o.as_ref().unwrap().contains(&0))
                .unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "group did not settle: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Mid-window: 400-600 ms into a 1 s window.
    loop {
        let ms = Micros::now().0 / 1000 % 1000;
        if (400..600).contains(&ms) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed_at = Instant::now();
    children[victim].child.kill().unwrap();
    children[victim].child.wait().unwrap();
    println!(
        "killed instance {victim} (owner of partition 0) at {:?}",
        t0.elapsed()
    );
    let survivor = 1 - victim;

    let trades = producing.await.unwrap();
    let expected = reference(&trades);
    let on_survivor = &clients[survivor];
    let complete = on_survivor
        .wait_for(&expected, Duration::from_secs(30))
        .await;
    assert!(
        complete,
        "survivor's client missing candles: {:?}",
        check_exact(&on_survivor.finals(), &expected)
    );
    check_exact(&on_survivor.finals(), &expected).unwrap();
    println!(
        "{} trades → {} candles, each exactly once on the survivor; recovered {:?} after the kill (total {:?})",
        trades.len(),
        expected.len(),
        killed_at.elapsed(),
        t0.elapsed()
    );

    // SIGTERM: exit 0 within a few seconds.
    let pid = children[survivor].child.id();
    let term = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(s) = children[survivor].child.try_wait().unwrap() {
            break s;
        }
        assert!(
            term.elapsed() < Duration::from_secs(8),
            "no exit within 8s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
    println!("SIGTERM → exit 0 in {:?}", term.elapsed());
}
