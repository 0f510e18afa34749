//! The binary: `--help` lists every flag with its environment variable, bad values are clear
//! errors, and `--metrics-addr` serves Prometheus metrics of a running instance.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use std::io::{Read as _, Write as _};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_candles-service");

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--brokers", "CANDLES_BROKERS"),
        ("--topic", "CANDLES_TOPIC"),
        ("--group", "CANDLES_GROUP"),
        ("--dlq-topic", "CANDLES_DLQ_TOPIC"),
        ("--redis", "CANDLES_REDIS"),
        ("--listen", "CANDLES_LISTEN"),
        ("--interval", "CANDLES_INTERVAL"),
        ("--grace", "CANDLES_GRACE"),
        ("--clock", "CANDLES_CLOCK"),
        ("--update-interval", "CANDLES_UPDATE_INTERVAL"),
        ("--history-max", "CANDLES_HISTORY_MAX"),
        ("--client-queue", "CANDLES_CLIENT_QUEUE"),
        ("--session-timeout", "CANDLES_SESSION_TIMEOUT"),
        ("--metrics-addr", "CANDLES_METRICS_ADDR"),
        ("--log-format", "CANDLES_LOG_FORMAT"),
        ("--tls-cert", "CANDLES_TLS_CERT"),
        ("--tls-key", "CANDLES_TLS_KEY"),
        ("--auth-token", "CANDLES_AUTH_TOKEN"),
        ("--max-trade-age", "CANDLES_MAX_TRADE_AGE"),
        ("--max-trade-lead", "CANDLES_MAX_TRADE_LEAD"),
        ("--kafka-property", "CANDLES_KAFKA_PROPERTIES"),
    ] {
        assert!(
            help.contains(flag) && help.contains(env),
            "--help lacks {flag} / {env}:\n{help}"
        );
    }
}

#[test]
fn bad_values_are_clear_errors() {
    let too_many: Vec<String> = (0..1001).map(|i| format!("P{i}-USDT")).collect();
    let too_many = too_many.join(",");
    for (args, needle) in [
        (vec!["--interval", "5 parsecs"], "interval"),
        (vec!["--clock", "sundial"], "sundial"),
        (vec!["--grace=-1s"], "grace"),
        (vec!["--max-trade-age", "0"], "--max-trade-age"),
        (vec!["--pairs", &too_many], "at most 1000"),
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = Command::new(BIN)
        .env("CANDLES_INTERVAL", "0s")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CANDLES_INTERVAL")
            || String::from_utf8_lossy(&out.stderr).contains("interval")
    );
}

#[test]
fn intervals_are_listed_in_help_and_a_bad_list_names_the_item() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("--intervals") && help.contains("CANDLES_INTERVALS"),
        "{help}"
    );
    assert!(
        help.contains("takes precedence over --intervals"),
        "--help says which of --interval and --intervals wins:\n{help}"
    );
    for (list, needle) in [
        ("1s,5parsecs", "5parsecs"),
        ("5s,7s", "7s is not a whole multiple"),
        ("1s,1s", "listed twice"),
    ] {
        let out = Command::new(BIN)
            .args(["--intervals", list])
            .output()
            .unwrap();
        assert!(!out.status.success(), "--intervals {list} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "--intervals {list}: {err}");
    }
}

#[test]
fn kafka_properties_reach_librdkafka_and_secrets_stay_hidden() {
    // Bad syntax: exit 2, the entry named, a secret never echoed.
    let out = Command::new(BIN)
        .args(["--kafka-property", "client.id"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"client.id\"") && err.contains("key=value"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["--kafka-property", "sasl.password:hunter2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
    // A value librdkafka refuses: the service stops at start, naming it; secrets redacted.
    let deps_free = candles_testkit::free_port();
    let out = Command::new(BIN)
        .args(["--brokers", &format!("127.0.0.1:{deps_free}")])
        .args(["--redis", &format!("redis://127.0.0.1:{deps_free}/")])
        .args(["--listen", "127.0.0.1:0"])
        .args([
            "--kafka-property",
            "sasl.password=hunter2",
            "--kafka-property",
            "acks=sometimes",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("acks") && err.contains("sometimes"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_reports_the_pipeline() {
    let deps = Deps::start(1);
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = candles_testkit::free_port();
    let config = deps.config();
    let port = candles_testkit::free_port();
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .args(["--interval", "1s", "--grace", "400ms"])
        .env("CANDLES_BROKERS", &config.brokers)
        .env("CANDLES_TOPIC", &config.topic)
        .env("CANDLES_GROUP", &config.group)
        .env("CANDLES_REDIS", &config.redis_url)
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    let addr = ([127, 0, 0, 1], port).into();
    wait_serving(addr, Duration::from_secs(15)).await;
    let pairs = pairs();
    let watcher =
        Collected::subscribe(&mut connect(addr).await, request(&pairs, vec![], 0, false)).await;
    // Longer than the broker's ~6 s consumer-group join, so trades are still arriving once the
    // service consumes and live (in-progress) candles are published, not only finals.
    let trades = produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        pairs.clone(),
        Duration::from_secs(9),
        Duration::from_millis(20),
        None,
        1,
    )
    .await;
    let expected: Vec<_> = reference(&trades)
        .into_iter()
        .filter(|c| c.source == candles_core::Source::Composite)
        .collect();
    assert!(watcher.wait_for(&expected, Duration::from_secs(20)).await);
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let body = scrape(metrics_port);
        if body.contains("candles_service_finalize_to_client_seconds_bucket")
            || Instant::now() > deadline
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    for name in [
        "candles_service_trades_consumed_total",
        "candles_service_candles_published_total{kind=\"final\"}",
        "candles_service_candles_published_total{kind=\"live\"}",
        "candles_service_finalize_to_client_seconds_bucket",
        "candles_service_clients_connected",
        "candles_service_consumer_lag{partition=\"0\"}",
        "candles_service_dependency_up{dependency=\"kafka\"}",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}:\n{body}");
    }
    let consumed: f64 = body
        .lines()
        .find(|l| l.starts_with("candles_service_trades_consumed_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(consumed as usize, trades.len());
}

fn scrape(port: u16) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}
