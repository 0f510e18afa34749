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

use crate::client::{self, Progress, Recording};
use crate::procstat::{self, ProcUsage};
use crate::stack::{Binaries, Stack, StackOptions};
use crate::stats::{self, LossReport, Summary, WindowKey};
use crate::truth;
use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
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
    /// Candle interval (text and µs).
    pub interval: (String, i64),
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
    bins: &Binaries,
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
        let result = run_rate(rt, settings, bins, rate)?;
        print_result(&result);
        results.push(result);
        write_results(settings, &results)?;
    }
    Ok(results)
}

fn run_rate(
    rt: &tokio::runtime::Runtime,
    s: &PipelineSettings,
    bins: &Binaries,
    rate: f64,
) -> Result<RateResult> {
    let run_dir = s.out.join(format!("run-{rate}"));
    let _ = std::fs::remove_dir_all(&run_dir);
    let options = StackOptions {
        exchanges: s.exchanges.clone(),
        rate_per_sim: rate / s.exchanges.len() as f64,
        pairs: s.pairs.join(","),
        instances: s.instances,
        interval: s.interval.0.clone(),
        grace: s.grace.0.clone(),
        update_interval: s.update_interval.clone(),
        partitions: s.partitions,
        trade_logs: true,
        run_dir: run_dir.clone(),
    };
    let mut stack = Stack::start(options, bins.clone())?;
    println!("   stack up (logs in {})", run_dir.display());

    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for &port in &stack.grpc_ports {
        let url = format!("http://127.0.0.1:{port}");
        let pairs = s.pairs.clone();
        let sources: Vec<String> = std::iter::once("composite".to_string())
            .chain(s.exchanges.iter().cloned())
            .collect();
        let stream = rt.block_on(async {
            let mut c = client::connect(&url).await?;
            client::subscribe(&mut c, &pairs, &sources, true).await
        })?;
        tasks.push(rt.spawn(client::record(stream, stop_rx.clone(), progress.clone())));
    }
    let tail_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tail = if s.verify_kafka {
        Some(stack.tail_trades_topic(s.interval.1, tail_stop.clone())?)
    } else {
        None
    };
    stack.start_feeds()?;
    println!("   feeds up; waiting for the first live update");
    let waited = Instant::now();
    while progress.live.load(Ordering::Relaxed) == 0 {
        stack.check_running()?;
        if waited.elapsed() > Duration::from_secs(60) {
            bail!(
                "no live candle within 60 s of starting the feeds; logs in {}",
                run_dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(s.warmup);

    let ticks = procstat::clock_ticks_per_second();
    let mut watches = stack.watches();
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
    let t1 = candles_core::Micros::now().0;
    let processes: Vec<ProcUsage> = watches.iter().map(|w| w.end(ticks)).collect();
    let drain = Duration::from_micros((s.grace.1 + s.interval.1) as u64) + Duration::from_secs(2);
    println!("   measured; draining {drain:?} for the last finals");
    std::thread::sleep(drain);
    let _ = stop_tx.send(true);
    let recordings: Vec<Recording> = tasks
        .into_iter()
        .map(|t| rt.block_on(t).unwrap_or_default())
        .collect();
    // Stop the sources, let the connectors deliver what they hold, then compare what they
    // published with what the broker holds.
    stack.stop_sims();
    std::thread::sleep(Duration::from_secs(3));
    let counters = stack.counters(COUNTERS);
    let kafka_records = match stack.trades_in_kafka() {
        Ok(n) => Some(n),
        Err(e) => {
            println!("   cannot read the topic's watermarks: {e:#}");
            None
        }
    };
    let topic = if s.verify_kafka {
        println!("   reading the whole trades topic");
        match stack.read_trades_topic(s.interval.1, Duration::from_secs(120)) {
            Ok(t) => {
                println!(
                    "   topic: {} records, {} duplicates, {} undecodable, complete {}",
                    t.records, t.duplicates, t.undecodable, t.complete
                );
                Some(t)
            }
            Err(e) => {
                println!("   cannot read the trades topic: {e:#}");
                None
            }
        }
    } else {
        None
    };
    tail_stop.store(true, Ordering::Relaxed);
    let tail = tail.and_then(|t| t.join().ok());
    let logs = stack.trade_logs.clone();
    drop(stack);

    println!("   reading trade logs");
    let mut times = truth::SendTimes::new();
    for log in &logs {
        truth::read_trade_log(&log.path, s.interval.1, &mut times)?;
        if !s.keep_trade_logs {
            let _ = std::fs::remove_file(&log.path);
        }
    }
    truth::finish(&mut times);
    write_finals_csv(&run_dir.join("finals.csv"), &recordings);
    let mut r = analyze(s, rate, t0, t1, &times, &recordings, processes, run_dir);
    r.loadavg_at_start = loadavg.trim().to_string();
    r.published_by_connectors = counters
        .iter()
        .filter(|(k, _)| k.contains("connector_trades_published_total"))
        .map(|(_, v)| *v)
        .sum();
    r.records_in_kafka = kafka_records;
    println!(
        "   connectors published {} trades; the trades topic holds {:?} records",
        r.published_by_connectors, r.records_in_kafka
    );
    r.service_histograms = service_histograms(&counters);
    r.counters = counters;
    if let Some(t) = topic {
        let iv = s.interval.1;
        let (from, to) = ((t0 + iv - 1).div_euclid(iv) * iv, t1.div_euclid(iv) * iv);
        let judged =
            |k: &WindowKey| stats::in_measured_range(k.1, iv, from, to) && !k.0.contains('/');
        let expected: BTreeMap<WindowKey, u64> = times
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect();
        let vs_gen = stats::account(&expected, &t.unique, judged);
        let mut worst: Option<LossReport> = None;
        for rec in &recordings {
            let finals: BTreeMap<WindowKey, u64> = rec
                .candles
                .iter()
                .filter(|c| c.is_final && c.source == "composite")
                .map(|c| ((c.pair.clone(), c.start_us), c.trades))
                .collect();
            let l = stats::account(&t.unique, &finals, judged);
            if worst
                .as_ref()
                .is_none_or(|w| l.lost + l.excess > w.lost + w.excess)
            {
                worst = Some(l);
            }
        }
        println!(
            "   judged windows: generated {} / in Kafka {} (missing {}) / in finals {:?}",
            vs_gen.expected,
            vs_gen.received,
            vs_gen.lost,
            worst.as_ref().map(|w| (w.received, w.lost, w.excess))
        );
        // Every window, judged or not: where (relative to T0) the broker lacks generated trades.
        let mut gaps = Vec::new();
        for (k, &want) in expected.iter().filter(|(k, _)| !k.0.contains('/')) {
            let have = t.unique.get(k).copied().unwrap_or(0);
            if have != want {
                gaps.push(format!(
                    "{} at T0{:+.0}s: generated {want}, in Kafka {have}",
                    k.0,
                    (k.1 - t0) as f64 / 1e6
                ));
            }
        }
        for g in gaps.iter().take(12) {
            println!("   topic window: {g}");
        }
        r.kafka_window_gaps = gaps;
        if let Some(tail) = &tail {
            let l = stats::account(&t.unique, &tail.unique, judged);
            println!(
                "   tailing consumer, judged windows: in topic {} / handed to the tail {} (short {}, extra {})",
                l.expected, l.received, l.lost, l.excess
            );
            r.tail_vs_kafka = Some(l);
        }
        r.kafka_vs_generated = Some(vs_gen);
        r.client_vs_kafka = worst;
        r.kafka_duplicates = Some(t.duplicates);
    }
    Ok(r)
}

/// Every final candle each client received, one line each (`client,pair,source,start_us,
/// published_us,recv_us`), for looking into a latency figure.
fn write_finals_csv(path: &std::path::Path, recordings: &[Recording]) {
    let mut out = String::from("client,pair,source,start_us,published_us,recv_us\n");
    for (i, rec) in recordings.iter().enumerate() {
        for c in rec.candles.iter().filter(|c| c.is_final) {
            let published = c.published_us.map(|p| p.to_string()).unwrap_or_default();
            out.push_str(&format!(
                "{i},{},{},{},{published},{}\n",
                c.pair, c.source, c.start_us, c.recv_us
            ));
        }
    }
    if let Err(e) = std::fs::write(path, out) {
        println!("   cannot write {}: {e}", path.display());
    }
}

#[allow(clippy::too_many_arguments)]
fn analyze(
    s: &PipelineSettings,
    rate: f64,
    t0: i64,
    t1: i64,
    times: &truth::SendTimes,
    recordings: &[Recording],
    processes: Vec<ProcUsage>,
    run_dir: PathBuf,
) -> RateResult {
    let iv = s.interval.1;
    let from = (t0 + iv - 1).div_euclid(iv) * iv;
    let to = t1.div_euclid(iv) * iv;
    let judged = |k: &WindowKey| stats::in_measured_range(k.1, iv, from, to);
    let expected: BTreeMap<WindowKey, u64> = times
        .iter()
        .map(|(k, v)| (k.clone(), v.len() as u64))
        .collect();
    let mut worst: Option<LossReport> = None;
    let mut finals_ms = Vec::new();
    let mut live_ms = Vec::new();
    let mut final_delivery_ms = Vec::new();
    let mut live_delivery_ms = Vec::new();
    let mut errors = Vec::new();
    let mut wrong_windows = Vec::new();
    let mut per_exchange: BTreeMap<String, LossReport> = BTreeMap::new();
    for rec in recordings {
        let mut received = BTreeMap::new();
        for c in &rec.candles {
            let composite = c.source == "composite";
            let series = if composite {
                c.pair.clone()
            } else {
                truth::exchange_series(&c.pair, &c.source)
            };
            let key = (series, c.start_us);
            if !judged(&key) {
                continue;
            }
            if composite && let Some(published) = c.published_us {
                let delivery = (c.recv_us - published) as f64 / 1000.0;
                if c.is_final {
                    final_delivery_ms.push(delivery);
                } else {
                    live_delivery_ms.push(delivery);
                }
            }
            if c.is_final {
                received.insert(key, c.trades);
                if composite {
                    finals_ms.push((c.recv_us - (c.end_us + s.grace.1)) as f64 / 1000.0);
                }
            } else if composite
                && let Some(sent) = times.get(&key)
                && let Some(us) = stats::live_latency_us(sent, c.trades, c.recv_us)
            {
                live_ms.push(us as f64 / 1000.0);
            }
        }
        for (key, want) in expected.iter().filter(|(k, _)| judged(k)) {
            let got = received.get(key);
            if got != Some(want) && wrong_windows.len() < 40 {
                wrong_windows.push(format!(
                    "{} {} expected {want} received {got:?}",
                    key.0, key.1
                ));
            }
        }
        for ex in &s.exchanges {
            let suffix = format!("/{ex}");
            let r = stats::account(&expected, &received, |k| {
                judged(k) && k.0.ends_with(&suffix)
            });
            let e = per_exchange.entry(ex.clone()).or_insert_with(|| r.clone());
            if r.lost + r.excess > e.lost + e.excess {
                *e = r;
            }
        }
        let loss = stats::account(&expected, &received, |k| judged(k) && !k.0.contains('/'));
        if worst
            .as_ref()
            .is_none_or(|w| loss.lost + loss.excess > w.lost + w.excess)
        {
            worst = Some(loss);
        }
        errors.extend(rec.error.clone());
    }
    let loss = worst.unwrap_or_default();
    let secs = ((to - from).max(0) as f64) / 1e6;
    let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    RateResult {
        target_rate: rate,
        generated_rate: per_s(loss.expected),
        delivered_rate: per_s(loss.received.min(loss.expected)),
        judged_seconds: secs,
        lossless: loss.is_lossless() && !recordings.is_empty(),
        loss,
        loss_per_exchange: per_exchange,
        final_latency_ms: Summary::of(finals_ms),
        live_latency_ms: Summary::of(live_ms),
        final_delivery_ms: Summary::of(final_delivery_ms),
        live_delivery_ms: Summary::of(live_delivery_ms),
        processes,
        client_errors: errors,
        run_dir: run_dir.display().to_string(),
        loadavg_at_start: String::new(),
        counters: BTreeMap::new(),
        service_histograms: BTreeMap::new(),
        wrong_windows,
        published_by_connectors: 0.0,
        records_in_kafka: None,
        kafka_vs_generated: None,
        client_vs_kafka: None,
        kafka_duplicates: None,
        kafka_window_gaps: Vec::new(),
        tail_vs_kafka: None,
    }
}

/// Metric name fragments worth reporting after a run.
const COUNTERS: &[&str] = &[
    "late",
    "gap",
    "backfill",
    "reconnect",
    "lagged",
    "dropped",
    "dlq",
    "trades_consumed",
    "trades_generated",
    "trades_published",
    "consumer_lag",
    "already_published",
    "error",
    "fatal",
    "replaced",
    "offset_gaps",
    "_seconds_bucket",
];

/// The services' latency histograms summarized after a run (their buckets are in `counters`).
const SERVICE_HISTOGRAMS: &[&str] = &[
    "candles_service_watermark_query_seconds",
    "candles_service_finalize_delay_seconds",
    "candles_service_finalize_to_client_seconds",
];

/// p50 and p99 of one service histogram over every instance and the whole run (warm-up
/// included), as bucket upper bounds in ms.
#[derive(Clone, Debug, Serialize)]
pub struct BucketSummary {
    /// Samples.
    pub count: f64,
    /// The bucket edge at or under which half the samples fall, ms.
    pub p50_le_ms: Option<f64>,
    /// The same for 99 %, ms.
    pub p99_le_ms: Option<f64>,
}

/// Sums each of [`SERVICE_HISTOGRAMS`] over the service instances in `counters`.
fn service_histograms(counters: &BTreeMap<String, f64>) -> BTreeMap<String, BucketSummary> {
    let mut out = BTreeMap::new();
    for name in SERVICE_HISTOGRAMS {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: BTreeMap<String, f64> = BTreeMap::new();
        for (key, value) in counters {
            if let Some((_, rest)) = key.split_once(&prefix)
                && let Some(le) = rest.strip_suffix("\"}")
            {
                *buckets.entry(le.to_string()).or_default() += value;
            }
        }
        let buckets: Vec<(f64, f64)> = buckets
            .into_iter()
            .filter_map(|(le, n)| {
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, n))
            })
            .collect();
        let count = buckets.iter().map(|b| b.1).fold(0.0, f64::max);
        let ms = |q| stats::bucket_quantile(&buckets, q).map(|s| s * 1000.0);
        out.insert(
            name.trim_start_matches("candles_service_").to_string(),
            BucketSummary {
                count,
                p50_le_ms: ms(0.5),
                p99_le_ms: ms(0.99),
            },
        );
    }
    out
}

fn fmt(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.1}"))
}

