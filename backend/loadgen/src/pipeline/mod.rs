//! `candles-loadgen pipeline`: the whole stack at rising trade rates, measured from the clients.
//!
//! For each rate a fresh stack is started (broker, Redis, service instances, then one simulator
//! and one connector per exchange, each simulator at `rate / exchanges` trades/s). One client per
//! service instance subscribes (composite and per-exchange candles of every pair, live updates
//! on) before the feeds start. When the first live update has arrived plus `--warmup`, the measured interval
//! `[T0, T1]` of `--duration` begins; CPU is read from `/proc` at T0 and T1. After T1 the stack
//! runs for grace + interval + 2 s more so the last measured windows are finalized, then stops.
//!
//! **Loss.** Judged windows are the (pair, window) series windows lying wholly inside
//! `[T0, T1]`. Expected trades per window = the trades in the simulators' trade logs whose
//! `time_us` falls in the window. Received = the `trades` field of the final composite candle a
//! client got for the window. Lost = Σ max(0, expected − received) (a missing final loses all its
//! trades); excess = Σ max(0, received − expected). A rate is sustained when every client shows
//! lost = excess = 0. The same accounting per exchange (that exchange's own candles against its
//! simulator's log) locates a loss. After the feeds stop, the connectors' acknowledged-trade
//! counters are compared with the records the broker holds (Σ partition watermarks).
//!
//! **Finalized latency** = receive time of a final candle − (window end + grace).
//! **Delivery** = receive time − the candle's `published_at` (stamped by the service when it
//! finalized and published a final, or published a live update): the service → Redis → hub →
//! gRPC → client path alone, without the wait for the broker.
//!
//! **Live latency** = receive time of a live update counting n trades − the `time_us` of the
//! window's n-th trade in send order across all simulators. The simulators stamp `time_us` from
//! the wall clock when they generate a batch (every 5 ms), right before it is written to the
//! WebSockets, so this is the latency of the newest trade the update includes, from leaving the
//! simulator to arriving at the client. It includes the service's `--update-interval` throttle
//! only when a trade waited for it. All processes share one machine and one clock, so no clock
//! offset enters; the 5 ms batching adds ≤ 5 ms of send-side skew.

mod analysis;
mod report;

pub use analysis::BucketSummary;

use crate::client::{self, Progress, Recording};
use crate::procstat::{self, ProcUsage};
use crate::stats::{LossReport, Summary};
use crate::truth;
use crate::view::{self, Programs, TopicCounts};
use anyhow::{Context as _, Result};
use candles_core::Interval;
use candles_testkit::stack::Stack;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Settings of a pipeline run.
#[derive(Clone, Debug)]
pub struct PipelineSettings {
    /// Total trades/s over all simulators, one run each.
    pub rates: Vec<f64>,
    /// Measured interval per rate.
    pub duration: Duration,
    /// Time after the first live update before measuring.
    pub warmup: Duration,
    /// Exchanges to simulate.
    pub exchanges: Vec<String>,
    /// Pairs.
    pub pairs: Vec<String>,
    /// Service instances.
    pub instances: usize,
    /// Candle interval (text and value).
    pub interval: (String, Interval),
    /// Grace (text and µs).
    pub grace: (String, i64),
    /// Live update throttle.
    pub update_interval: String,
    /// Topic partitions.
    pub partitions: u32,
    /// Output directory (results and run logs).
    pub out: PathBuf,
    /// Keep trade logs after analysis.
    pub keep_trade_logs: bool,
    /// Read the whole trades topic after each run and account the broker's contents too.
    pub verify_kafka: bool,
}

