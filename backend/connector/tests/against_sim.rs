//! The connector against the exchange simulator (real WebSocket + REST on 127.0.0.1) and a real
//! Apache Kafka broker: what users rely on — every trade the exchange made reaches
//! Kafka exactly once, in order per pair, with exact prices — under disconnects, dropped
//! messages, garbage frames and stalled sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use candles_connector::{
    BackoffConfig, ChannelSink, ConnState, ConnectorConfig, KafkaSink, check_pairs, run,
    telemetry::Snapshot,
};
use candles_core::{Exchange, Micros, Pair, Trade};
use candles_testkit::Kafka;
use exchange_sim::{SimConfig, SimHandle, TradeSource};
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;

/// Settings that make a 2-second disconnect cycle cheap: short backoff, quick stale detection.
fn connector_config(exchange: Exchange, sim: &SimHandle) -> ConnectorConfig {
    let mut config = ConnectorConfig::new(exchange, Pair::defaults());
    config.ws_url = Some(sim.ws_url());
    config.rest_url = Some(sim.rest_url());
    config.stale_after = Duration::from_secs(3);
    config.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
        reset_after: Duration::from_secs(30),
    };
    config.rest_timeout = Duration::from_secs(3);
    config.backfill_budget = Duration::from_secs(10);
    config.start = Some(Micros::now());
    config
}

/// One record as read back from Kafka.
#[derive(Debug, Clone)]
struct Record {
    key: String,
    trade: Trade,
}

/// Reads every partition of `topic` from the beginning on a plain thread (assign, no group:
/// no 5-second join), until told to stop. The consumer is dropped on a detached thread, so
/// rdkafka's occasionally hanging destroy cannot hang the test.
struct Reader {
    records: Arc<Mutex<Vec<Record>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn start(brokers: &str, topic: &str) -> Reader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("connector-test-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (records, stop) = (records.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => {
                            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
                            let wire =
                                candles_proto::v1::Trade::decode(m.payload().unwrap()).unwrap();
                            let trade = Trade::try_from(&wire).unwrap();
                            records.lock().unwrap().push(Record { key, trade });
                        }
                        Some(Err(e)) => eprintln!("consumer: {e}"),
                        None => {}
                    }
                }
                std::thread::spawn(move || drop(consumer));
            }
        });
        Reader {
            records,
            stop,
            thread: Some(thread),
        }
    }

    fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }

    fn stop(mut self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.records()
    }
}

/// A trade without the connector's receive stamp, for comparison with the ground truth. Prices
/// and quantities compare as exact decimal values: Kraken's REST writes `0.00008000` where its
/// WebSocket writes `0.00008`, the same number.
fn essence(t: &Trade) -> (Exchange, Pair, u64, String, String, candles_core::Side, i64) {
    let exact = |d: candles_core::Decimal| d.normalize().to_string();
    (
        t.exchange,
        t.pair,
        t.id,
        exact(t.price),
        exact(t.quantity),
        t.side,
        t.time.0,
    )
}

/// Compares what the connector published with the simulator's ground truth: every trade made
/// from `start` on (the connector's start), once, in id order per pair, identical. Trades made
/// before `start` are history: some may be published (the first live trade of a pair), none may
/// be missing in between. Returns a description of the first difference, or the number of
/// trades compared.
fn compare(truth: &[Trade], published: &[Trade], start: Micros) -> Result<usize, String> {
    let mut by_pair: BTreeMap<Pair, (Vec<&Trade>, Vec<&Trade>)> = BTreeMap::new();
    for t in truth {
        by_pair.entry(t.pair).or_default().0.push(t);
    }
    for t in published {
        by_pair.entry(t.pair).or_default().1.push(t);
    }
    let mut compared = 0;
    for (pair, (truth, got)) in by_pair {
        let Some(first) = got.first() else {
            return Err(format!(
                "{pair}: nothing published ({} trades made)",
                truth.len()
            ));
        };
        let before = truth.iter().take_while(|t| t.id < first.id).count();
        if let Some(missed) = truth[..before].iter().find(|t| t.time >= start) {
            return Err(format!(
                "{pair}: first published id {} skips trade {} made after the start",
                first.id, missed.id
            ));
        }
        let want: Vec<_> = truth[before..].iter().map(|t| essence(t)).collect();
        let have: Vec<_> = got.iter().map(|t| essence(t)).collect();
        if want != have {
            let at = want
                .iter()
                .zip(&have)
                .position(|(a, b)| a != b)
                .unwrap_or(want.len().min(have.len()));
            return Err(format!(
                "{pair}: {} expected, {} published; first difference at #{at}: expected {:?}, got {:?}",
                want.len(),
                have.len(),
                want.get(at),
                have.get(at)
            ));
        }
        compared += want.len();
    }
    Ok(compared)
}

fn sim_config(exchange: Exchange) -> SimConfig {
    SimConfig {
        exchange,
        pairs: Pair::defaults(),
        source: TradeSource::Synthetic { rate: 200.0 },
        disconnect_every: Some(Duration::from_secs(2)),
        drop_ratio: 0.05,
        malformed_ratio: 0.02,
        max_trades: Some(600),
        seed: 7,
        ..SimConfig::default()
    }
}

async fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

