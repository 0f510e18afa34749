//! End to end `--embedded` verification: the real binary in a real terminal (tmux) runs the
//! real connectors against three exchange simulators, and its verifiers check each exchange's
//! final 1-minute candles against the simulator's own candle endpoint. Kraken's simulator loses
//! trades without an id gap (`hide_ratio`): its candles do not match, and the dashboard shows
//! the mismatch in red naming the field and both values, and `--json` carries the verdicts;
//! Binance's match. 1-minute windows take
//! wall time: up to two minutes (the first window may start before the stream did).
#![allow(clippy::unwrap_used)]

mod common;

use candles_core::{Exchange, Pair};
use common::{BIN, Tmux, lines_of, url_flags};
use exchange_sim::{SimConfig, TradeSource};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The screen's line holding `text`.
fn line_with<'a>(screen: &'a str, text: &str) -> &'a str {
    screen.lines().find(|l| l.contains(text)).unwrap_or("")
}

/// The number after `exchange ✓` in the composite's badge (its matched count), if shown
/// (`exchange`: its name, or the three letters of a narrow badge).
fn matched(screen: &str, exchange: &str) -> Option<u64> {
    let from = screen.find(&format!("{exchange} ✓"))? + exchange.len() + " ✓".len();
    let digits: String = screen[from..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_verifies_and_shows_a_mismatch_from_lost_trades_in_red() {
    let mut sims = Vec::new();
    for (i, exchange) in Exchange::ALL.into_iter().enumerate() {
        let config = SimConfig {
            exchange,
            pairs: Pair::parse_list("BTC-USDT").unwrap(),
            source: TradeSource::Synthetic { rate: 20.0 },
            hide_ratio: if exchange == Exchange::Kraken {
                0.3
            } else {
                0.0
            },
            seed: 40 + i as u64,
            ..SimConfig::default()
        };
        sims.push(exchange_sim::start(config).await.unwrap());
    }
    let logs = tempfile::tempdir().unwrap();
    let mut args = url_flags(&sims);
    args.extend(["--pairs", "btcusdt", "--interval", "5s"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tmux = Tmux::start(&args, 80, 24, logs.path());
    // The same from `--json` on a pipe, at the same time.
    let mut json = Command::new(BIN)
        .env("CANDLES_NO_CONFIG", "true")
        .args(&args)
        .args(["--json", "--log-file"])
        .arg(logs.path().join("json.log"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(json.stdout.take().unwrap());

    // The composite's badge: Binance's minutes match, Kraken's latest mismatch is named.
    let screen = tmux
        .wait_for(
            "a binance match and a kraken mismatch",
            Duration::from_secs(150),
            |s| {
                let binance = matched(s, "binance").or_else(|| matched(s, "bin"));
                binance.is_some_and(|n| n > 0) && s.contains("✗ kra")
            },
        )
        .await;
    assert!(screen.contains("BTC-USDT · composite"), "{screen}");

    // Kraken's own badge: the mismatch in red, a field with ours and theirs.
    tmux.keys("s");
    tmux.keys("s");
    // A mismatch the composite named is on kraken's own badge too (once seen, a CI run showed
    // kraken's badge without it for a while, cause not found: a later minute's mismatch shows
    // it again, hence the wait of more than a minute).
    let screen = tmux
        .wait_for(
            "kraken's badge with a mismatch",
            Duration::from_secs(75),
            |s| s.contains("BTC-USDT · kraken") && line_with(s, "verified").contains('✗'),
        )
        .await;
    let badge = line_with(&screen, "verified");
    let mismatch = &badge[badge.find('✗').unwrap_or_else(|| panic!("{screen}"))..];
    assert!(
        ["volume", "trades", "vwap", "open", "high", "low", "close"]
            .iter()
            .any(|f| mismatch.contains(&format!(" {f} ours ")))
            && mismatch.contains(" theirs "),
        "the mismatch names a field and both values: {mismatch:?}\n{screen}"
    );
    let styled = tmux.styled_screen().unwrap();
    let line = line_with(&styled, "verified");
    let before = &line[..line.find('✗').unwrap()];
    let colour = &before[before.rfind("\x1b[").unwrap()..];
    assert!(
        colour.contains("38;5;1m") || colour.ends_with("[31m"),
        "the mismatch is not red: {line:?}"
    );
    tmux.keys("q");

    // --json: verdict objects, Kraken's mismatch naming its fields with ours and theirs.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let kraken = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no kraken mismatch from --json"
        );
        let line = lines.recv_timeout(Duration::from_secs(30)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["type"] == "verification" && v["source"] == "kraken" && v["outcome"] == "mismatch" {
            break v;
        }
    };
    let _ = json.kill();
    let _ = json.wait();
    let diffs = kraken["diffs"].as_array().unwrap();
    assert!(!diffs.is_empty(), "{kraken}");
    for d in diffs {
        assert!(
            d["field"].is_string() && d["ours"].is_string() && d["theirs"].is_string(),
            "{kraken}"
        );
    }
    for sim in sims {
        sim.stop().await;
    }
}
