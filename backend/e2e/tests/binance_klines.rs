//! Issue 13, through the full stack: Binance's real XRPETH trades of 2019-10-11..13
//! (`testdata/reference-data/binance-xrpeth/`), turned into Binance WebSocket `@trade` messages,
//! replayed by `exchange-sim --replay --speed max` → `candles-connector` (Binance, XRP-ETH) →
//! Apache Kafka → one `candles-service --clock event --intervals 1m,5m` → Redis → gRPC clients,
//! one per interval. Every final Binance and composite candle (one exchange: the same values) of
//! both intervals, from one stream of trades, equals Binance's own kline of that window: open,
//! high, low, close and volume as exact decimals, empty minutes (flat, volume 0) included. Windows
//! still open at the end under the event clock (ending after the last trade's time minus the
//! grace) are not judged; every other kline must be there.
//!
//! Needs Apache Kafka's jars and `redis-server` (scripts/install-test-deps.sh). Logs are kept
//! under `$TMPDIR/candles-e2e/` when it fails.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use candles_core::time::Duration as CoreDuration;
use candles_core::{Exchange, Interval, Micros};
use candles_e2e::client::{Collector, Subscription};
use candles_e2e::reference::{self, Kline};
use candles_e2e::stack::{Stack, StackConfig};
use std::time::{Duration, Instant};

/// The service's grace (event time): a window is final once a trade this much past its end
/// was seen.
const GRACE: &str = "2s";

/// The sources judged: Binance's own series and the composite (of one exchange).
const SOURCES: [&str; 2] = ["binance", "composite"];

/// One interval under test: its name, its Binance klines and its client.
struct Judged {
    name: &'static str,
    interval: Interval,
    klines: Vec<Kline>,
    client: Collector,
}

/// The stack: Binance only, one service instance building 1m and 5m by event time, everything
/// accepting trades from 2019 (`--max-trade-age 3000d`), history deep enough for every minute.
fn config(replay: std::path::PathBuf, trades: u64) -> StackConfig {
    let mut c = StackConfig::new("binance-xrpeth-klines");
    c.exchanges = vec![Exchange::Binance];
    c.instances = 1;
    c.pairs = "xrpeth".into();
    c.replay = Some(replay);
    c.max_trades = trades;
    c.intervals = Some("1m,5m".into());
    c.clock = "event".into();
    c.grace = Some(GRACE.into());
    c.service_args = ["--max-trade-age", "3000d", "--history-max", "4000"]
        .map(String::from)
        .to_vec();
    c.connector_args = ["--max-trade-age", "3000d"].map(String::from).to_vec();
    c
}

/// A client of `url` for one interval's final XRP-ETH candles: full history, then live finals.
fn client(rt: &tokio::runtime::Runtime, url: &str, interval: Interval) -> Collector {
    let sub = Subscription {
        pairs: vec!["xrpeth".into()],
        sources: SOURCES.map(String::from).to_vec(),
        history: 4000,
        live_updates: false,
        interval: Some(interval),
        verifications: false,
    };
    Collector::start(
        rt.handle(),
        &format!("client-{interval}"),
        vec![url.to_string()],
        sub,
    )
}

/// Windows of `klines` that end at or before `closed_by`, times the sources: the finals owed.
fn owed(j: &Judged, closed_by: Micros) -> usize {
    let closed = j
        .klines
        .iter()
        .filter(|k| j.interval.window_end(k.start).0 <= closed_by.0)
        .count();
    closed * SOURCES.len()
}

/// Writes the replay file (the trades as `@trade` messages) into a fresh run directory, starts
/// the stack and its feeds, and waits until the simulator has replayed every trade. Returns the
/// stack and the event time by which a window is final (the last trade's time minus the grace).
fn replayed_stack() -> (Stack, Micros) {
    let csv = reference::read(reference::TRADES_FILE).unwrap();
    let (messages, last_trade) = reference::trade_messages(&csv).unwrap();
    let trades = messages.lines().count() as u64;
    assert_eq!(trades, 12_477, "the README's trade count");
    let closed_by = Micros(last_trade.0 - CoreDuration::parse(GRACE).unwrap().0);
    let run_dir = StackConfig::new("binance-xrpeth-klines").run_dir;
    std::fs::create_dir_all(&run_dir).unwrap();
    let replay = run_dir.join("binance-xrpeth-trades.jsonl");
    std::fs::write(&replay, messages).unwrap();
    let mut config = config(replay, trades);
    config.run_dir = run_dir;
    let mut stack = Stack::start(config).unwrap_or_else(|e| panic!("starting the stack: {e:#}"));
    let dir = stack.log_dir().display().to_string();
    eprintln!("stack up; logs in {dir}");
    stack.start_feeds().unwrap();
    stack
        .wait_sims_done(Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("the replay did not finish: {e:#}; logs in {dir}"));
    (stack, closed_by)
}

/// One client per interval (1m, 5m) of the service at `url`, with Binance's klines of it.
fn start_clients(rt: &tokio::runtime::Runtime, url: &str) -> Vec<Judged> {
    let judged: Vec<Judged> = [
        ("1m", reference::KLINES_1M_FILE),
        ("5m", reference::KLINES_5M_FILE),
    ]
    .into_iter()
    .map(|(name, file)| {
        let interval = Interval::parse(name).unwrap();
        Judged {
            name,
            interval,
            klines: reference::klines(&reference::read(file).unwrap()).unwrap(),
            client: client(rt, url, interval),
        }
    })
    .collect();
    assert_eq!(judged[0].klines.len(), 3_560, "the README's 1m kline count");
    assert_eq!(judged[1].klines.len(), 712, "the README's 5m kline count");
    judged
}

/// Waits (≤ 30 s) until each client holds as many finals as there are closed klines, then 1 s
/// more (so duplicates sent late are seen too); returns whether all is right and the report.
fn judge_all(judged: &[Judged], closed_by: Micros) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && judged
            .iter()
            .any(|j| j.client.received().finals.len() < owed(j, closed_by))
    {
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(1));
    let mut clean = true;
    let mut text = String::new();
    for j in judged {
        let received = j.client.received();
        let reports =
            reference::judge(&j.klines, j.interval, closed_by, &received.finals, &SOURCES);
        for (source, r) in &reports {
            clean &= r.is_clean();
            text += &format!("{} {source}: {}\n", j.name, r.describe());
        }
        text += &format!("{} client streams: {:?}\n", j.name, received.events);
    }
    (clean, text)
}

#[test]
fn real_binance_trades_give_binances_own_1m_and_5m_klines_through_the_full_stack() {
    let started = Instant::now();
    let (stack, closed_by) = replayed_stack();
    let dir = stack.log_dir().to_path_buf();
    eprintln!("replay done after {:?}", started.elapsed());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let judged = start_clients(&rt, &stack.grpc_urls()[0]);
    let (clean, text) = judge_all(&judged, closed_by);
    let counters = stack.counters(&["trades_consumed", "late_trades", "candles_published", "gap"]);
    eprintln!(
        "{text}counters:\n  {}\nfinished in {:?}",
        counters.join("\n  "),
        started.elapsed()
    );
    drop(judged);
    drop(stack);
    if clean {
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(clean, "{text}logs: {}", dir.display());
}
