//! End to end, verdicts from a real candles-service (in this process, on real Apache Kafka +
//! Redis): the verdicts are written to Redis with `candles_reports::Reporter`, exactly as a
//! connector reports them, and the service relays them. The real binary shows them: `--json`
//! objects and `--plain` mismatch lines on a pipe, and in a real terminal (tmux) each panel's
//! badge (`✓ 58/58 verified`) and the latest mismatch in red, naming the field and both values.
#![allow(clippy::unwrap_used)]

mod common;

use candles_core::verify::MINUTE;
use candles_core::{Micros, Pair};
use candles_proto::v1;
use candles_reports::Reporter;
use common::{BIN, Deps, Service, Tmux, lines_of};
use std::process::{Command, Stdio};
use std::time::Duration;

/// 2026-11-26T10:00:00Z.
const T: i64 = 1_795_687_200_000_000;

fn btc() -> Pair {
    Pair::parse("BTC-USDT").unwrap()
}

/// A verdict on `exchange`'s BTC-USDT candle of minute `m` after 10:00, with `matched` matches
/// counted (and one mismatch when it is one).
fn verdict(exchange: &str, m: i64, outcome: v1::Outcome, matched: u64) -> v1::Verification {
    let start = T + m * 60_000_000;
    let mismatch = outcome == v1::Outcome::Mismatch;
    let diffs = [("close", "97000.5", "97000.25"), ("volume", "1.5", "1.75")]
        .into_iter()
        .filter(|_| mismatch)
        .map(|(field, ours, theirs)| v1::FieldDiff {
            field: field.into(),
            ours: ours.into(),
            theirs: theirs.into(),
        })
        .collect();
    v1::Verification {
        pair: btc().to_string(),
        source: exchange.into(),
        interval: Some(candles_proto::duration(MINUTE)),
        start: Some(candles_proto::timestamp(Micros(start))),
        outcome: outcome as i32,
        diffs,
        reason: String::new(),
        tally: Some(v1::VerificationTally {
            matched,
            mismatched: u64::from(mismatch),
            ..Default::default()
        }),
        checked_at: Some(candles_proto::timestamp(Micros(start + 90_000_000))),
    }
}

/// The first line of `screen` holding `text`.
fn line_with<'a>(screen: &'a str, text: &str) -> &'a str {
    screen.lines().find(|l| l.contains(text)).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_reach_json_plain_and_the_dashboard_badge() {
    let deps = Deps::start();
    let service = Service::start(deps.config(), "127.0.0.1:0".parse().unwrap()).await;
    let mut reporter = Reporter::connect(&deps.redis.url(), None).await.unwrap();
    // Stored before any client: binance all matched; kraken's latest is a mismatch at 10:31.
    reporter
        .verification(&verdict("binance", 30, v1::Outcome::Match, 58))
        .await
        .unwrap();
    reporter
        .verification(&verdict("kraken", 31, v1::Outcome::Mismatch, 57))
        .await
        .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let url = service.url();
    let line_mode = |format: &str| {
        let mut child = Command::new(BIN)
            .env("CANDLES_NO_CONFIG", "true")
            .args([format, "--pairs", "btcusdt", "--server", &url, "--log-file"])
            .arg(logs.path().join(format!("tui{format}.log")))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let rx = lines_of(child.stdout.take().unwrap());
        (child, rx)
    };

    // --json: one object per verdict, the mismatch naming every field.
    let (mut child, rx) = line_mode("--json");
    let mut verdicts = Vec::new();
    while verdicts.len() < 2 {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("only {verdicts:?} within 30 s"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["type"] == "verification" {
            verdicts.push(v);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let kraken = verdicts.iter().find(|v| v["source"] == "kraken").unwrap();
    assert_eq!(kraken["outcome"], "mismatch");
    assert_eq!(kraken["start"], "2026-11-26T10:31:00Z");
    assert_eq!(kraken["diffs"][0]["field"], "close");
    assert_eq!(kraken["diffs"][0]["ours"], "97000.5");
    assert_eq!(kraken["diffs"][0]["theirs"], "97000.25");
    assert_eq!(kraken["diffs"][1]["field"], "volume");
    let binance = verdicts.iter().find(|v| v["source"] == "binance").unwrap();
    assert_eq!(
        (
            binance["outcome"].as_str(),
            binance["tally"]["matched"].as_u64()
        ),
        (Some("match"), Some(58))
    );

    // --plain: a line for the mismatch only.
    let (mut child, rx) = line_mode("--plain");
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        line,
        "2026-11-26T10:31:00Z BTC-USDT kraken 1m mismatch close ours 97000.5 theirs 97000.25, \
         volume ours 1.5 theirs 1.75 (verified 57/58)"
    );

    // The dashboard: the composite sums up each exchange and names the mismatch.
    let tmux = Tmux::start(
        &["--pairs", "btcusdt", "--server", &url, "--history", "5"],
        80,
        24,
        logs.path(),
    );
    tmux.wait_for(
        "each exchange's tally and kraken's mismatch",
        Duration::from_secs(30),
        |s| {
            s.contains("binance ✓58/58")
                && s.contains("kraken ✓57/58")
                && s.contains("✗ kraken 10:31 close")
        },
    )
    .await;
    // Kraken's own: its tally and the mismatch, in red, naming the field and both values.
    tmux.keys("s");
    tmux.keys("s");
    let screen = tmux
        .wait_for("kraken's badge", Duration::from_secs(10), |s| {
            s.contains("BTC-USDT · kraken") && s.contains("✗ 10:31 close ours 97000.5 theirs")
        })
        .await;
    assert!(
        line_with(&screen, "✗ 10:31").contains("✓ 57/58 verified"),
        "{screen}"
    );
    let styled = tmux.styled_screen().unwrap();
    let badge = line_with(&styled, "✗ 10:31");
    let before = &badge[..badge.find("✗ 10:31").unwrap()];
    let colour = &before[before.rfind("\x1b[").unwrap()..];
    assert!(
        colour.starts_with("\x1b[31m") || colour.contains(";31m") || colour.contains("38;5;1m"),
        "the mismatch is not red: {badge:?}"
    );
    // A new verdict arrives live: binance's badge counts it, green.
    tmux.keys("S");
    reporter
        .verification(&verdict("binance", 32, v1::Outcome::Match, 59))
        .await
        .unwrap();
    tmux.wait_for("binance's badge, live", Duration::from_secs(10), |s| {
        s.contains("BTC-USDT · binance") && s.contains("✓ 59/59 verified")
    })
    .await;
    tmux.keys("q");
    service.stop().await;
}