fn print_result(r: &RateResult) {
    println!(
        "   generated {:.0}/s, delivered {:.0}/s over {:.0} s: expected {} received {} lost {} excess {} missing finals {} → {}",
        r.generated_rate,
        r.delivered_rate,
        r.judged_seconds,
        r.loss.expected,
        r.loss.received,
        r.loss.lost,
        r.loss.excess,
        r.loss.missing_finals,
        if r.lossless { "LOSSLESS" } else { "LOSS" }
    );
    println!(
        "   final latency ms {}; live latency ms {}",
        r.final_latency_ms.brief(),
        r.live_latency_ms.brief()
    );
    println!(
        "   delivery after the service published (published_at) ms: finals {}; live {}",
        r.final_delivery_ms.brief(),
        r.live_delivery_ms.brief()
    );
    for p in &r.processes {
        println!(
            "   {:<28} cpu {:>6.1}%  rss {:>7.1} MiB  peak {:>7.1} MiB",
            p.name, p.cpu_percent, p.rss_mib, p.peak_rss_mib
        );
    }
    for (ex, l) in &r.loss_per_exchange {
        println!(
            "   {ex:<9} own candles: expected {} received {} lost {} excess {} missing finals {}",
            l.expected, l.received, l.lost, l.excess, l.missing_finals
        );
    }
    for w in &r.wrong_windows {
        println!("   wrong window: {w}");
    }
    for (name, h) in &r.service_histograms {
        println!(
            "   services' {name}: p50 <= {} ms, p99 <= {} ms (n={}, whole run)",
            fmt(h.p50_le_ms),
            fmt(h.p99_le_ms),
            h.count
        );
    }
    for (k, v) in r
        .counters
        .iter()
        .filter(|(k, v)| **v != 0.0 && !k.contains("_bucket"))
    {
        println!("   {k} = {v}");
    }
    for e in &r.client_errors {
        println!("   client error: {e}");
    }
}