/// Logs to the test's output (shown for failing tests); `RUST_LOG` filters.
fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("candles_connector=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// One line of what a run made, published and counted (for the test log).
fn print_figures(
    exchange: Exchange,
    truth: &[Trade],
    start: Micros,
    in_kafka: usize,
    figures: &Snapshot,
    summary: &str,
) {
    println!(
        "{exchange}: made {} trades ({} after the connector started), {in_kafka} in Kafka, {summary}; gaps {} (backfilled {}, unfilled {}), \
         reconnects {}, rejected frames {}, duplicates dropped {}, received on ws {}, stale {}",
        truth.len(),
        truth.iter().filter(|t| t.time >= start).count(),
        figures.gaps,
        figures.backfilled,
        figures.unfilled,
        figures.reconnects,
        figures.rejected,
        figures.duplicates,
        figures.received,
        figures.stale,
    );
}

async fn exactly_once_into_kafka(exchange: Exchange) {
    logs();
    let kafka = Kafka::shared();
    let topic = format!("trades-{exchange}");
    kafka.create_topic(&topic, PARTITIONS as u32).unwrap();
    let sim = exchange_sim::start(sim_config(exchange)).await.unwrap();
    let config = connector_config(exchange, &sim);
    let start = config.start.unwrap();
    check_pairs(&config).await.unwrap();
    let counters = config.counters.clone();
    let sink = KafkaSink::new(&kafka.brokers(), &topic).unwrap();
    let reader = Reader::start(&kafka.brokers(), &topic);
    let (status, _status_rx) = watch::channel(ConnState::Connecting);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(config, sink.clone(), status, shutdown.clone()));

    let started = Instant::now();
    assert!(
        wait_until(started + Duration::from_secs(30), || sim.done()).await,
        "the simulator did not finish its trades"
    );
    // Caught up: everything since each pair's reference is in Kafka.
    let truth = sim.trades();
    let caught_up = wait_until(Instant::now() + Duration::from_secs(20), || {
        let published: Vec<Trade> = reader.records().iter().map(|r| r.trade).collect();
        compare(&truth, &published, start).is_ok()
    })
    .await;
    // A little longer, so a late duplicate would show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    sink.flush(Duration::from_secs(5)).await.unwrap();
    let records = reader.stop();
    let figures: Snapshot = counters.snapshot();
    sim.stop().await;

    for r in &records {
        assert_eq!(
            r.key,
            r.trade.pair.to_string(),
            "record key = canonical pair"
        );
        assert_eq!(r.trade.exchange, exchange);
    }
    let published: Vec<Trade> = records.iter().map(|r| r.trade).collect();
    let compared = compare(&truth, &published, start);
    let summary = format!(
        "compared {compared:?}; caught up: {caught_up}, {:?}",
        started.elapsed()
    );
    print_figures(exchange, &truth, start, records.len(), &figures, &summary);
    let compared = compared.unwrap();
    assert!(
        compared >= truth.len() - 15,
        "compared {compared} of {}",
        truth.len()
    );
    assert!(
        figures.reconnects >= 1,
        "the simulator disconnects every 2 s: {figures:?}"
    );
    assert!(
        figures.gaps >= 1 && figures.backfilled >= 1,
        "5% drops must cause gap fills: {figures:?}"
    );
    assert!(
        figures.rejected >= 1,
        "2% garbage frames must be rejected and skipped: {figures:?}"
    );
    assert_eq!(
        figures.unfilled, 0,
        "the simulator's REST has every trade: {figures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_trades_reach_kafka_exactly_once_despite_faults() {
    exactly_once_into_kafka(Exchange::Binance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_trades_reach_kafka_exactly_once_despite_faults() {
    exactly_once_into_kafka(Exchange::Kraken).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_trades_reach_kafka_exactly_once_despite_faults() {
    exactly_once_into_kafka(Exchange::Coinbase).await;
}

/// A socket that goes silent (no trades, heartbeats or pongs) is declared dead after
/// `stale_after` and replaced; trades keep arriving, once each.
async fn stalled_socket_is_replaced(exchange: Exchange) {
    logs();
    let sim = exchange_sim::start(SimConfig {
        exchange,
        pairs: Pair::defaults(),
        source: TradeSource::Synthetic { rate: 100.0 },
        stall: Some(Duration::from_secs(30)),
        max_trades: Some(500),
        seed: 11,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut config = connector_config(exchange, &sim);
    config.stale_after = Duration::from_millis(1500);
    let start = config.start.unwrap();
    let counters = config.counters.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel(10_000);
    let (status, mut status_rx) = watch::channel(ConnState::Connecting);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(config, ChannelSink(tx), status, shutdown.clone()));
    let states = tokio::spawn(async move {
        let mut seen = Vec::new();
        while status_rx.changed().await.is_ok() {
            let s = *status_rx.borrow();
            seen.push(s);
            if s == ConnState::Stopped {
                break;
            }
        }
        seen
    });

    // The first connection stalls about 1 s after subscribing, for far longer than the test:
    // only replacing it can bring the trades.
    let began = Instant::now();
    let mut got: Vec<Trade> = Vec::new();
    let deadline = began + Duration::from_secs(40);
    while Instant::now() < deadline && !(sim.done() && compare(&sim.trades(), &got, start).is_ok())
    {
        if let Ok(Some(t)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            got.push(t);
        }
    }
    let figures = counters.snapshot();
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let states = states.await.unwrap();
    let truth = sim.trades();
    sim.stop().await;
    println!(
        "{exchange} stall: {figures:?}, {} of {} trades in {:?}",
        got.len(),
        truth.len(),
        began.elapsed()
    );
    assert!(
        figures.stale >= 1,
        "the stall was not detected: {figures:?}"
    );
    assert!(states.contains(&ConnState::Stale), "{states:?}");
    let after_stale = states.iter().position(|s| *s == ConnState::Stale).unwrap();
    assert!(
        states[after_stale..].contains(&ConnState::Live),
        "never live again: {states:?}"
    );
    compare(&truth, &got, start).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_stalled_socket_is_detected_and_replaced() {
    stalled_socket_is_replaced(Exchange::Binance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_stalled_socket_is_detected_and_replaced() {
    stalled_socket_is_replaced(Exchange::Kraken).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_stalled_socket_is_detected_and_replaced() {
    stalled_socket_is_replaced(Exchange::Coinbase).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_pairs_are_a_clear_error_naming_them() {
    for exchange in Exchange::ALL {
        let sim = exchange_sim::start(SimConfig {
            exchange,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let mut config = connector_config(exchange, &sim);
        check_pairs(&config).await.unwrap();
        config.pairs = Pair::parse_list("btcusdt,dogeeur").unwrap();
        let msg = format!("{:#}", check_pairs(&config).await.unwrap_err());
        assert!(
            msg.contains("DOGE-EUR") && msg.contains("does not list"),
            "{exchange}: {msg}"
        );
        sim.stop().await;
    }
}

/// The TLS path (wss://) is built and fails like any connection error — retried with backoff,
/// never a panic (e.g. a missing rustls crypto provider).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_wss_endpoint_is_retried_with_backoff() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let mut config = ConnectorConfig::new(Exchange::Binance, Pair::defaults());
    config.ws_url = Some(format!("wss://{addr}/ws"));
    config.rest_url = Some(format!("http://{addr}"));
    config.backoff = BackoffConfig {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
        reset_after: Duration::from_secs(30),
    };
    let counters = config.counters.clone();
    let (tx, _rx) = tokio::sync::mpsc::channel(10);
    let (status, mut status_rx) = watch::channel(ConnState::Connecting);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(config, ChannelSink(tx), status, shutdown.clone()));
    let mut attempts = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while status_rx.changed().await.is_ok() {
            if let ConnState::Reconnecting { attempt, .. } = *status_rx.borrow() {
                attempts.push(attempt);
                if attempt >= 3 {
                    break;
                }
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "no retries seen: {attempts:?}");
    // A watch channel keeps only the newest state, so a busy test thread may miss one attempt;
    // those it sees must count up, to 3.
    assert!(
        attempts.windows(2).all(|w| w[0] < w[1]) && attempts.last() == Some(&3),
        "attempts count up while failing: {attempts:?}"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(*status_rx.borrow(), ConnState::Stopped);
    assert!(counters.snapshot().reconnects >= 3);
}

fn connector_binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_candles-connector"))
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let out = connector_binary().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--exchange", "CANDLES_EXCHANGE"),
        ("--pairs", "CANDLES_PAIRS"),
        ("--brokers", "CANDLES_BROKERS"),
        ("--topic", "CANDLES_TOPIC"),
        ("--ws-url", "CANDLES_WS_URL"),
        ("--rest-url", "CANDLES_REST_URL"),
        ("--metrics-addr", "CANDLES_METRICS_ADDR"),
        ("--log-format", "CANDLES_LOG_FORMAT"),
        ("--stale-after", "CANDLES_STALE_AFTER"),
    ] {
        assert!(
            help.contains(flag) && help.contains(env),
            "{flag} / {env} missing:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_rejects_bad_input_with_messages_that_name_it() {
    let out = connector_binary()
        .args(["--exchange", "ftx"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("ftx") && err.contains("binance"),
        "{err}"
    );
    let out = connector_binary()
        .args(["--exchange", "kraken", "--pairs", "btc"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("\"btc\"") && err.contains("BTC-USDT"),
        "{err}"
    );

    let sim = exchange_sim::start(SimConfig {
        exchange: Exchange::Kraken,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let out = tokio::task::spawn_blocking({
        let (ws, rest) = (sim.ws_url(), sim.rest_url());
        move || {
            connector_binary()
                .args([
                    "--exchange",
                    "kraken",
                    "--pairs",
                    // None of them listed: a connector serves the listed pairs of its
                    // --pairs and exits with 2 only when the exchange lists none.
                    "dogeeur,ltceur",
                    "--ws-url",
                    &ws,
                ])
                .args(["--rest-url", &rest, "--brokers", "127.0.0.1:1"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    sim.stop().await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("DOGE-EUR") && err.contains("does not list"),
        "{err}"
    );
}

/// An exchange that cannot be asked (nothing listens on its REST port) is not an unlisted pair:
/// the connector retries the check for about 30 s, then exits with 1, never with 2 (the code
/// the README keeps for a pair the exchange does not list).
#[test]
fn an_unreachable_exchange_exits_with_1_not_the_unlisted_pair_code() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut child = connector_binary()
        .args(["--exchange", "kraken", "--pairs", "btcusdt"])
        .args(["--ws-url", &format!("ws://127.0.0.1:{port}/v2")])
        .args(["--rest-url", &format!("http://127.0.0.1:{port}")])
        .args(["--brokers", "127.0.0.1:1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stop_by = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() && Instant::now() < stop_by {
        std::thread::sleep(Duration::from_millis(100));
    }
    let exited = child.try_wait().unwrap().is_some();
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(exited, "still running after 90 s:\n{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("could not check whether kraken lists BTC-USDT"),
        "{err}"
    );
}

/// The binary's own start instant is not known here: compare from each pair's first published
/// trade on (the library tests check the start rule).
const ANY_START: Micros = Micros(i64::MAX);

/// The real binary, configured through environment variables and flags: trades from the
/// simulator reach Kafka exactly once, metrics are served, and SIGTERM stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_streams_to_kafka_serves_metrics_and_stops_on_sigterm() {
    let kafka = Kafka::shared();
    let topic = "trades-binary";
    kafka.create_topic(topic, PARTITIONS as u32).unwrap();
    let sim = exchange_sim::start(SimConfig {
        exchange: Exchange::Coinbase,
        source: TradeSource::Synthetic { rate: 150.0 },
        drop_ratio: 0.05,
        max_trades: Some(300),
        seed: 3,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let reader = Reader::start(&kafka.brokers(), topic);
    let metrics_port = candles_testkit::free_port();
    let child = connector_binary()
        .env("CANDLES_EXCHANGE", "coinbase")
        .env("CANDLES_TOPIC", topic)
        .args([
            "--pairs",
            "btc-usdt,ETH/USDT,sol_usdt",
            "--brokers",
            &kafka.brokers(),
        ])
        .args(["--ws-url", &sim.ws_url(), "--rest-url", &sim.rest_url()])
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
            "--log-format",
            "json",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let caught_up = wait_until(deadline, || {
        let published: Vec<Trade> = reader.records().iter().map(|r| r.trade).collect();
        sim.done() && compare(&sim.trades(), &published, ANY_START).is_ok()
    })
    .await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let status = tokio::task::spawn_blocking(move || terminate(child))
        .await
        .unwrap();
    let records = reader.stop();
    let truth = sim.trades();
    sim.stop().await;
    let published: Vec<Trade> = records.iter().map(|r| r.trade).collect();
    assert!(caught_up, "{:?}", compare(&truth, &published, ANY_START));
    compare(&truth, &published, ANY_START).unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM must stop it cleanly: {status:?}"
    );
    for needle in [
        r#"connector_trades_published_total{exchange="coinbase",pair="BTC-USDT"}"#,
        r#"connector_trades_received_total{exchange="coinbase",pair="ETH-USDT"}"#,
        "connector_gaps_total",
        "connector_trades_backfilled_total",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from /metrics:\n{metrics}"
        );
    }
}

/// A broker outage delays trades but loses none: deliveries fail, are counted and retried, and
/// every trade made while the broker was down reaches it once it is back, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_delays_trades_but_loses_none() {
    logs();
    let mut kafka = Kafka::start().expect("Kafka is required (scripts/install-test-deps.sh)");
    let topic = "trades-outage";
    kafka.create_topic(topic, PARTITIONS as u32).unwrap();
    let sim = exchange_sim::start(SimConfig {
        exchange: Exchange::Binance,
        source: TradeSource::Synthetic { rate: 100.0 },
        max_trades: Some(700),
        seed: 5,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let config = connector_config(Exchange::Binance, &sim);
    let sink =
        KafkaSink::with_config(&kafka.brokers(), topic, &[("message.timeout.ms", "1000")]).unwrap();
    let (status, _status_rx) = watch::channel(ConnState::Connecting);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(config, sink.clone(), status, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The broker dies (kill -9) and comes back 2 s later with its data.
    kafka.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let back_at = Micros::now();
    kafka.restart().unwrap();
    let reader = Reader::start(&kafka.brokers(), topic);
    let truth_tail = |truth: &[Trade], published: &[Trade]| -> Result<usize, String> {
        // Everything from each pair's first record after the restart on: the outage's trades
        // and all later ones, once each, in order.
        compare(truth, published, ANY_START)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let ok = wait_until(deadline, || {
        let published: Vec<Trade> = reader.records().iter().map(|r| r.trade).collect();
        sim.done() && truth_tail(&sim.trades(), &published).is_ok()
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let records = reader.stop();
    let truth = sim.trades();
    sim.stop().await;
    let published: Vec<Trade> = records.iter().map(|r| r.trade).collect();
    let first_after: BTreeMap<Pair, u64> = published.iter().fold(BTreeMap::new(), |mut m, t| {
        m.entry(t.pair).or_insert(t.id);
        m
    });
    println!(
        "outage: {} delivery errors retried; {} of {} trades in the restarted broker, first ids {first_after:?}",
        sink.delivery_errors(),
        records.len(),
        truth.len()
    );
    assert!(ok, "{:?}", truth_tail(&truth, &published));
    assert!(
        sink.delivery_errors() > 0,
        "the outage must have failed some deliveries"
    );
    // The restarted broker holds more than what was made after it came back: each pair's
    // first record there is a trade made while it was down, retried.
    for pair in Pair::defaults() {
        let first = published
            .iter()
            .find(|t| t.pair == pair)
            .expect("records for every pair");
        assert!(
            first.time < back_at,
            "{pair}: first record {first:?} was made after the restart"
        );
    }
}

/// A bare WebSocket server that records when each connection subscribed; `script` decides what
/// each connection (numbered from 0) is sent after subscribing.
async fn scripted_server(
    script: fn(usize) -> Vec<String>,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<Instant>>>) {
    use futures::{SinkExt, StreamExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let subscribed = Arc::new(Mutex::new(Vec::new()));
    let log = subscribed.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await else {
                    return;
                };
                let Some(Ok(_subscribe)) = ws.next().await else {
                    return;
                };
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(Instant::now());
                    log.len() - 1
                };
                for text in script(n) {
                    if ws
                        .send(tokio_tungstenite::tungstenite::Message::text(text))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (addr, subscribed)
}

/// Binance's `serverShutdown` means "reconnect now": no backoff wait, whatever the backoff says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_and_session_age_reconnect_at_once() {
    fn shutdown_first(n: usize) -> Vec<String> {
        if n == 0 {
            vec![r#"{"e":"serverShutdown","E":1770123456789}"#.to_string()]
        } else {
            vec![]
        }
    }
    for (label, script, max_session) in [
        (
            "serverShutdown",
            shutdown_first as fn(usize) -> Vec<String>,
            Duration::from_secs(3600),
        ),
        (
            "max session age",
            (|_| Vec::new()) as fn(usize) -> Vec<String>,
            Duration::from_millis(300),
        ),
    ] {
        let (addr, subscribed) = scripted_server(script).await;
        let mut config = ConnectorConfig::new(Exchange::Binance, Pair::defaults());
        config.ws_url = Some(format!("ws://{addr}/ws"));
        config.rest_url = Some(format!("http://{addr}"));
        // A backoff this long would fail the test if it were applied.
        config.backoff = BackoffConfig {
            initial: Duration::from_secs(20),
            max: Duration::from_secs(20),
            reset_after: Duration::from_secs(30),
        };
        config.max_session = max_session;
        let (tx, _rx) = tokio::sync::mpsc::channel(10);
        let (status, _status_rx) = watch::channel(ConnState::Connecting);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(config, ChannelSink(tx), status, shutdown.clone()));
        let two = wait_until(Instant::now() + Duration::from_secs(5), || {
            subscribed.lock().unwrap().len() >= 2
        })
        .await;
        shutdown.cancel();
        task.await.unwrap().unwrap();
        let times = subscribed.lock().unwrap().clone();
        assert!(two, "{label}: no second connection: {times:?}");
        let gap = times[1] - times[0];
        assert!(
            gap < Duration::from_secs(2),
            "{label}: reconnected after {gap:?}"
        );
    }
}

/// An outage longer than one REST page (1000 trades) is filled across pages, in order, once.
async fn long_outages_span_rest_pages(exchange: Exchange) {
    logs();
    let btc = vec![Pair::parse("BTC-USDT").unwrap()];
    let sim = exchange_sim::start(SimConfig {
        exchange,
        pairs: btc.clone(),
        source: TradeSource::Synthetic { rate: 1500.0 },
        stall: Some(Duration::from_secs(30)),
        max_trades: Some(4500),
        seed: 13,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut config = connector_config(exchange, &sim);
    config.pairs = btc;
    config.stale_after = Duration::from_secs(1);
    let start = config.start.unwrap();
    let counters = config.counters.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel(100_000);
    let (status, _status_rx) = watch::channel(ConnState::Connecting);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(config, ChannelSink(tx), status, shutdown.clone()));
    let mut got: Vec<Trade> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline && !(sim.done() && compare(&sim.trades(), &got, start).is_ok())
    {
        if let Ok(Some(t)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            got.push(t);
            while let Ok(t) = rx.try_recv() {
                got.push(t);
            }
        }
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let figures = counters.snapshot();
    let truth = sim.trades();
    sim.stop().await;
    println!(
        "{exchange} long outage: {figures:?}; {} of {} trades",
        got.len(),
        truth.len()
    );
    compare(&truth, &got, start).unwrap();
    assert!(figures.stale >= 1, "{figures:?}");
    assert!(
        figures.backfilled > 1000,
        "the outage must need more than one page: {figures:?}"
    );
    assert_eq!(figures.unfilled, 0, "{figures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_long_outages_span_rest_pages() {
    long_outages_span_rest_pages(Exchange::Binance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_long_outages_span_rest_pages() {
    long_outages_span_rest_pages(Exchange::Kraken).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_long_outages_span_rest_pages() {
    long_outages_span_rest_pages(Exchange::Coinbase).await;
}

/// `kill -9` of the connector and a restart: the new process reads back the last trade it
/// published per pair from Kafka, fetches what was made while it was down from REST, and every
/// trade reaches Kafka exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_connector_loses_and_repeats_nothing() {
    let kafka = Kafka::shared();
    let topic = "trades-restart";
    kafka.create_topic(topic, PARTITIONS as u32).unwrap();
    let sim = exchange_sim::start(SimConfig {
        exchange: Exchange::Binance,
        source: TradeSource::Synthetic { rate: 150.0 },
        max_trades: Some(900),
        seed: 11,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let reader = Reader::start(&kafka.brokers(), topic);
    let spawn = || {
        connector_binary()
            .args([
                "--exchange",
                "binance",
                "--brokers",
                &kafka.brokers(),
                "--topic",
                topic,
            ])
            .args(["--ws-url", &sim.ws_url(), "--rest-url", &sim.rest_url()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = spawn();
    // Let it publish for a while, then kill it without warning, mid-stream.
    assert!(
        wait_until(Instant::now() + Duration::from_secs(20), || reader
            .records()
            .len()
            >= 200)
        .await,
        "the first connector published nothing"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    let at_kill = reader.records().len();
    // Trades go on while it is down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut second = spawn();
    let deadline = Instant::now() + Duration::from_secs(40);
    let caught_up = wait_until(deadline, || {
        let published: Vec<Trade> = reader.records().iter().map(|r| r.trade).collect();
        sim.done() && compare(&sim.trades(), &published, ANY_START).is_ok()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let records = reader.stop();
    let truth = sim.trades();
    sim.stop().await;
    let published: Vec<Trade> = records.iter().map(|r| r.trade).collect();
    println!(
        "restart: {} trades made, {} in Kafka ({at_kill} before the kill)",
        truth.len(),
        published.len()
    );
    assert!(caught_up, "{:?}", compare(&truth, &published, ANY_START));
    // `compare` proved every trade from the first published one to the simulator's last is in
    // Kafka once, in order; the kill fell inside that run when the second connector added to it.
    // (How many trades came before the first connector's start is timing, not a property.)
    assert!(
        published.len() > at_kill,
        "the restarted connector published nothing after the kill ({at_kill} before it)"
    );
}

/// Whether the default window (7 days back, 1 hour ahead) accepts `t` now.
fn plausible(t: &Trade) -> bool {
    candles_core::TimeBounds::default()
        .check(t.time, Micros::now())
        .is_ok()
}

/// Starts a simulator with `sim_config` and runs the library connector against it into a fresh
/// Kafka topic until the simulator is done and every plausible trade is in Kafka (or 30 s
/// pass): the records read back, the counters, and the ground truth. The broker is up before
/// the simulator starts trading.
async fn hostile_run(
    sim_config: SimConfig,
    topic: &str,
) -> (Vec<Record>, Snapshot, Vec<Trade>, Micros) {
    let exchange = sim_config.exchange;
    let kafka = Kafka::shared();
    kafka.create_topic(topic, PARTITIONS as u32).unwrap();
    let sim = exchange_sim::start(sim_config).await.unwrap();
    let config = connector_config(exchange, &sim);
    let start = config.start.unwrap();
    let counters = config.counters.clone();
    let sink = KafkaSink::new(&kafka.brokers(), topic).unwrap();
    let reader = Reader::start(&kafka.brokers(), topic);
    let (status, _status_rx) = watch::channel(ConnState::Connecting);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(config, sink.clone(), status, shutdown.clone()));
    assert!(
        wait_until(Instant::now() + Duration::from_secs(30), || sim.done()).await,
        "the simulator did not finish its trades"
    );
    let truth: Vec<Trade> = sim.trades();
    let wanted: Vec<Trade> = truth.iter().copied().filter(plausible).collect();
    wait_until(Instant::now() + Duration::from_secs(20), || {
        let published: Vec<Trade> = reader.records().iter().map(|r| r.trade).collect();
        compare(&wanted, &published, start).is_ok()
    })
    .await;
    // A little longer, so a late duplicate or a late refused trade would show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    sink.flush(Duration::from_secs(5)).await.unwrap();
    let records = reader.stop();
    let figures = counters.snapshot();
    sim.stop().await;
    (records, figures, truth, start)
}

/// Trades dated 1970 and 2100 — on the WebSocket and met through REST gap fill — never reach
/// Kafka and are counted; every other trade reaches Kafka exactly once, and the refused ids
/// cause no unfilled gap (no refetch loop).
async fn absurd_times_are_refused(exchange: Exchange) {
    logs();
    let sim = SimConfig {
        exchange,
        pairs: Pair::defaults(),
        source: TradeSource::Synthetic { rate: 200.0 },
        absurd_time_every: Some(15),
        max_trades: Some(600),
        seed: 21,
        ..SimConfig::default()
    };
    let topic = format!("trades-absurd-{exchange}");
    let (records, figures, truth, start) = hostile_run(sim, &topic).await;
    let published: Vec<Trade> = records.iter().map(|r| r.trade).collect();
    let absurd: Vec<&Trade> = truth.iter().filter(|t| !plausible(t)).collect();
    // Those the connector must have met: after its first published trade of the pair and
    // followed by another trade (REST-only ones are revealed by the next id).
    let met = absurd
        .iter()
        .filter(|a| {
            let first = published.iter().find(|t| t.pair == a.pair).map(|t| t.id);
            let last = truth
                .iter()
                .filter(|t| t.pair == a.pair)
                .map(|t| t.id)
                .max();
            first.is_some_and(|f| a.id > f) && last.is_some_and(|l| a.id < l)
        })
        .count() as u64;
    let wanted: Vec<Trade> = truth.iter().copied().filter(plausible).collect();
    let compared = compare(&wanted, &published, start);
    println!(
        "{exchange} absurd times: {} made, {} dated 1970/2100 ({} met after the first published), \
         {} in Kafka, compared {compared:?}; refused {}, gaps {}, unfilled {}",
        truth.len(),
        absurd.len(),
        met,
        records.len(),
        figures.implausible,
        figures.gaps,
        figures.unfilled
    );
    assert!(absurd.len() >= 30, "the simulator made absurd trades");
    assert!(
        published.iter().all(plausible),
        "an implausible trade reached Kafka"
    );
    compared.unwrap();
    assert!(
        figures.implausible >= met && figures.implausible <= absurd.len() as u64,
        "refused {} of {} met ({} made): {figures:?}",
        figures.implausible,
        met,
        absurd.len()
    );
    assert!(
        figures.gaps >= 1,
        "REST-only absurd trades make gaps: {figures:?}"
    );
    assert_eq!(
        figures.unfilled, 0,
        "a refused trade found by REST is accounted for, not missing: {figures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_trades_dated_1970_or_2100_never_reach_kafka() {
    absurd_times_are_refused(Exchange::Binance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_trades_dated_1970_or_2100_never_reach_kafka() {
    absurd_times_are_refused(Exchange::Coinbase).await;
}

/// A trade frame of a pair the connector did not subscribe to never reaches Kafka and is
/// counted; the subscribed pairs' trades reach Kafka exactly once.
async fn unsubscribed_pairs_are_dropped(exchange: Exchange) {
    logs();
    let sim = SimConfig {
        exchange,
        pairs: Pair::defaults(),
        source: TradeSource::Synthetic { rate: 200.0 },
        unsubscribed_every: Some(10),
        max_trades: Some(400),
        seed: 22,
        ..SimConfig::default()
    };
    let topic = format!("trades-unsubscribed-{exchange}");
    let (records, figures, truth, start) = hostile_run(sim, &topic).await;
    let published: Vec<Trade> = records.iter().map(|r| r.trade).collect();
    let compared = compare(&truth, &published, start);
    println!(
        "{exchange} unsubscribed: {} made, {} in Kafka, compared {compared:?}; unsubscribed dropped {}",
        truth.len(),
        records.len(),
        figures.unsubscribed
    );
    assert!(
        published.iter().all(|t| Pair::defaults().contains(&t.pair)),
        "a trade of an unsubscribed pair reached Kafka"
    );
    compared.unwrap();
    assert!(
        figures.unsubscribed >= 10,
        "every 10th message names another pair: {figures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_trades_of_unsubscribed_pairs_never_reach_kafka() {
    unsubscribed_pairs_are_dropped(Exchange::Binance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_trades_of_unsubscribed_pairs_never_reach_kafka() {
    unsubscribed_pairs_are_dropped(Exchange::Kraken).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_trades_of_unsubscribed_pairs_never_reach_kafka() {
    unsubscribed_pairs_are_dropped(Exchange::Coinbase).await;
}

/// A Binance simulator at its most hostile: a 1 MB garbage frame on every connection, a
/// disconnect every 2 s, foreign pairs, absurd times and 5% malformed frames; 500 trades.
fn hostile_sim_config() -> SimConfig {
    SimConfig {
        exchange: Exchange::Binance,
        source: TradeSource::Synthetic { rate: 150.0 },
        huge_frame: Some(1_000_000),
        disconnect_every: Some(Duration::from_secs(2)),
        unsubscribed_every: Some(5),
        absurd_time_every: Some(20),
        malformed_ratio: 0.05,
        max_trades: Some(500),
        seed: 23,
        ..SimConfig::default()
    }
}

/// Sends SIGTERM to the binary and waits up to 15 s for it to exit: its exit status, or `None`
/// when it had to be killed.
fn terminate(mut child: std::process::Child) -> Option<std::process::ExitStatus> {
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let stop_by = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > stop_by {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The binary against a hostile simulator: a 1 MB garbage frame on every connection, foreign
/// pairs, absurd times. Its stderr stays small (excerpts, rate-limited lines), it keeps
/// streaming (every plausible trade once in Kafka), and the refusals are in `/metrics` by
/// reason, without a pair label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_a_huge_frame_as_an_excerpt_and_keeps_streaming() {
    let kafka = Kafka::shared();
    let topic = "trades-hostile-binary";
    kafka.create_topic(topic, PARTITIONS as u32).unwrap();
    let sim = exchange_sim::start(hostile_sim_config()).await.unwrap();
    let reader = Reader::start(&kafka.brokers(), topic);
    let metrics_port = candles_testkit::free_port();
    let stderr_path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let mut child = connector_binary()
        .args(["--exchange", "binance", "--topic", topic])
        .args(["--brokers", &kafka.brokers()])
        .args(["--ws-url", &sim.ws_url(), "--rest-url", &sim.rest_url()])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let wanted = || -> Vec<Trade> { sim.trades().into_iter().filter(plausible).collect() };
    let caught_up = wait_until(Instant::now() + Duration::from_secs(40), || {
        let published: Vec<Trade> = reader.records().iter().map(|r| r.trade).collect();
        sim.done() && compare(&wanted(), &published, ANY_START).is_ok()
    })
    .await;
    let alive = child.try_wait().unwrap().is_none();
    let metrics = candles_testkit::scrape_metrics(metrics_port);
    let _ = tokio::task::spawn_blocking(move || terminate(child)).await;
    let records = reader.stop();
    let connections = sim.connections();
    let truth = sim.trades();
    sim.stop().await;
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let published: Vec<Trade> = records.iter().map(|r| r.trade).collect();
    let wanted: Vec<Trade> = truth.iter().copied().filter(plausible).collect();
    let longest = stderr.lines().map(str::len).max().unwrap_or(0);
    println!(
        "hostile binary: {connections} connections (one 1 MB frame each), stderr {} bytes, longest line {longest}, \
         {} in Kafka of {} plausible",
        stderr.len(),
        records.len(),
        wanted.len()
    );
    assert!(alive, "the connector died:\n{stderr}");
    assert!(caught_up, "{:?}", compare(&wanted, &published, ANY_START));
    compare(&wanted, &published, ANY_START).unwrap();
    assert!(connections >= 2, "reconnects bring more huge frames");
    assert!(
        stderr.contains("huge garbage"),
        "the huge frame is logged (as an excerpt):\n{}",
        &stderr[..stderr.len().min(4000)]
    );
    assert!(
        longest < 2_000,
        "a log line of {longest} bytes: frames must be shown as excerpts"
    );
    assert!(
        stderr.len() < 200_000,
        "stderr {} bytes: logs must stay small",
        stderr.len()
    );
    for needle in [
        r#"connector_rejected_total{exchange="binance",reason="unsubscribed"}"#,
        r#"connector_rejected_total{exchange="binance",reason="implausible_time"}"#,
        r#"connector_rejected_messages_total{exchange="binance"}"#,
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from /metrics:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("XRP-USDT"),
        "no per-pair label for foreign pairs"
    );
}

#[test]
fn help_lists_the_input_bound_and_kafka_property_flags() {
    let out = connector_binary().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--max-trade-age", "CANDLES_MAX_TRADE_AGE"),
        ("--max-trade-lead", "CANDLES_MAX_TRADE_LEAD"),
        ("--kafka-property", "CANDLES_KAFKA_PROPERTIES"),
    ] {
        assert!(
            help.contains(flag) && help.contains(env),
            "{flag} / {env} missing:\n{help}"
        );
    }
    // An environment value with a secret is not shown by --help.
    let out = connector_binary()
        .arg("--help")
        .env("CANDLES_KAFKA_PROPERTIES", "sasl.password=hunter2")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));
}

/// Runs the binary with `args` (and a reachable-nothing broker) until it exits or 20 s pass;
/// returns (exit code, stderr).
fn run_binary_briefly(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = connector_binary();
    cmd.args(["--exchange", "binance", "--skip-pair-check"])
        .args([
            "--ws-url",
            "ws://127.0.0.1:1/ws",
            "--rest-url",
            "http://127.0.0.1:1",
        ])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stop_by = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < stop_by {
        std::thread::sleep(Duration::from_millis(50));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--kafka-property` reaches librdkafka: a value it refuses stops the start with an error
/// naming the property (flag or environment variable), bad syntax names the input, secrets
/// are never printed, and a valid property is accepted (the connector runs on).
#[test]
fn kafka_properties_reach_librdkafka_and_secrets_stay_hidden() {
    let kafka = Kafka::shared();
    let (code, err) = run_binary_briefly(
        &[
            "--brokers",
            &kafka.brokers(),
            "--kafka-property",
            "acks=sometimes",
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("acks") && err.contains("sometimes"), "{err}");

    let (code, err) = run_binary_briefly(
        &["--brokers", &kafka.brokers()],
        &[(
            "CANDLES_KAFKA_PROPERTIES",
            "sasl.password=hunter2,no.such.property=1",
        )],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no.such.property"), "{err}");
    assert!(!err.contains("hunter2"), "a secret was printed:\n{err}");

    let (code, err) = run_binary_briefly(&["--kafka-property", "client.id"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("\"client.id\"") && err.contains("key=value"),
        "{err}"
    );
    let (code, err) = run_binary_briefly(&["--kafka-property", "sasl.password:hunter2"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("hunter2"), "a secret was printed:\n{err}");

    // Valid: accepted, the connector starts and runs until stopped (killed here after 3 s).
    let mut child = connector_binary()
        .args(["--exchange", "binance", "--skip-pair-check"])
        .args([
            "--ws-url",
            "ws://127.0.0.1:1/ws",
            "--rest-url",
            "http://127.0.0.1:1",
        ])
        .args(["--brokers", &kafka.brokers()])
        .args(["--kafka-property", "client.id=candles-test-connector"])
        .args(["--kafka-property", "sasl.password=hunter2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let running = child.try_wait().unwrap().is_none();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(running, "a valid client.id must be accepted:\n{err}");
    assert!(
        err.contains("client.id=candles-test-connector")
            && err.contains("sasl.password=<redacted>"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "a secret was printed:\n{err}");
}

/// What one run against a simulator left: the ground truth, what reached Kafka, the figures.
struct Outcome {
    truth: Vec<Trade>,
    published: Vec<Trade>,
    start: Micros,
    figures: Snapshot,
    rate_limited: u64,
    violations: u64,
    rest_requests: u64,
}

/// Runs the connector against a simulator made from `sim_config` until the simulator is done
/// and everything is in Kafka (or `wait` passes), then stops both.
async fn run_to_kafka(sim_config: SimConfig, budget: Duration, wait: Duration) -> Outcome {
    logs();
    let (exchange, omit_split_trades) = (sim_config.exchange, sim_config.omit_split_trades);
    let kafka = Kafka::shared();
    let topic = format!("trades-{exchange}-{}", sim_config.seed);
    kafka.create_topic(&topic, PARTITIONS as u32).unwrap();
    let sim = exchange_sim::start(sim_config).await.unwrap();
    let mut config = connector_config(exchange, &sim);
    config.backfill_budget = budget;
    let start = config.start.unwrap();
    check_pairs(&config).await.unwrap();
    let counters = config.counters.clone();
    let sink = KafkaSink::new(&kafka.brokers(), &topic).unwrap();
    let reader = Reader::start(&kafka.brokers(), &topic);
    let (status, _status_rx) = watch::channel(ConnState::Connecting);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(config, sink.clone(), status, shutdown.clone()));
    let deadline = Instant::now() + wait;
    assert!(
        wait_until(deadline, || sim.done()).await,
        "the simulator did not finish"
    );
    let truth = sim.trades();
    let owed = if omit_split_trades {
        revealable(&truth)
    } else {
        truth.clone()
    };
    wait_until(deadline, || {
        let published: Vec<Trade> = reader.records().iter().map(|r| r.trade).collect();
        compare(&owed, &up_to_owed(&owed, &published), start).is_ok()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    sink.flush(Duration::from_secs(5)).await.unwrap();
    let published = reader.stop().iter().map(|r| r.trade).collect();
    let (rate_limited, violations) = (sim.rate_limited(), sim.rate_limit_violations());
    let rest_requests = sim.rest_requests();
    sim.stop().await;
    Outcome {
        truth,
        published,
        start,
        figures: counters.snapshot(),
        rate_limited,
        violations,
        rest_requests,
    }
}

/// The trades a connector can know it owes when the WebSocket leaves out split fills: all but a
/// pair's split fills (trades sharing their time with the pair's trade before them) after its
/// last trade sent on the WebSocket. No later trade reveals those as a gap (on the real
/// exchange the pair's next trade does; here the simulator stops at `max_trades`).
fn revealable(truth: &[Trade]) -> Vec<Trade> {
    let mut last_time: BTreeMap<Pair, Micros> = BTreeMap::new();
    let mut last_sent: BTreeMap<Pair, u64> = BTreeMap::new();
    for t in truth {
        if last_time.insert(t.pair, t.time) != Some(t.time) {
            last_sent.insert(t.pair, t.id);
        }
    }
    truth
        .iter()
        .filter(|t| last_sent.get(&t.pair).is_some_and(|&id| t.id <= id))
        .copied()
        .collect()
}

/// The trades of `published` up to the last id `owed` holds per pair (a trailing split fill
/// the connector published anyway is neither owed nor a fault).
fn up_to_owed(owed: &[Trade], published: &[Trade]) -> Vec<Trade> {
    let last: BTreeMap<Pair, u64> = owed.iter().map(|t| (t.pair, t.id)).collect();
    published
        .iter()
        .filter(|t| last.get(&t.pair).is_some_and(|&id| t.id <= id))
        .copied()
        .collect()
}

/// The (pair, id) of every trade in a simulator's `--trade-log` file.
fn trade_log(path: &std::path::Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                v["pair"].as_str().unwrap().to_string(),
                v["id"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Kraken's WebSocket leaves out split fills (krakenfx/api-go#36); a third or more of the
/// trades are such fills, so nearly every message reveals a gap, and Kraken's REST allows about
/// one call a second. Every trade still reaches Kafka, and the connector never asks while told
/// to wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_split_fills_missing_from_the_websocket_all_reach_kafka_within_the_rate_limit() {
    let log = std::env::temp_dir().join(format!("kraken-split-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let sim_config = SimConfig {
        exchange: Exchange::Kraken,
        pairs: Pair::defaults(),
        source: TradeSource::Synthetic { rate: 100.0 },
        rest_limit: true,
        split_ratio: 0.4,
        omit_split_trades: true,
        max_trades: Some(600),
        seed: 11,
        trade_log: Some(log.clone()),
        ..SimConfig::default()
    };
    let out = run_to_kafka(sim_config, Duration::from_secs(30), Duration::from_secs(60)).await;
    // A pair's split fills after its last WebSocket trade are not owed (see `revealable`).
    let owed = revealable(&out.truth);
    // Split fills: trades sharing their time with the pair's trade before them.
    let mut last_time: BTreeMap<Pair, Micros> = BTreeMap::new();
    let split = out
        .truth
        .iter()
        .filter(|t| last_time.insert(t.pair, t.time) == Some(t.time))
        .count();
    let logged = trade_log(&log);
    let _ = std::fs::remove_file(&log);
    let published: std::collections::HashSet<(String, u64)> = out
        .published
        .iter()
        .map(|t| (t.pair.to_string(), t.id))
        .collect();
    // The trade log is the ground truth; every trade made since the start is in Kafka.
    let truth_keys: Vec<(String, u64)> = out
        .truth
        .iter()
        .map(|t| (t.pair.to_string(), t.id))
        .collect();
    let missing: Vec<_> = owed
        .iter()
        .filter(|t| t.time >= out.start && !published.contains(&(t.pair.to_string(), t.id)))
        .map(|t| (t.pair, t.id))
        .collect();
    println!(
        "kraken split fills: {split} of {} trades; gaps {}, REST requests {}, backfilled {}, unfilled {}; sim rate-limited {}, violations {}",
        out.truth.len(),
        out.figures.gaps,
        out.rest_requests,
        out.figures.backfilled,
        out.figures.unfilled,
        out.rate_limited,
        out.violations
    );
    assert!(
        split * 3 >= out.truth.len(),
        "{split} split fills of {}",
        out.truth.len()
    );
    assert_eq!(logged, truth_keys, "the trade log has every trade");
    assert!(missing.is_empty(), "not published: {missing:?}");
    compare(&owed, &up_to_owed(&owed, &out.published), out.start).unwrap();
    assert!(
        out.figures.backfilled as usize >= split / 2,
        "{:?}",
        out.figures
    );
    assert_eq!(out.violations, 0, "asked again while told to wait");
    assert!(
        out.rest_requests < out.figures.gaps,
        "nearby gaps share requests: {} requests for {} gaps",
        out.rest_requests,
        out.figures.gaps
    );
}

/// Binance with its request-weight limit, a socket dropped every 2 s and trades skipped: every
/// trade reaches Kafka, and the connector is never banned (no 418).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_with_rest_limit_and_dropped_sockets_loses_nothing_and_is_never_banned() {
    let sim_config = SimConfig {
        rest_limit: true,
        drop_ratio: 0.1,
        seed: 12,
        ..sim_config(Exchange::Binance)
    };
    let out = run_to_kafka(sim_config, Duration::from_secs(30), Duration::from_secs(60)).await;
    println!(
        "binance: {} trades; gaps {}, backfilled {}, reconnects {}; sim rate-limited {}, violations {}",
        out.truth.len(),
        out.figures.gaps,
        out.figures.backfilled,
        out.figures.reconnects,
        out.rate_limited,
        out.violations
    );
    let compared = compare(&out.truth, &out.published, out.start).unwrap();
    assert!(compared >= out.truth.len() - 15, "compared {compared}");
    assert!(
        out.figures.reconnects >= 1 && out.figures.backfilled >= 1,
        "{:?}",
        out.figures
    );
    assert_eq!(
        out.violations, 0,
        "no 418: {} rate-limit answers",
        out.rate_limited
    );
}

/// Kraken names DOGE `XDG` in REST: the listing check asks for `XDGUSDT` and a DOGE-USDT
/// stream gets its trades.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_doge_passes_the_listing_check_under_its_kraken_name() {
    logs();
    let doge = Pair::parse("DOGE-USDT").unwrap();
    let sim = exchange_sim::start(SimConfig {
        exchange: Exchange::Kraken,
        pairs: vec![doge],
        source: TradeSource::Synthetic { rate: 50.0 },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut config = connector_config(Exchange::Kraken, &sim);
    config.pairs = vec![doge];
    check_pairs(&config).await.unwrap();
    let (tx, mut trades) = tokio::sync::mpsc::channel(1024);
    let (status, _status_rx) = watch::channel(ConnState::Connecting);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(config, ChannelSink(tx), status, shutdown.clone()));
    let first = tokio::time::timeout(Duration::from_secs(10), trades.recv())
        .await
        .expect("a DOGE-USDT trade within 10 s")
        .expect("the stream is open");
    assert_eq!(first.pair, doge);
    shutdown.cancel();
    task.await.unwrap().unwrap();
    sim.stop().await;
}

/// A client paced faster than the exchange allows (as two connectors on one IP would be) still
/// never asks while told to wait: Kraken's `EGeneral:Too many requests` and Coinbase's 429 hold
/// every request off, and each request is answered in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_hold_requests_off_and_are_never_ignored() {
    logs();
    for (exchange, path, requests) in [
        (Exchange::Kraken, "/0/public/AssetPairs?pair=XBTUSDT", 6),
        (Exchange::Coinbase, "/products", 30),
    ] {
        let sim = exchange_sim::start(SimConfig {
            exchange,
            rest_limit: true,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let mut config = connector_config(exchange, &sim);
        config.rest_pacer = Arc::new(candles_connector::pacer::Pacer::new(
            candles_connector::pacer::RestLimit {
                burst: 50.0,
                per_second: 50.0,
            },
        ));
        let client = candles_connector::rest::RestClient::new(&config).unwrap();
        let url = format!("{}{path}", sim.rest_url());
        for i in 0..requests {
            let (status, body) = client.get(&url).await.unwrap();
            assert_eq!(status, 200, "{exchange} request {i}: {body}");
            assert!(!body.contains("Too many"), "{body}");
        }
        println!(
            "{exchange}: {requests} requests, {} rate-limit answers, {} violations",
            sim.rate_limited(),
            sim.rate_limit_violations()
        );
        assert!(sim.rate_limited() >= 1, "{exchange}: the limit was reached");
        assert_eq!(sim.rate_limit_violations(), 0, "{exchange}");
        sim.stop().await;
    }
}
