//! The real binary as a new user meets it: a bad `--server` is a usage error (exit 2) naming
//! the value and the form in every mode; an unreachable server is explained on stderr once per
//! change, with the log file, which is written exactly where `--log-file` says; flags the mode
//! does not use are named; settings are remembered in a file, and a broken one is reported.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{BIN, Tmux};

#[test]
fn a_bad_server_is_a_clear_error_with_exit_code_2_in_every_mode() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("tui.log");
    for bad in ["127.0.0.1:8080", "not-a-url"] {
        for mode in [&["--plain"][..], &["--json"], &[]] {
            let out = Command::new(BIN)
                .env("CANDLES_NO_CONFIG", "true")
                .args(mode)
                .args(["--server", bad, "--log-file"])
                .arg(&log)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{mode:?} {bad}: {stderr}");
            assert!(
                stderr.contains(bad) && stderr.contains("http://HOST:PORT"),
                "{stderr}"
            );
            assert!(out.stdout.is_empty());
        }
        // The same from the environment.
        let out = Command::new(BIN)
            .env("CANDLES_NO_CONFIG", "true")
            .arg("--plain")
            .env("CANDLES_SERVER", bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains(bad));
    }
}

#[test]
fn an_unreachable_server_is_explained_once_with_the_log_file() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("x.log");
    let mut child = Command::new(BIN)
        .env("CANDLES_NO_CONFIG", "true")
        .args(["--plain", "--grace", "1s", "--server"])
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--log-file")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Retries at 0.5, 1 and 2 s: each fails the same way, said once.
    let mut lines = Vec::new();
    let until = Instant::now() + Duration::from_secs(4);
    while let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        lines.push(line);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let text = lines.join("\n");
    assert!(
        text.contains("--grace is only used with --embedded"),
        "{text}"
    );
    let refused: Vec<&String> = lines.iter().filter(|l| l.contains("refused")).collect();
    assert_eq!(refused.len(), 1, "{text}");
    assert!(refused[0].contains("server"), "{text}");
    assert!(text.contains(&format!("log: {}", log.display())), "{text}");
    // Written exactly where --log-file says, no date appended.
    let names: Vec<String> = std::fs::read_dir(logs.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["x.log"]);
}

#[test]
fn an_unreachable_exchange_in_embedded_mode_is_explained_on_stderr() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let logs = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .env("CANDLES_NO_CONFIG", "true")
        .args([
            "--embedded",
            "--plain",
            "--exchanges",
            "binance",
            "--ws-url",
        ])
        .arg(format!("binance=ws://127.0.0.1:{port}"))
        .arg("--rest-url")
        .arg(format!("binance=http://127.0.0.1:{port}"))
        .arg("--log-file")
        .arg(logs.path().join("tui.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    while !lines.iter().any(|l: &String| l.contains("log:")) {
        let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) else {
            break;
        };
        lines.push(line);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let text = lines.join("\n");
    assert!(
        text.contains(&format!("binance: 127.0.0.1:{port} unreachable")),
        "{text}"
    );
    assert!(text.contains("--ws-url, --rest-url"), "{text}");
    assert!(text.contains("tui.log"), "{text}");
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_broken_settings_file_is_reported_on_stderr_and_is_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tui.json");
    std::fs::write(&file, "{ not json").unwrap();
    let mut child = Command::new(BIN)
        .args(["--plain", "--server"])
        .arg(format!("http://127.0.0.1:{}", closed_port()))
        .arg("--config")
        .arg(&file)
        .arg("--log-file")
        .arg(dir.path().join("tui.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    while !lines.iter().any(|l: &String| l.contains("refused")) {
        let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) else {
            break;
        };
        lines.push(line);
    }
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    let text = lines.join("\n");
    assert!(
        text.contains(&format!("ignoring settings {}", file.display())),
        "{text}"
    );
    assert!(running && text.contains("refused"), "still running: {text}");
}

#[tokio::test]
async fn the_dashboard_restores_and_saves_its_settings_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("candles").join("tui.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        r#"{"pairs": ["solusdt", "ethusdt"], "source": "kraken", "ma_period": 50}"#,
    )
    .unwrap();
    let server = format!("http://127.0.0.1:{}", closed_port());
    let config = file.display().to_string();
    let args = ["--server", &server, "--config", &config, "--ma", "10"];
    let tui = Tmux::start(&args, 80, 24, dir.path());
    tui.wait_for(
        "the remembered pairs and source",
        Duration::from_secs(10),
        |s| s.contains("1 SOL-USDT") && s.contains("2 ETH-USDT") && s.contains("kraken"),
    )
    .await;
    tui.keys("v");
    tui.keys("z");
    tui.wait_for("zoom", Duration::from_secs(5), |s| s.contains("[zoom]"))
        .await;
    tui.keys("q");
    let deadline = Instant::now() + Duration::from_secs(5);
    while tui.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["pairs"], serde_json::json!(["SOL-USDT", "ETH-USDT"]));
    assert_eq!(saved["source"], "kraken");
    assert_eq!(saved["vwap"], true);
    assert_eq!(saved["zoomed"], true);
    assert_eq!(saved["ma_period"], 10, "--ma wins over the file");
}

#[tokio::test]
async fn a_broken_settings_file_is_a_notice_on_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tui.json");
    std::fs::write(&file, r#"{"source": "ftx"}"#).unwrap();
    let server = format!("http://127.0.0.1:{}", closed_port());
    let config = file.display().to_string();
    let tui = Tmux::start(
        &["--server", &server, "--config", &config],
        80,
        24,
        dir.path(),
    );
    let screen = tui
        .wait_for("the notice", Duration::from_secs(10), |s| {
            s.contains("ignoring settings") && s.contains("source")
        })
        .await;
    assert!(screen.contains("BTC-USDT"), "defaults instead:\n{screen}");
    assert!(tui.alive(), "not fatal");
    tui.keys("v");
    tui.keys("q");
    let deadline = Instant::now() + Duration::from_secs(5);
    while tui.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        r#"{"source": "ftx"}"#,
        "left for the user to fix"
    );
}
