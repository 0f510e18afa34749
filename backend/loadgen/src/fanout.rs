//! `candles-loadgen fanout`: one candles-service instance (a child process, so its memory is
//! its own) fed by simulators and connectors, and N concurrent gRPC subscribers.
//!
//! Subscribers share `--streams-per-connection` streams per HTTP/2 connection (N / that many
//! connections; the default 100 stays under hyper's default of 200 concurrent streams per
//! connection, and 100 connections stay far below the file-descriptor limit, so RLIMIT_NOFILE is
//! not touched). Each subscribes to the composite finals of every pair (no live updates, no
//! history).
//!
//! Memory per client = (service VmRSS after every subscriber is connected and has been served
//! for `--settle`) − (VmRSS just before the first one connects), divided by N.
//!
//! Completeness: every (pair, window) lying wholly inside the measured interval must reach every
//! subscriber as a final (the design promises a continuous series per pair once it has traded),
//! with the same trade count at every subscriber. Latency = receive time − (window end + grace),
//! over every subscriber and final.

use crate::client::{self, Progress, Recording};
use crate::procstat;
use crate::stats::{self, Summary};
use crate::view::{self, Programs};
use anyhow::{Context as _, Result};
use candles_core::Interval;
use candles_testkit::stack::Stack;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Settings of a fanout run.
#[derive(Clone, Debug)]
pub struct FanoutSettings {
    /// Subscriber counts, one run each.
    pub clients: Vec<usize>,
    /// Streams per HTTP/2 connection.
    pub streams_per_connection: usize,
    /// Total trades/s fed to the service.
    pub rate: f64,
    /// Measured interval.
    pub duration: Duration,
    /// Wait after the last subscriber connected before reading memory.
    pub settle: Duration,
    /// Exchanges to simulate.
    pub exchanges: Vec<String>,
    /// Pairs.
    pub pairs: Vec<String>,
    /// Candle interval (text and value).
    pub interval: (String, Interval),
    /// Grace (text and µs).
    pub grace: (String, i64),
    /// Output directory.
    pub out: PathBuf,
}

/// Result of one subscriber count.
#[derive(Clone, Debug, Serialize)]
pub struct FanoutResult {
    /// Subscribers.
    pub clients: usize,
    /// HTTP/2 connections used.
    pub connections: usize,
    /// Seconds until every subscription was open.
    pub connect_seconds: f64,
    /// Service VmRSS before the first subscriber, MiB.
    pub rss_before_mib: f64,
    /// Service VmRSS with every subscriber connected, MiB.
    pub rss_after_mib: f64,
    /// (after − before) / clients, KiB.
    pub kib_per_client: f64,
    /// Service peak RSS (VmHWM) at the end, MiB.
    pub peak_rss_mib: f64,
    /// Service CPU over the measured interval, % of one core.
    pub service_cpu_percent: f64,
    /// loadgen CPU over the measured interval, % of one core.
    pub loadgen_cpu_percent: f64,
    /// (pair, window)s judged.
    pub windows: usize,
    /// (subscriber, pair, window)s with no final.
    pub missing: u64,
    /// (subscriber, pair, window)s whose trade count differs from the other subscribers'.
    pub mismatched: u64,
    /// Subscribers whose stream ended early.
    pub failed_streams: usize,
    /// First few stream errors.
    pub errors: Vec<String>,
    /// Final latency after window end + grace, ms, over all subscribers.
    pub latency_ms: Summary,
    /// Final latency after the service finalized and published it (`published_at`), ms.
    pub delivery_ms: Summary,
}

/// Runs every subscriber count and writes `fanout.json` to `settings.out`.
pub fn run(
    rt: &tokio::runtime::Runtime,
    settings: &FanoutSettings,
    programs: &Programs,
) -> Result<Vec<FanoutResult>> {
    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("cannot create {}", settings.out.display()))?;
    let mut results = Vec::new();
    for &n in &settings.clients {
        println!(
            "== fanout: {n} subscribers, {} per connection, {} trades/s fed",
            settings.streams_per_connection, settings.rate
        );
        let r = run_one(rt, settings, programs, n)?;
        println!(
            "   connected in {:.1} s over {} connections; service RSS {:.1} → {:.1} MiB = {:.1} KiB/client (peak {:.1} MiB)",
            r.connect_seconds,
            r.connections,
            r.rss_before_mib,
            r.rss_after_mib,
            r.kib_per_client,
            r.peak_rss_mib
        );
        let (lat, del) = (r.latency_ms.brief(), r.delivery_ms.brief());
        println!(
            "   {} windows × {n}: missing {} mismatched {} failed streams {}",
            r.windows, r.missing, r.mismatched, r.failed_streams
        );
        println!(
            "   latency ms after end + grace {lat}; after publication {del}; cpu service {:.0}% loadgen {:.0}%",
            r.service_cpu_percent, r.loadgen_cpu_percent
        );
        results.push(r);
        let path = settings.out.join("fanout.json");
        std::fs::write(&path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("   results: {}", path.display());
    }
    Ok(results)
}

