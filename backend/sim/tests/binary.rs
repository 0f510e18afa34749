//! The `exchange-sim` binary: prints its address line first, serves what it printed, has help
//! for every flag, and rejects bad input with a message that names it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_exchange-sim");

/// Kills the child when the test ends, even on panic.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_first_stdout_line_is_the_address_and_it_serves() {
    let mut child = Command::new(BIN)
        .args([
            "--exchange",
            "kraken",
            "--rate",
            "50",
            "--pairs",
            "btcusdt,ethusdt",
            "--seed",
            "3",
        ])
        .env("SIM_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let child = Kill(child);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(10), line)
        .await
        .expect("a line in time")
        .unwrap()
        .unwrap();
    // exchange-sim listening on 127.0.0.1:PORT ws=ws://127.0.0.1:PORT/v2 rest=http://127.0.0.1:PORT
    let words: Vec<&str> = line.trim_end().split(' ').collect();
    assert_eq!(&words[..3], ["exchange-sim", "listening", "on"], "{line}");
    let addr = words[3];
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{line}"
    );
    assert_eq!(words[4], format!("ws=ws://{addr}/v2"));
    assert_eq!(words[5], format!("rest=http://{addr}"));
    assert_eq!(words.len(), 6);

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v2"))
        .await
        .expect("connects");
    assert_eq!(
        json(&next_text(&mut ws, Duration::from_secs(5), "status").await)["channel"],
        "status"
    );
    send(&mut ws, r#"{"method":"subscribe","params":{"channel":"trade","symbol":["ETH/USDT"],"snapshot":false}}"#).await;
    let messages = collect(&mut ws, Duration::from_secs(5), |m| {
        m.iter().any(|t| t.contains(r#""type":"update""#))
    })
    .await;
    assert!(
        messages
            .iter()
            .any(|t| t.contains(r#""symbol":"ETH/USDT""#)),
        "{messages:?}"
    );
    drop(child);
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--exchange",
        "--listen",
        "--pairs",
        "--unlisted",
        "--halted",
        "--replay",
        "--speed",
        "--synthetic",
        "--rate",
        "--disconnect-every",
        "--drop-ratio",
        "--stall",
        "--malformed-ratio",
        "--absurd-time-every",
        "--unsubscribed-every",
        "--huge-frame",
        "--rest-limit",
        "--split-ratio",
        "--omit-split-trades",
        "--hide-ratio",
        "--hide-until",
        "--max-trades",
        "--seed",
        "--trade-log",
        "--metrics-addr",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert_eq!(help.matches("[env: SIM_").count(), 26, "{help}");
}

#[test]
fn bad_input_is_an_error_that_names_it() {
    for (args, needle) in [
        (vec!["--pairs", "btc"], "\"btc\""),
        (vec!["--exchange", "ftx"], "ftx"),
        (vec!["--stall", "3 parsecs"], "3 parsecs"),
        (vec!["--speed", "fast"], "fast"),
        (
            vec!["--replay", "/nonexistent/capture.jsonl"],
            "/nonexistent/capture.jsonl",
        ),
        (vec!["--drop-ratio", "2"], "drop_ratio"),
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
