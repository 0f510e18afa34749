//! End to end `--embedded`: the real binary runs the real connectors against three exchange
//! simulators (Binance, Kraken, Coinbase protocols, synthetic trades) with no Kafka, Redis or
//! gRPC, in `--json` mode on a pipe and as the dashboard in a terminal (tmux).
#![allow(clippy::unwrap_used)]

mod common;

use candles_core::{Decimal, Exchange, Pair};
use common::{BIN, Tmux, url_flags};
use exchange_sim::{SimConfig, SimHandle, TradeSource};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

async fn sims() -> Vec<SimHandle> {
    let mut out = Vec::new();
    for (i, exchange) in Exchange::ALL.into_iter().enumerate() {
        let config = SimConfig {
            exchange,
            pairs: Pair::parse_list("BTC-USDT,ETH-USDT").unwrap(),
            source: TradeSource::Synthetic { rate: 40.0 },
            seed: 10 + i as u64,
            ..SimConfig::default()
        };
        out.push(exchange_sim::start(config).await.unwrap());
    }
    out
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_json_from_three_simulated_exchanges() {
    let sims = sims().await;
    let logs = tempfile::tempdir().unwrap();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .env("CANDLES_NO_CONFIG", "true")
        .args(url_flags(&sims))
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args([
            "--json",
            // Only candles here (verdicts are e2e_embedded_verify.rs's).
            "--verifications",
            "false",
            "--pairs",
            "btcusdt,ethusdt",
            "--source",
            "composite,kraken",
            "--interval",
            "1s",
            "--grace",
            "300ms",
        ])
        .arg("--log-file")
        .arg(logs.path().join("tui.log"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 4 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("only {seen:?} within 30 s"));
        assert!(!line.contains('\x1b'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["interval"], "1s");
        assert_eq!(v["final"], true);
        let volume = Decimal::from_str_exact(v["volume"].as_str().unwrap()).unwrap();
        let buy = Decimal::from_str_exact(v["buy_volume"].as_str().unwrap()).unwrap();
        let sell = Decimal::from_str_exact(v["sell_volume"].as_str().unwrap()).unwrap();
        assert!(buy + sell <= volume, "{line}");
        let source = v["source"].as_str().unwrap().to_string();
        assert!(source == "composite" || source == "kraken", "{line}");
        seen.insert((v["pair"].as_str().unwrap().to_string(), source));
    }
    // Prometheus metrics while it runs: candles-tui's and the connectors'.
    let metrics = http_get(metrics_port, "/metrics");
    assert!(metrics.contains("connector_"), "{metrics}");
    drop(rx);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after the pipe closed");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    for sim in sims {
        sim.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_rejects_a_pair_the_exchange_does_not_list() {
    let sims = sims().await;
    let out = tokio::task::spawn_blocking({
        let args = url_flags(&sims);
        move || {
            Command::new(BIN)
                .env("CANDLES_NO_CONFIG", "true")
                .args(args)
                .args([
                    "--plain",
                    "--pairs",
                    "btcusdt,dogeusdt",
                    "--exchanges",
                    "binance",
                    "--log-file",
                    "/dev/null/none.log",
                ])
                .output()
                .unwrap()
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The log directory is unusable on purpose: the error says which one.
    assert!(!out.status.success());
    assert!(stderr.contains("/dev/null"), "{stderr}");

    let logs = tempfile::tempdir().unwrap();
    let args = url_flags(&sims);
    let log = logs.path().join("tui.log");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .env("CANDLES_NO_CONFIG", "true")
            .args(args)
            .args([
                "--plain",
                "--pairs",
                "btcusdt,dogeusdt",
                "--exchanges",
                "binance",
                "--log-file",
            ])
            .arg(log)
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("DOGE-USDT") && stderr.contains("binance"),
        "{stderr}"
    );
    for sim in sims {
        sim.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_dashboard_in_a_terminal() {
    let sims = sims().await;
    let logs = tempfile::tempdir().unwrap();
    let mut args = url_flags(&sims);
    args.extend(
        [
            "--pairs",
            "btcusdt,ethusdt",
            "--interval",
            "1s",
            "--grace",
            "300ms",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tmux = Tmux::start(&args, 120, 40, logs.path());
    let screen = tmux
        .wait_for(
            "every exchange live and both charts",
            Duration::from_secs(30),
            |s| {
                s.contains("binance ● live")
                    && s.contains("kraken ● live")
                    && s.contains("coinbase ● live")
                    && s.contains("BTC-USDT · composite · 1s")
                    && s.contains("ETH-USDT · composite · 1s")
                    && s.contains("forming")
            },
        )
        .await;
    assert!(screen.contains("embedded"), "{screen}");
    tmux.keys("C-c");
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.alive() {
        assert!(Instant::now() < deadline, "Ctrl-C did not quit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for sim in sims {
        sim.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_embedded_dashboard_at_80x24_says_why_and_where_the_log_is() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let logs = tempfile::tempdir().unwrap();
    let ws = format!("kraken=ws://127.0.0.1:{port}");
    let rest = format!("kraken=http://127.0.0.1:{port}");
    let args = [
        "--embedded",
        "--exchanges",
        "kraken",
        "--ws-url",
        &ws,
        "--rest-url",
        &rest,
    ];
    let tmux = Tmux::start(&args, 80, 24, logs.path());
    let screen = tmux
        .wait_for(
            "the reason and the log file",
            Duration::from_secs(20),
            |s| s.contains("unreachable") && s.contains("log:") && s.contains("tui.log"),
        )
        .await;
    assert!(
        screen.contains(&format!("kraken: 127.0.0.1:{port} unreachable")),
        "{screen}"
    );
    assert!(
        screen.contains("SIMULATED") && screen.contains("composite"),
        "{screen}"
    );
    tmux.keys("q");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_overlays_and_venue_pane_at_80x24_against_three_simulators() {
    let sims = sims().await;
    let logs = tempfile::tempdir().unwrap();
    let mut args = url_flags(&sims);
    args.extend(["--pairs", "btcusdt", "--interval", "1s", "--grace", "300ms"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tmux = Tmux::start(&args, 80, 24, logs.path());
    tmux.wait_for("candles", Duration::from_secs(30), |s| {
        s.contains("BTC-USDT · composite · 1s") && s.contains("forming")
    })
    .await;
    for key in ["v", "m", "[", "d"] {
        tmux.keys(key);
    }
    let screen = tmux
        .wait_for(
            "the overlays' legend and a spread per exchange",
            Duration::from_secs(30),
            |s| {
                s.contains("VWAP")
                    && s.contains("MA10")
                    && s.contains("widest:")
                    && ["binance", "kraken", "coinbase"].iter().all(|e| {
                        s.lines()
                            .any(|l| l.contains(&format!("│{e} ")) && l.contains("bp"))
                    })
            },
        )
        .await;
    assert!(!screen.contains("too small"), "{screen}");
    tmux.keys("q");
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.alive() {
        assert!(Instant::now() < deadline, "q did not quit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for sim in sims {
        sim.stop().await;
    }
}

/// The seconds of the inspect readout's window (`◆ 2026-…T06:40:05Z – 2026-…T06:40:10Z`), and
/// whether that candle is final.
fn inspected_window(screen: &str) -> Option<(i64, bool)> {
    let line = screen.lines().find(|l| l.contains('◆'))?;
    let secs = |t: &str| -> Option<i64> {
        let hms = t.split('T').nth(1)?.trim_end_matches('Z');
        let parts: Vec<i64> = hms
            .split(':')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        Some(parts[0] * 3_600 + parts[1] * 60 + parts[2])
    };
    let mut times = line
        .split_whitespace()
        .filter(|w| w.contains('T') && w.ends_with('Z'));
    let (from, to) = (secs(times.next()?)?, secs(times.next()?)?);
    Some(((to - from).rem_euclid(86_400), line.contains("final")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_next_interval_shows_its_candles_built_since_start() {
    let sims = sims().await;
    let logs = tempfile::tempdir().unwrap();
    let mut args = url_flags(&sims);
    args.extend(
        [
            "--pairs",
            "btcusdt",
            "--intervals",
            "1s,5s",
            "--interval",
            "1s",
            "--grace",
            "300ms",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tmux = Tmux::start(&args, 120, 40, logs.path());
    tmux.wait_for("1s candles", Duration::from_secs(30), |s| {
        s.contains("BTC-USDT · composite · 1s") && s.contains("forming")
    })
    .await;
    // Long enough for a whole 5s window (and its grace) to be built and kept.
    tokio::time::sleep(Duration::from_secs(11)).await;
    tmux.keys(">");
    let screen = tmux
        .wait_for(
            "the 5s chart, refilled from the finals kept",
            Duration::from_secs(10),
            |s| s.contains("BTC-USDT · composite · 5s") && s.contains("final candles built since"),
        )
        .await;
    assert!(!screen.contains("· 1s"), "{screen}");
    // The newest candle, then the one before it: a final 5s candle from what was kept.
    tmux.keys("i");
    tmux.keys("h");
    let screen = tmux
        .wait_for(
            "a final 5s candle under the cursor",
            Duration::from_secs(10),
            |s| inspected_window(s) == Some((5, true)),
        )
        .await;
    assert!(screen.contains("composite"), "{screen}");
    tmux.keys("q");
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.alive() {
        assert!(Instant::now() < deadline, "q did not quit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for sim in sims {
        sim.stop().await;
    }
}

/// A pair one exchange does not list is served by the others: ETH-USDT from binance (kraken's
/// simulator does not list it), BTC-USDT from both; kraken's log names the pair it does not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_serves_a_pair_from_the_exchanges_that_list_it() {
    let mut sims = Vec::new();
    for (i, exchange) in [Exchange::Binance, Exchange::Kraken]
        .into_iter()
        .enumerate()
    {
        let config = SimConfig {
            exchange,
            pairs: Pair::parse_list("BTC-USDT,ETH-USDT").unwrap(),
            unlisted: if exchange == Exchange::Kraken {
                Pair::parse_list("ETH-USDT").unwrap()
            } else {
                Vec::new()
            },
            source: TradeSource::Synthetic { rate: 40.0 },
            seed: 20 + i as u64,
            ..SimConfig::default()
        };
        sims.push(exchange_sim::start(config).await.unwrap());
    }
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("tui.log");
    let mut child = Command::new(BIN)
        .env("CANDLES_NO_CONFIG", "true")
        .args(url_flags(&sims))
        .args([
            "--exchanges",
            "binance,kraken",
            "--json",
            "--verifications",
            "false",
        ])
        .args(["--pairs", "btcusdt,ethusdt", "--source", "binance,kraken"])
        .args(["--interval", "1s", "--grace", "300ms", "--log-file"])
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    for line in stdout.lines().map_while(Result::ok) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let key = (
            v["pair"].as_str().unwrap_or("").to_string(),
            v["source"].as_str().unwrap_or("").to_string(),
        );
        assert_ne!(
            key,
            ("ETH-USDT".to_string(), "kraken".to_string()),
            "kraken does not list ETH-USDT: {line}"
        );
        seen.insert(key);
        if seen.len() >= 3 || Instant::now() > deadline {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    for want in [
        ("ETH-USDT", "binance"),
        ("BTC-USDT", "binance"),
        ("BTC-USDT", "kraken"),
    ] {
        assert!(
            seen.contains(&(want.0.to_string(), want.1.to_string())),
            "no {want:?} candle: {seen:?}"
        );
    }
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("kraken does not serve ETH-USDT (not listed)"),
        "{logged}"
    );
    for sim in sims {
        sim.stop().await;
    }
}
