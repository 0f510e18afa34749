//! Verified candles through the whole stack (issue 15): three `exchange-sim` (each serving its
//! exchange's 1-minute candle endpoint, under its public REST limit, `--rest-limit`) → three
//! `candles-connector` (each verifying its exchange's candles, sharing the exchange's pace with
//! gap fill) → Kafka → candles-service building 1m → Redis → a gRPC client asking for verdicts.
//!
//! Binance's simulator loses 30% of its trades without an id gap (`--hide-ratio`: never sent,
//! ids contiguous, while its klines count them) until the end of the first whole minute `M1`
//! (`--hide-until`), then the fault is off. So:
//! - binance `M1` is a mismatch naming the fields (volume, trade count, ...), on the gRPC
//!   stream and on the connector's `/metrics`; binance `M2` (fault off again) matches;
//! - kraken and coinbase `M1` and `M2` match;
//! - no simulator saw a rate-limit violation, and no second had more REST requests than the
//!   exchange's burst allows (sampled every second from the simulators' `/metrics`).
//!
//! Then the real dashboard against the stack: `candles-tui --json` carries the mismatch naming
//! its fields, and on screen (tmux) the binance panel shows its tally and the mismatch.
//!
//! Wall-clock minutes: the test takes 2.5 to 4 minutes (it waits for `M1` to start, then two
//! whole minutes and the settling of `M2`).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use candles_core::{Exchange, Micros};
use candles_e2e::client::{Collector, Subscription};
use candles_e2e::stack::{Stack, StackConfig};
use candles_proto::v1;
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MINUTE_US: i64 = 60_000_000;
const PAIRS: [&str; 2] = ["BTC-USDT", "ETH-USDT"];

/// The verdict of `source` on `pair`'s minute starting at `start`, if one arrived.
fn verdict_of<'a>(
    verdicts: &'a [v1::Verification],
    pair: &str,
    source: &str,
    start: i64,
) -> Option<&'a v1::Verification> {
    verdicts.iter().rev().find(|v| {
        v.pair == pair
            && v.source == source
            && v.start
                .map(|t| candles_proto::micros("start", Some(&t)).unwrap().0)
                == Some(start)
    })
}

/// The most REST requests any simulator answered in one second, per simulator, from samples of
/// `sim_rest_requests_total` taken a second apart.
fn busiest_second(samples: &[BTreeMap<String, f64>]) -> BTreeMap<String, f64> {
    let mut most = BTreeMap::new();
    for pair in samples.windows(2) {
        for (key, after) in &pair[1] {
            let before = pair[0].get(key).copied().unwrap_or(0.0);
            let sim = key.split(' ').next().unwrap_or(key).to_string();
            let entry = most.entry(sim).or_insert(0.0f64);
            *entry = entry.max(after - before);
        }
    }
    most
}

/// Each simulator's requests summed over status codes: `process` → count.
fn requests_by_sim(stack: &Stack) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (key, v) in stack.counters_by_process(&["sim_rest_requests_total"]) {
        let sim = key.split(' ').next().unwrap_or(&key).to_string();
        *out.entry(format!("{sim} requests")).or_insert(0.0) += v;
    }
    out
}