/// Result of one rate.
#[derive(Clone, Debug, Serialize)]
pub struct RateResult {
    /// Requested total trades/s.
    pub target_rate: f64,
    /// Trades/s the simulators generated in the judged windows.
    pub generated_rate: f64,
    /// Trades/s counted in final candles at the worst client.
    pub delivered_rate: f64,
    /// Seconds covered by the judged windows.
    pub judged_seconds: f64,
    /// Loss at the worst client (composite candles).
    pub loss: LossReport,
    /// Loss per exchange (that exchange's own candles), at the worst client.
    pub loss_per_exchange: BTreeMap<String, LossReport>,
    /// Whether every client got every trade and nothing else.
    pub lossless: bool,
    /// Final candle latency after window end + grace, ms (all clients).
    pub final_latency_ms: Summary,
    /// Live update latency after the newest included trade left its simulator, ms (all clients).
    pub live_latency_ms: Summary,
    /// Final candle at the client after the service finalized and published it (its
    /// `published_at`), ms (all clients).
    pub final_delivery_ms: Summary,
    /// Live update at the client after the service published it, ms (all clients).
    pub live_delivery_ms: Summary,
    /// CPU and memory per process over the measured interval.
    pub processes: Vec<ProcUsage>,
    /// Errors of the client streams, if any.
    pub client_errors: Vec<String>,
    /// Where the logs are.
    pub run_dir: String,
    /// `/proc/loadavg` when the measured interval began (the machine may be shared).
    pub loadavg_at_start: String,
    /// Fault counters of every process at the end (late trades, gaps, lag, drops, ...).
    pub counters: BTreeMap<String, f64>,
    /// Where the final latency goes inside the services (whole run, bucket bounds).
    pub service_histograms: BTreeMap<String, BucketSummary>,
    /// The first judged windows whose final count differs: `pair start_us expected received`.
    pub wrong_windows: Vec<String>,
    /// Σ `connector_trades_published_total` (acknowledged by the broker) after the feeds stopped.
    pub published_by_connectors: f64,
    /// Σ (high − low watermark) of the trades topic at the same moment.
    pub records_in_kafka: Option<i64>,
    /// With `--verify-kafka`: the simulators' trades against the unique trades the broker holds,
    /// over the judged windows (composite series).
    pub kafka_vs_generated: Option<LossReport>,
    /// With `--verify-kafka`: the broker's unique trades against the worst client's finals.
    pub client_vs_kafka: Option<LossReport>,
    /// With `--verify-kafka`: duplicate records in the topic (same exchange, pair and id).
    pub kafka_duplicates: Option<u64>,
    /// With `--verify-kafka`: what a plain consumer tailing the topic during the run received,
    /// against what the topic held afterwards (judged composite windows).
    pub tail_vs_kafka: Option<LossReport>,
    /// With `--verify-kafka`: every window (judged or not) where the topic's unique trades differ
    /// from the generated ones, with its start relative to T0.
    pub kafka_window_gaps: Vec<String>,
}

/// Runs every rate and writes `pipeline.json` and `pipeline.csv` to `settings.out`.
pub fn run(
    rt: &tokio::runtime::Runtime,
    settings: &PipelineSettings,
    programs: &Programs,
) -> Result<Vec<RateResult>> {
    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("cannot create {}", settings.out.display()))?;
    let mut results = Vec::new();
    for &rate in &settings.rates {
        println!(
            "== pipeline: {rate} trades/s total ({} exchanges × {:.0}/s), {} instance(s), {:?} measured",
            settings.exchanges.len(),
            rate / settings.exchanges.len() as f64,
            settings.instances,
            settings.duration
        );
        let result = run_rate(rt, settings, programs, rate)?;
        report::print_result(&result);
        results.push(result);
        report::write_results(settings, &results)?;
    }
    Ok(results)
}

/// What [`measure`] saw over the measured interval `[t0, t1]` (µs since the epoch).
struct Measured {
    t0: i64,
    t1: i64,
    processes: Vec<ProcUsage>,
    loadavg: String,
}

/// What the broker holds after the feeds stopped.
struct AfterFeeds {
    counters: BTreeMap<String, f64>,
    records_in_kafka: Option<i64>,
    topic: Option<TopicCounts>,
}

fn run_rate(
    rt: &tokio::runtime::Runtime,
    s: &PipelineSettings,
    programs: &Programs,
    rate: f64,
) -> Result<RateResult> {
    let run_dir = s.out.join(format!("run-{rate}"));
    let _ = std::fs::remove_dir_all(&run_dir);
    let mut config = programs.config(&run_dir, &s.exchanges, &s.pairs)?;
    config.rate = rate / s.exchanges.len() as f64;
    config.instances = s.instances;
    config.interval = s.interval.0.clone();
    config.grace = Some(s.grace.0.clone());
    config.update_interval = s.update_interval.clone();
    config.partitions = s.partitions;
    config.trade_logs = true;
    let mut stack = Stack::start(config)?;
    println!("   stack up (logs in {})", run_dir.display());

    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = subscribe_all(rt, s, &stack.grpc_urls(), &stop_rx, &progress)?;
    let tail_stop = Arc::new(AtomicBool::new(false));
    let tail = match s.verify_kafka {
        true => Some(view::tail_trades_topic(
            &stack,
            s.interval.1,
            tail_stop.clone(),
        )?),
        false => None,
    };
    stack.start_feeds()?;
    let measured = measure(&mut stack, s, &progress)?;
    let drain =
        Duration::from_micros((s.grace.1 + s.interval.1.micros()) as u64) + Duration::from_secs(2);
    println!("   measured; draining {drain:?} for the last finals");
    std::thread::sleep(drain);
    let _ = stop_tx.send(true);
    let recordings: Vec<Recording> = tasks
        .into_iter()
        .map(|t| rt.block_on(t).unwrap_or_default())
        .collect();
    let after = after_feeds(&mut stack, s);
    tail_stop.store(true, Ordering::Relaxed);
    let tail = tail.and_then(|t| t.join().ok());
    let logs: Vec<PathBuf> = stack
        .sims()
        .iter()
        .filter_map(|x| x.trade_log.clone())
        .collect();
    drop(stack);

    let times = read_truth(s, &logs)?;
    report::write_finals_csv(&run_dir.join("finals.csv"), &recordings);
    let (t0, t1) = (measured.t0, measured.t1);
    let mut r = analysis::analyze(s, rate, (t0, t1), &times, &recordings, measured.processes);
    r.run_dir = run_dir.display().to_string();
    r.loadavg_at_start = measured.loadavg;
    analysis::add_counters(&mut r, after.counters, after.records_in_kafka);
    if let Some(topic) = after.topic {
        analysis::account_kafka(&mut r, s, (t0, t1), &times, &recordings, &topic, tail);
    }
    Ok(r)
}