fn run_one(
    rt: &tokio::runtime::Runtime,
    s: &FanoutSettings,
    programs: &Programs,
    n: usize,
) -> Result<FanoutResult> {
    let run_dir = s.out.join(format!("fanout-{n}"));
    let _ = std::fs::remove_dir_all(&run_dir);
    let mut config = programs.config(&run_dir, &s.exchanges, &s.pairs)?;
    config.rate = s.rate / s.exchanges.len() as f64;
    config.instances = 1;
    config.interval = s.interval.0.clone();
    config.grace = Some(s.grace.0.clone());
    config.trade_logs = false;
    let mut stack = Stack::start(config)?;
    let pid = stack.service_pid(0).context("no service")?;
    let url = stack.grpc_urls().remove(0);
    stack.start_feeds()?;

    // A probe subscriber tells when finals flow (the consumer group has joined).
    let probe_progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let probe = rt.block_on(async {
        let mut c = client::connect(&url).await?;
        client::subscribe(&mut c, &s.pairs, &[], false).await
    })?;
    let probe = rt.spawn(client::record(
        probe,
        stop_rx.clone(),
        probe_progress.clone(),
    ));
    println!("   stack up; waiting for the first final candle");
    view::wait_until(&mut stack, "final candle", || {
        probe_progress.finals.load(Ordering::Relaxed) > 0
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let before = procstat::sample(pid).context("cannot read the service's /proc entry")?;

    let progress = Arc::new(Progress::default());
    let connect_start = Instant::now();
    let (tasks, connections) = subscribe_many(rt, s, &url, n, &stop_rx, &progress)?;
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    println!("   all {n} subscribed in {connect_seconds:.1} s; settling");
    std::thread::sleep(s.settle);
    let after = procstat::sample(pid).context("cannot read the service's /proc entry")?;
    let (t0, t1, usage) = measure(&mut stack, s, pid, &progress)?;
    std::thread::sleep(
        Duration::from_micros((s.grace.1 + s.interval.1.micros()) as u64) + Duration::from_secs(2),
    );
    let end = procstat::sample(pid);
    let _ = stop_tx.send(true);
    let recordings: Vec<Recording> = tasks
        .into_iter()
        .map(|t| rt.block_on(t).unwrap_or_default())
        .collect();
    let _ = rt.block_on(probe);
    drop(stack);

    let j = judge(s, t0, t1, &recordings);
    let kib = |k: u64| k as f64 / 1024.0;
    Ok(FanoutResult {
        clients: n,
        connections,
        connect_seconds,
        rss_before_mib: kib(before.rss_kib),
        rss_after_mib: kib(after.rss_kib),
        kib_per_client: (after.rss_kib as f64 - before.rss_kib as f64) / n as f64,
        peak_rss_mib: kib(end.map_or(after.hwm_kib, |e| e.hwm_kib)),
        service_cpu_percent: usage[0].cpu_percent,
        loadgen_cpu_percent: usage[1].cpu_percent,
        windows: j.windows,
        missing: j.missing,
        mismatched: j.mismatched,
        failed_streams: j.failed,
        errors: j.errors,
        latency_ms: Summary::of(j.latency),
        delivery_ms: Summary::of(j.delivery),
    })
}

/// Opens `n` subscriptions (`--streams-per-connection` per HTTP/2 connection) recording until
/// `stop` turns true; returns their tasks and the number of connections.
fn subscribe_many(
    rt: &tokio::runtime::Runtime,
    s: &FanoutSettings,
    url: &str,
    n: usize,
    stop: &tokio::sync::watch::Receiver<bool>,
    progress: &Arc<Progress>,
) -> Result<(Vec<tokio::task::JoinHandle<Recording>>, usize)> {
    let per = s.streams_per_connection.max(1);
    let connections = n.div_ceil(per);
    let mut tasks = Vec::with_capacity(n);
    rt.block_on(async {
        let mut opening = Vec::with_capacity(n);
        for c in 0..connections {
            let client = client::connect(url).await?;
            for _ in 0..per.min(n - c * per) {
                let mut client = client.clone();
                let pairs = s.pairs.clone();
                opening.push(tokio::spawn(async move {
                    client::subscribe(&mut client, &pairs, &[], false).await
                }));
            }
        }
        for (i, o) in opening.into_iter().enumerate() {
            let stream = o.await.context("subscribe task")??;
            let record = client::record(stream, stop.clone(), progress.clone());
            tasks.push(tokio::spawn(record));
            if (i + 1) % 1000 == 0 {
                println!("   {} subscriptions open", i + 1);
            }
        }
        anyhow::Ok(())
    })?;
    Ok((tasks, connections))
}

/// The measured interval: `[t0, t1]` (µs since the epoch) and the CPU of the service and of
/// this process over it.
fn measure(
    stack: &mut Stack,
    s: &FanoutSettings,
    pid: u32,
    progress: &Progress,
) -> Result<(i64, i64, Vec<procstat::ProcUsage>)> {
    let ticks = procstat::clock_ticks_per_second();
    let mut watches = [
        procstat::Watch::new("candles-service", pid),
        procstat::Watch::new("candles-loadgen", std::process::id()),
    ];
    for w in &mut watches {
        w.begin();
    }
    let t0 = candles_core::Micros::now().0;
    let started = Instant::now();
    while started.elapsed() < s.duration {
        std::thread::sleep(Duration::from_secs(1).min(s.duration - started.elapsed()));
        stack.check_running()?;
        println!(
            "   {:>4.0}s  finals received {:>8}  streams open {}",
            started.elapsed().as_secs_f64(),
            progress.finals.load(Ordering::Relaxed),
            progress.open.load(Ordering::Relaxed)
        );
    }
    let t1 = candles_core::Micros::now().0;
    Ok((t0, t1, watches.iter().map(|w| w.end(ticks)).collect()))
}

/// What the subscribers received over the judged windows.
struct Judged {
    windows: usize,
    missing: u64,
    mismatched: u64,
    failed: usize,
    errors: Vec<String>,
    latency: Vec<f64>,
    delivery: Vec<f64>,
}

/// Every (pair, window) lying wholly inside `[t0, t1]` must reach every subscriber as a final
/// with the same trade count (the majority count per window is the reference).
fn judge(s: &FanoutSettings, t0: i64, t1: i64, recordings: &[Recording]) -> Judged {
    let iv = s.interval.1.micros();
    let (from, to) = stats::measured_range(s.interval.1, t0, t1);
    let mut windows = Vec::new();
    for pair in &s.pairs {
        let pair = candles_core::Pair::parse(pair)
            .map(|p| p.to_string())
            .unwrap_or_else(|_| pair.clone());
        let mut w = from;
        while w + iv <= to {
            windows.push((pair.clone(), w));
            w += iv;
        }
    }
    let mut counts: BTreeMap<(String, i64), BTreeMap<u64, u64>> = BTreeMap::new();
    let mut j = Judged {
        windows: windows.len(),
        missing: 0,
        mismatched: 0,
        failed: 0,
        errors: Vec::new(),
        latency: Vec::new(),
        delivery: Vec::new(),
    };
    for rec in recordings {
        if let Some(e) = &rec.error {
            j.failed += 1;
            if j.errors.len() < 5 {
                j.errors.push(e.clone());
            }
        }
        let mut got = BTreeMap::new();
        for c in rec.candles.iter().filter(|c| c.is_final) {
            if stats::in_measured_range(c.start_us, iv, from, to) {
                j.latency
                    .push((c.recv_us - (c.end_us + s.grace.1)) as f64 / 1000.0);
                if let Some(published) = c.published_us {
                    j.delivery.push((c.recv_us - published) as f64 / 1000.0);
                }
                got.insert((c.pair.clone(), c.start_us), c.trades);
            }
        }
        for key in &windows {
            match got.get(key) {
                None => j.missing += 1,
                Some(&t) => *counts.entry(key.clone()).or_default().entry(t).or_default() += 1,
            }
        }
    }
    j.mismatched = counts
        .values()
        .map(|by_count| {
            let total: u64 = by_count.values().sum();
            total - by_count.values().max().copied().unwrap_or(0)
        })
        .sum();
    j
}