#[test]
fn every_minute_is_verified_and_invisible_losses_are_mismatches_naming_the_fields() {
    let now = Micros::now().0;
    // The first whole minute starting at least 25 s from now (the stack starts meanwhile).
    let m1 = (now + 25_000_000).div_euclid(MINUTE_US) * MINUTE_US + MINUTE_US;
    let m2 = m1 + MINUTE_US;
    let mut config = StackConfig::new("verification");
    config.instances = 1;
    config.pairs = "btcusdt,ethusdt".into();
    config.rate = 20.0;
    config.max_trades = 0;
    config.trade_logs = false;
    config.intervals = Some("1s,5s,1m".into());
    config.sim_args = vec!["--rest-limit".into()];
    config.sim_args_of = vec![(
        Exchange::Binance,
        vec![
            "--hide-ratio".into(),
            "0.3".into(),
            "--hide-until".into(),
            Micros(m2).to_rfc3339(),
        ],
    )];
    let mut stack = Stack::start(config).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = Collector::start(
        rt.handle(),
        "verdicts",
        stack.grpc_urls(),
        Subscription {
            pairs: PAIRS.map(String::from).to_vec(),
            sources: vec!["composite".into()],
            history: 0,
            live_updates: false,
            interval: None,
            verifications: true,
        },
    );
    stack.start_feeds().unwrap();

    // Until every exchange's verdict on M2 arrived (or M2 ended 150 s ago), sampling the
    // simulators' REST counters every second.
    let deadline = Instant::now()
        + Duration::from_micros((m2 + MINUTE_US - Micros::now().0).max(0) as u64)
        + Duration::from_secs(150);
    let mut samples = Vec::new();
    let all_in = |verdicts: &[v1::Verification]| {
        PAIRS.iter().all(|pair| {
            Exchange::ALL
                .iter()
                .all(|e| verdict_of(verdicts, pair, e.as_str(), m2).is_some())
        })
    };
    while Instant::now() < deadline && !all_in(&client.received().verdicts) {
        samples.push(requests_by_sim(&stack));
        std::thread::sleep(Duration::from_secs(1));
    }
    let verdicts = client.received().verdicts;
    let metrics = stack.counters(&["connector_verifications_total"]);
    let summary = format!(
        "verdicts received: {}\nconnectors: {metrics:#?}\nrun dir: {}",
        verdicts.len(),
        stack.log_dir().display()
    );

    for pair in PAIRS {
        for exchange in Exchange::ALL {
            let source = exchange.as_str();
            for (minute, name) in [(m1, "M1"), (m2, "M2")] {
                let v = verdict_of(&verdicts, pair, source, minute)
                    .unwrap_or_else(|| panic!("no verdict on {pair} {source} {name}\n{summary}"));
                let faulty = exchange == Exchange::Binance && minute == m1;
                if faulty {
                    assert_eq!(
                        v.outcome,
                        v1::Outcome::Mismatch as i32,
                        "{pair} {source} {name} lost trades invisibly: {v:?}\n{summary}"
                    );
                    let fields: Vec<&str> = v.diffs.iter().map(|d| d.field.as_str()).collect();
                    assert!(
                        fields.contains(&"volume") && fields.contains(&"trades"),
                        "the mismatch names the fields that differ: {v:?}"
                    );
                    assert!(v.diffs.iter().all(|d| d.ours != d.theirs));
                } else {
                    assert_eq!(
                        v.outcome,
                        v1::Outcome::Match as i32,
                        "{pair} {source} {name}: {v:?}\n{summary}"
                    );
                }
                assert!(v.tally.is_some(), "a verdict carries its running tally");
            }
        }
    }
    let counted = |exchange: &str, outcome: &str| -> f64 {
        metrics
            .iter()
            .filter(|l| {
                l.contains(&format!("exchange=\"{exchange}\""))
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    for exchange in Exchange::ALL {
        assert!(
            counted(exchange.as_str(), "match") >= 2.0,
            "{exchange}: matches counted on /metrics\n{summary}"
        );
    }
    assert!(
        counted("binance", "mismatch") >= 2.0,
        "binance: mismatches counted on /metrics\n{summary}"
    );

    let violations = stack.counters_by_process(&["sim_rest_rate_limit_violations_total"]);
    assert!(
        violations.values().all(|v| *v == 0.0),
        "a connector asked while told to wait: {violations:?}"
    );
    // Each exchange's burst: Binance's limit is weight per minute (a second may hold many
    // cheap requests), so only Kraken (burst 3) and Coinbase (burst 15) are bounded per second.
    let busiest = busiest_second(&samples);
    for (sim, burst) in [
        ("exchange-sim-kraken", 3.0 + 1.0),
        ("exchange-sim-coinbase", 15.0 + 10.0),
    ] {
        let most = busiest.get(sim).copied().unwrap_or(0.0);
        assert!(
            most <= burst,
            "{sim}: {most} REST requests in one second (its limit allows {burst})"
        );
    }
    eprintln!("{summary}\nbusiest second per simulator: {busiest:?}");
    drop(client);
    the_dashboard_shows_the_verdicts(&stack, m1);
    stack.shutdown();
}

/// Whether a screen shows a verified tally and a mismatch naming a field (the first differing
/// one, in field order) with ours and theirs: `✓ 1/3 verified ✗ 12:04 close ours 1 theirs 2 +4`.
fn shows_mismatch(screen: &str) -> bool {
    const FIELDS: [&str; 6] = ["open", "high", "low", "close", "volume", "trades"];
    screen.lines().any(|line| {
        line.contains("verified")
            && line.contains('✗')
            && line.contains(" ours ")
            && line.contains(" theirs ")
            && FIELDS.iter().any(|f| line.contains(&format!(" {f} ours ")))
    })
}

/// The real `candles-tui` against the stack's service: `--json` carries binance's mismatch at
/// `m1` naming the fields, and the dashboard (tmux) shows the badge and the mismatch.
fn the_dashboard_shows_the_verdicts(stack: &Stack, m1: i64) {
    let tui = stack.bin_dir().join("candles-tui");
    let url = stack.grpc_urls()[0].clone();
    let log = stack.log_dir().join("tui.log");
    let args = [
        "--pairs", "btcusdt", "--source", "binance", "--server", &url,
    ];
    let mut child = Command::new(&tui)
        .env("CANDLES_NO_CONFIG", "true")
        .arg("--json")
        .args(args)
        .arg("--log-file")
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let minute = Micros(m1).to_rfc3339_short();
    let mismatch = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("candles-tui --json printed no mismatch of binance's first faulty minute");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["type"] == "verification" && v["outcome"] == "mismatch" && v["start"] == minute {
            break v;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let fields: Vec<&str> = mismatch["diffs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["field"].as_str())
        .collect();
    assert!(fields.contains(&"volume"), "{mismatch}");

    let socket = format!("candles-e2e-verify-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .expect("tmux must be installed: run scripts/install-test-deps.sh")
    };
    let command = format!(
        "CANDLES_NO_CONFIG=true {} {} --log-file {}",
        tui.display(),
        args.join(" "),
        log.display()
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        "tui",
        "-x",
        "100",
        "-y",
        "30",
        &command,
    ]);
    assert!(started.status.success(), "tmux new-session failed");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut screen = String::new();
    while Instant::now() < deadline {
        screen = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "tui"]).stdout).into();
        if shows_mismatch(&screen) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    tmux(&["kill-server"]);
    assert!(
        shows_mismatch(&screen),
        "the dashboard shows the tally and binance's mismatch naming a field and both values:\n{screen}"
    );
    eprintln!("{screen}");
}