/// One client per service instance, subscribed (composite and every exchange's candles of every
/// pair, live updates on) and recording until `stop` turns true.
fn subscribe_all(
    rt: &tokio::runtime::Runtime,
    s: &PipelineSettings,
    urls: &[String],
    stop: &tokio::sync::watch::Receiver<bool>,
    progress: &Arc<Progress>,
) -> Result<Vec<tokio::task::JoinHandle<Recording>>> {
    let sources: Vec<String> = std::iter::once("composite".to_string())
        .chain(s.exchanges.iter().cloned())
        .collect();
    let mut tasks = Vec::new();
    for url in urls {
        let stream = rt.block_on(async {
            let mut c = client::connect(url).await?;
            client::subscribe(&mut c, &s.pairs, &sources, true).await
        })?;
        tasks.push(rt.spawn(client::record(stream, stop.clone(), progress.clone())));
    }
    Ok(tasks)
}

/// The send times of every generated trade, from the simulators' trade logs (deleted after
/// reading unless `--keep-trade-logs`).
fn read_truth(s: &PipelineSettings, logs: &[PathBuf]) -> Result<truth::SendTimes> {
    println!("   reading trade logs");
    let mut times = truth::SendTimes::new();
    for log in logs {
        truth::read_trade_log(log, s.interval.1, &mut times)?;
        if !s.keep_trade_logs {
            let _ = std::fs::remove_file(log);
        }
    }
    truth::finish(&mut times);
    Ok(times)
}

/// Waits for the first live update and the warm-up, then measures for `--duration`: CPU and
/// memory of every process, and the clients' progress once a second.
fn measure(stack: &mut Stack, s: &PipelineSettings, progress: &Progress) -> Result<Measured> {
    println!("   feeds up; waiting for the first live update");
    view::wait_until(stack, "live candle", || {
        progress.live.load(Ordering::Relaxed) > 0
    })?;
    std::thread::sleep(s.warmup);
    let ticks = procstat::clock_ticks_per_second();
    let mut watches = view::watches(stack);
    watches.push(procstat::Watch::new("candles-loadgen", std::process::id()));
    for w in &mut watches {
        w.begin();
    }
    let t0 = candles_core::Micros::now().0;
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("   measuring; load average {}", loadavg.trim());
    let started = Instant::now();
    while started.elapsed() < s.duration {
        std::thread::sleep(Duration::from_secs(1).min(s.duration - started.elapsed()));
        stack.check_running()?;
        println!(
            "   {:>4.0}s  live updates {:>8}  finals {:>6}",
            started.elapsed().as_secs_f64(),
            progress.live.load(Ordering::Relaxed),
            progress.finals.load(Ordering::Relaxed)
        );
    }
    Ok(Measured {
        t0,
        t1: candles_core::Micros::now().0,
        processes: watches.iter().map(|w| w.end(ticks)).collect(),
        loadavg: loadavg.trim().to_string(),
    })
}

/// Stops the simulators, lets the connectors deliver what they hold, then reads the counters,
/// the records the broker holds and (with `--verify-kafka`) the whole topic.
fn after_feeds(stack: &mut Stack, s: &PipelineSettings) -> AfterFeeds {
    stack.stop_sims();
    std::thread::sleep(Duration::from_secs(3));
    let counters = stack.counters_by_process(analysis::COUNTERS);
    let records_in_kafka = stack
        .records_in_kafka()
        .inspect_err(|e| println!("   cannot read the topic's watermarks: {e:#}"))
        .ok();
    let topic = s.verify_kafka.then(|| {
        println!("   reading the whole trades topic");
        view::read_trades_topic(stack, s.interval.1, Duration::from_secs(120))
            .inspect(|t| {
                println!(
                    "   topic: {} records, {} duplicates, {} undecodable, complete {}",
                    t.records, t.duplicates, t.undecodable, t.complete
                )
            })
            .inspect_err(|e| println!("   cannot read the trades topic: {e:#}"))
            .ok()
    });
    AfterFeeds {
        counters,
        records_in_kafka,
        topic: topic.flatten(),
    }
}
