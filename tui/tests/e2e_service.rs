//! End to end against a real candles-service (in this process, on real Apache Kafka + Redis, trades
//! produced to Kafka as connectors do): the dashboard in a real terminal (tmux), and the
//! `--json` / `--plain` lines on a pipe.
#![allow(clippy::unwrap_used)]

mod common;

use candles_core::{Decimal, Pair};
use common::{BIN, Deps, Service, Tmux, lines_of, produce, wait_exit};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn pair(p: &str) -> Pair {
    Pair::parse(p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_live_candles_and_survives_a_server_restart() {
    let deps = Deps::start();
    let config = deps.config();
    let service = Service::start(config.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let addr = service.addr;
    let stop = CancellationToken::new();
    produce(
        deps.kafka.brokers(),
        deps.topic.clone(),
        vec![(pair("BTC-USDT"), "97000"), (pair("ETH-USDT"), "3400")],
        Duration::from_millis(100),
        stop.clone(),
    );
    let logs = tempfile::tempdir().unwrap();
    let tmux = Tmux::start(
        &[
            "--pairs",
            "btcusdt,ethusdt",
            "--server",
            &service.url(),
            "--history",
            "50",
        ],
        120,
        40,
        logs.path(),
    );

    let screen = tmux
        .wait_for(
            "both pairs, live, and prices",
            Duration::from_secs(45),
            |s| {
                s.contains("BTC-USDT")
                    && s.contains("ETH-USDT")
                    && s.contains("● live")
                    && s.contains("97000.")
                    && s.contains("3400.")
            },
        )
        .await;
    assert!(screen.contains("composite"), "{screen}");

    // Keys: select ETH, zoom into it (BTC's panel goes away), switch source.
    tmux.keys("2");
    tmux.keys("Enter");
    tmux.wait_for("ETH zoomed", Duration::from_secs(5), |s| {
        s.contains("[zoom]") && s.contains("2 ETH-USDT ·") && !s.contains("1 BTC-USDT ·")
    })
    .await;
    tmux.keys("s");
    tmux.wait_for("the binance source", Duration::from_secs(5), |s| {
        s.contains("ETH-USDT · binance")
    })
    .await;
    tmux.keys("S");
    tmux.keys("?");
    tmux.wait_for("the help overlay", Duration::from_secs(5), |s| {
        s.contains("help — ? or Esc to close")
    })
    .await;
    tmux.keys("Escape");

    // The server goes away: the dashboard says it is reconnecting, then comes back live.
    service.stop().await;
    tmux.wait_for("reconnecting", Duration::from_secs(15), |s| {
        s.contains("reconnecting")
    })
    .await;
    let service = Service::start(config, addr).await;
    tmux.wait_for(
        "live again after the restart",
        Duration::from_secs(40),
        |s| s.contains("● live") && !s.contains("reconnecting") && s.contains("3400."),
    )
    .await;

    tmux.keys("q");
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.alive() {
        assert!(
            Instant::now() < deadline,
            "q did not quit:\n{}",
            tmux.screen().unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_plain_lines_then_a_closed_pipe_exits_quietly() {
    let deps = Deps::start();
    let service = Service::start(deps.config(), "127.0.0.1:0".parse().unwrap()).await;
    let stop = CancellationToken::new();
    produce(
        deps.kafka.brokers(),
        deps.topic.clone(),
        vec![(pair("BTC-USDT"), "97000")],
        Duration::from_millis(100),
        stop.clone(),
    );
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("tui.log");

    // --json, as `candles-tui --json | head -3` would read it.
    let mut child = Command::new(BIN)
        .env("CANDLES_NO_CONFIG", "true")
        .args([
            "--json",
            "--pairs",
            "btc/usdt",
            "--server",
            &service.url(),
            "--log-file",
        ])
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(child.stdout.take().unwrap());
    let mut starts = Vec::new();
    for _ in 0..3 {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(40)) else {
            let _ = child.kill();
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            panic!(
                "no JSON line within 40 s; stderr: {stderr}; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        assert!(!line.contains('\x1b'), "escape codes in {line:?}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let obj = v.as_object().unwrap();
        for field in [
            "pair",
            "source",
            "interval",
            "start",
            "end",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "quote_volume",
            "trades",
            "vwap",
            "buy_volume",
            "sell_volume",
            "final",
        ] {
            assert!(obj.contains_key(field), "{field} missing in {line}");
        }
        assert_eq!(v["pair"], "BTC-USDT");
        assert_eq!(v["source"], "composite");
        assert_eq!(v["interval"], "1s");
        assert_eq!(v["final"], true);
        assert!(v["trades"].is_u64());
        for field in [
            "open",
            "high",
            "low",
            "close",
            "volume",
            "quote_volume",
            "buy_volume",
            "sell_volume",
        ] {
            let text = v[field]
                .as_str()
                .unwrap_or_else(|| panic!("{field} is not a string in {line}"));
            Decimal::from_str_exact(text).unwrap_or_else(|e| panic!("{field} {text:?}: {e}"));
        }
        let close = Decimal::from_str(v["close"].as_str().unwrap()).unwrap();
        assert!(
            close == Decimal::from_str("97000.5").unwrap()
                || close == Decimal::from_str("97000.25").unwrap(),
            "{line}"
        );
        let rfc = &time::format_description::well_known::Rfc3339;
        let start = time::OffsetDateTime::parse(v["start"].as_str().unwrap(), rfc).unwrap();
        let end = time::OffsetDateTime::parse(v["end"].as_str().unwrap(), rfc).unwrap();
        assert!(v["start"].as_str().unwrap().ends_with('Z'));
        assert_eq!(end - start, time::Duration::seconds(1));
        starts.push(start);
    }
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "each candle once, in order: {starts:?}"
    );
    // The reader goes away (like `head -3`): the next write fails and the program exits 0.
    drop(rx);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.trim().is_empty(),
        "a closed pipe is quiet, but stderr said: {stderr}"
    );

    // --plain: human-readable lines, no escape codes.
    let mut child = Command::new(BIN)
        .env("CANDLES_NO_CONFIG", "true")
        .args([
            "--plain",
            "--pairs",
            "BTC_USDT",
            "--history",
            "3",
            "--server",
            &service.url(),
            "--log-file",
        ])
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines_of(child.stdout.take().unwrap());
    for _ in 0..2 {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a plain line");
        assert!(!line.contains('\x1b'), "escape codes in {line:?}");
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 16, "{line}");
        assert!(
            time::OffsetDateTime::parse(words[0], &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{line}"
        );
        assert_eq!(&words[1..4], ["BTC-USDT", "composite", "1s"], "{line}");
        assert_eq!(
            [
                words[4], words[6], words[8], words[10], words[12], words[14]
            ],
            ["O", "H", "L", "C", "V", "n"],
            "{line}"
        );
        assert!(words[11].starts_with("97000."), "{line}");
    }
    drop(rx);
    assert!(wait_exit(&mut child, Duration::from_secs(15)).success());

    // A malformed pair is refused before anything runs, naming the input.
    let out = Command::new(BIN)
        .env("CANDLES_NO_CONFIG", "true")
        .args(["--plain", "--pairs", "btc", "--server", &service.url()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"btc\"") && stderr.contains("BTC-USDT"),
        "{stderr}"
    );

    stop.cancel();
    service.stop().await;
}

/// The value after `name ` in a readout line (`O 97000.50  H ...` → `97000.50` for `O`).
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let at = line
        .find(&format!("{name} "))
        .unwrap_or_else(|| panic!("{name} in {line}"));
    line[at + name.len() + 1..]
        .split_whitespace()
        .next()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_reads_out_the_candle_the_server_sent() {
    let deps = Deps::start();
    let service = Service::start(deps.config(), "127.0.0.1:0".parse().unwrap()).await;
    let stop = CancellationToken::new();
    produce(
        deps.kafka.brokers(),
        deps.topic.clone(),
        vec![(pair("BTC-USDT"), "97000")],
        Duration::from_millis(100),
        stop.clone(),
    );
    let logs = tempfile::tempdir().unwrap();
    let url = service.url();
    let tmux = Tmux::start(
        &["--pairs", "btcusdt", "--server", &url],
        120,
        40,
        logs.path(),
    );
    tmux.wait_for("live BTC candles", Duration::from_secs(45), |s| {
        s.contains("● live") && s.contains("97000.")
    })
    .await;
    // At least five one-second candles, so three left of the newest is a final one.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for key in ["i", "Left", "h", "Left"] {
        tmux.keys(key);
    }
    let screen = tmux
        .wait_for(
            "the readout of a final candle",
            Duration::from_secs(5),
            |s| s.contains("◆ ") && s.contains("final") && s.contains("VWAP"),
        )
        .await;
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines.iter().position(|l| l.contains("◆ ")).unwrap();
    let start = field(lines[at], "◆");
    let (ohlc, volumes, rest) = (lines[at + 1], lines[at + 2], lines[at + 3]);
    tmux.keys("q");

    // The same window as the server sends it to --json.
    let mut child = Command::new(BIN)
        .env("CANDLES_NO_CONFIG", "true")
        .args([
            "--json",
            "--pairs",
            "btcusdt",
            "--server",
            &url,
            "--log-file",
        ])
        .arg(logs.path().join("json.log"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(child.stdout.take().unwrap());
    let json = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no --json line for {start}"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["start"] == start {
            break v;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let dec = |s: &str| Decimal::from_str(s).unwrap();
    for (name, key) in [("O", "open"), ("H", "high"), ("L", "low"), ("C", "close")] {
        assert_eq!(
            dec(field(ohlc, name)),
            dec(json[key].as_str().unwrap()),
            "{key}: {ohlc} vs {json}"
        );
    }
    for (name, key) in [
        ("V", "volume"),
        ("buy", "buy_volume"),
        ("sell", "sell_volume"),
    ] {
        assert_eq!(
            dec(field(volumes, name)),
            dec(json[key].as_str().unwrap()),
            "{key}: {volumes} vs {json}"
        );
    }
    assert_eq!(
        field(rest, "trades"),
        json["trades"].to_string(),
        "{rest} vs {json}"
    );
    stop.cancel();
    service.stop().await;
}
