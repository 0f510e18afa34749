//! Verdicts reach the gRPC clients that ask for them, from the connectors' reports in a real
//! Redis (written with `candles_reports::Reporter`, exactly as a connector writes them): first
//! the stored ones (the latest mismatch, then the latest verdict, per pair and exchange), then
//! each newly published one, once; nothing for a client that did not ask; a forged verdict on
//! the channel (unserved pair, composite, garbage) never reaches a client.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use candles_core::verify::MINUTE;
use candles_core::{Micros, Pair};
use candles_proto::v1::{self, SubscribeRequest};
use candles_reports::Reporter;
use common::*;
use std::time::{Duration, Instant};

const T: i64 = 1_795_675_200_000_000;

fn verdict(pair: Pair, source: &str, minute: i64, outcome: v1::Outcome) -> v1::Verification {
    let start = T + minute * 60_000_000;
    let diffs = if outcome == v1::Outcome::Mismatch {
        vec![v1::FieldDiff {
            field: "volume".into(),
            ours: "1.5".into(),
            theirs: "1.75".into(),
        }]
    } else {
        Vec::new()
    };
    v1::Verification {
        pair: pair.to_string(),
        source: source.into(),
        interval: Some(candles_proto::duration(MINUTE)),
        start: Some(candles_proto::timestamp(Micros(start))),
        outcome: outcome as i32,
        diffs,
        tally: Some(v1::VerificationTally {
            matched: minute as u64,
            ..Default::default()
        }),
        checked_at: Some(candles_proto::timestamp(Micros(start + 90_000_000))),
        ..Default::default()
    }
}

fn verifications(c: &Collected) -> Vec<v1::Verification> {
    c.responses()
        .into_iter()
        .filter_map(|r| r.verification)
        .collect()
}

async fn wait_verifications(c: &Collected, n: usize) -> Vec<v1::Verification> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while verifications(c).len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    verifications(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_reach_the_clients_that_ask_stored_first_then_live_once() {
    let deps = Deps::start(3);
    let (btc, eth) = (pairs()[0], pairs()[1]);
    let mut reporter = Reporter::connect(&deps.redis.url(), None).await.unwrap();
    // Stored before anyone subscribes: a kraken mismatch at minute 1, then a match at minute 2.
    let mismatch = verdict(btc, "kraken", 1, v1::Outcome::Mismatch);
    let later_match = verdict(btc, "kraken", 2, v1::Outcome::Match);
    reporter.verification(&mismatch).await.unwrap();
    reporter.verification(&later_match).await.unwrap();
    let service = InProcess::start(deps.config()).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;

    let asks = Collected::subscribe(
        &mut service.client().await,
        SubscribeRequest {
            verifications: true,
            ..request(&[btc], vec!["composite".into()], 0, false)
        },
    )
    .await;
    let ignores = Collected::subscribe(
        &mut service.client().await,
        request(&[btc], all_sources(), 0, false),
    )
    .await;
    let other_pair = Collected::subscribe(
        &mut service.client().await,
        SubscribeRequest {
            verifications: true,
            ..request(&[eth], vec!["composite".into()], 0, false)
        },
    )
    .await;
    assert_eq!(
        wait_verifications(&asks, 2).await,
        vec![mismatch.clone(), later_match.clone()],
        "stored: the latest mismatch, then the latest verdict"
    );

    // Published live: a forged one first (never relayed), then real ones.
    let mut conn = redis::Client::open(deps.redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let channel = candles_reports::Keys::new("").verifications();
    let forged = [
        verdict(
            Pair::parse("DOGE-USD").unwrap(),
            "kraken",
            3,
            v1::Outcome::Match,
        ),
        verdict(btc, "composite", 3, v1::Outcome::Match),
    ];
    for f in &forged {
        let _: () = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(prost::Message::encode_to_vec(f))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let _: () = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(b"\xff\xfe not a verdict".as_slice())
        .query_async(&mut conn)
        .await
        .unwrap();
    let binance = verdict(btc, "binance", 3, v1::Outcome::Match);
    reporter.verification(&binance).await.unwrap();
    // Published again (as a connector restarted at the same minute would): sent once.
    reporter.verification(&binance).await.unwrap();
    let eth_verdict = verdict(eth, "coinbase", 3, v1::Outcome::Unavailable);
    reporter.verification(&eth_verdict).await.unwrap();

    let got = wait_verifications(&asks, 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        verifications(&asks),
        vec![mismatch, later_match, binance],
        "live verdicts of the client's pair, each once, no forged one: {got:?}"
    );
    assert_eq!(wait_verifications(&other_pair, 1).await, vec![eth_verdict]);
    assert!(
        verifications(&ignores).is_empty(),
        "a client that did not ask got verdicts"
    );
    assert!(
        ignores.ended.lock().unwrap().is_none() && asks.ended.lock().unwrap().is_none(),
        "streams stay open"
    );
    service.shutdown.cancel();
}