fn write_results(s: &PipelineSettings, results: &[RateResult]) -> Result<()> {
    let json = s.out.join("pipeline.json");
    std::fs::write(&json, serde_json::to_string_pretty(results)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    let mut csv = String::from(
        "target_rate,generated_rate,delivered_rate,expected,received,lost,excess,missing_finals,lossless,final_p50_ms,final_p99_ms,final_p999_ms,final_max_ms,live_p50_ms,live_p99_ms,live_max_ms,cpu_total_percent\n",
    );
    let o = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.3}"));
    for r in results {
        let cpu: f64 = r.processes.iter().map(|p| p.cpu_percent).sum();
        csv.push_str(&format!(
            "{},{:.1},{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.1}\n",
            r.target_rate,
            r.generated_rate,
            r.delivered_rate,
            r.loss.expected,
            r.loss.received,
            r.loss.lost,
            r.loss.excess,
            r.loss.missing_finals,
            r.lossless,
            o(r.final_latency_ms.p50),
            o(r.final_latency_ms.p99),
            o(r.final_latency_ms.p999),
            o(r.final_latency_ms.max),
            o(r.live_latency_ms.p50),
            o(r.live_latency_ms.p99),
            o(r.live_latency_ms.max),
            cpu
        ));
    }
    let path = s.out.join("pipeline.csv");
    std::fs::write(&path, csv).with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "   results: {} and {}",
        json.display(),
        s.out.join("pipeline.csv").display()
    );
    Ok(())
}
