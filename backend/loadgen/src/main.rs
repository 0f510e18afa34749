//! `candles-loadgen`: runs the native candles stack under load and measures it from the
//! clients' side. See `candles-loadgen --help` and BENCHMARKS.md.
#![forbid(unsafe_code)]

use anyhow::{Context as _, Result, bail};
use candles_core::Interval;
use candles_loadgen::{fanout, floor, pipeline, view::Programs};
use clap::{Args as ClapArgs, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Load generator and measurement harness for the candles stack (loopback only; every run stops
/// by itself).
#[derive(Debug, Parser)]
#[command(name = "candles-loadgen", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, ClapArgs)]
struct Common {
    /// Directory with release builds of exchange-sim, candles-connector and candles-service
    /// (default: $CARGO_TARGET_DIR/release, else ./target/release).
    #[arg(long, global = true, env = "LOADGEN_BIN_DIR")]
    bin_dir: Option<PathBuf>,

    /// The redis-server binary (default: ~/.cache/candles/bin or PATH).
    #[arg(long, global = true, env = "REDIS_SERVER_BIN")]
    redis_server_bin: Option<PathBuf>,

    /// Results (JSON/CSV) and per-run logs go here.
    #[arg(
        long,
        global = true,
        env = "LOADGEN_OUT",
        default_value = "loadgen-results"
    )]
    out: PathBuf,

    /// Serve the loadgen's own Prometheus metrics on this address (e.g. 127.0.0.1:9300).
    #[arg(long, global = true, env = "LOADGEN_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,

    /// Exchanges to simulate (one exchange-sim and one connector each).
    #[arg(
        long,
        global = true,
        env = "LOADGEN_EXCHANGES",
        default_value = "binance,kraken,coinbase",
        value_delimiter = ','
    )]
    exchanges: Vec<String>,

    /// Pairs.
    #[arg(
        long,
        global = true,
        env = "LOADGEN_PAIRS",
        default_value = "btcusdt,ethusdt,solusdt",
        value_delimiter = ','
    )]
    pairs: Vec<String>,

    /// Candle interval of the service.
    #[arg(long, global = true, env = "LOADGEN_INTERVAL", default_value = "1s")]
    interval: String,

    /// Finalization grace of the service.
    #[arg(long, global = true, env = "LOADGEN_GRACE", default_value = "1500ms")]
    grace: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole stack (Kafka, Redis, simulators, connectors, services) at rising trade rates:
    /// loss, finalized and live latency, CPU and peak RSS per process.
    Pipeline(PipelineArgs),
    /// One candles-service and N concurrent gRPC subscribers: memory per client, every final at
    /// every subscriber, latency across subscribers.
    Fanout(FanoutArgs),
    /// Apache Kafka alone: produce-to-consume latency (p50/p99/p999) with the connector's
    /// producer and the service's consumer settings, the floor under the pipeline's latencies.
    KafkaFloor(FloorArgs),
}

#[derive(Debug, ClapArgs)]
struct FloorArgs {
    #[command(flatten)]
    run: RateArgs,

    /// Partitions of each rate's topic.
    #[arg(long, env = "LOADGEN_PARTITIONS", default_value_t = 6)]
    partitions: u32,
}

/// The rates of a run and how long each is measured.
#[derive(Debug, ClapArgs)]
struct RateArgs {
    /// Total trades (records) per second; one fresh stack (topic) per rate.
    #[arg(
        long,
        env = "LOADGEN_RATES",
        default_value = "1000,5000,20000,50000,100000",
        value_delimiter = ','
    )]
    rates: Vec<f64>,

    /// Measured interval per rate (e.g. 20s).
    #[arg(long, env = "LOADGEN_DURATION", default_value = "20s")]
    duration: String,

    /// Wait after the first record (pipeline: live update) before measuring.
    #[arg(long, env = "LOADGEN_WARMUP", default_value = "3s")]
    warmup: String,
}

#[derive(Debug, ClapArgs)]
struct PipelineArgs {
    #[command(flatten)]
    run: RateArgs,

    /// candles-service instances (one consumer group).
    #[arg(long, env = "LOADGEN_INSTANCES", default_value_t = 2)]
    instances: usize,

    /// The services' --update-interval (live update throttle).
    #[arg(long, env = "LOADGEN_UPDATE_INTERVAL", default_value = "20ms")]
    update_interval: String,

    /// Partitions of the trades topic.
    #[arg(long, env = "LOADGEN_PARTITIONS", default_value_t = 6)]
    partitions: u32,

    /// Keep the simulators' trade logs (large: ~170 bytes per trade).
    #[arg(long, env = "LOADGEN_KEEP_TRADE_LOGS")]
    keep_trade_logs: bool,

    /// After each rate, read the whole trades topic and account what the broker holds against
    /// the simulators and the clients (locates a loss; adds ~10-60 s per rate).
    #[arg(long, env = "LOADGEN_VERIFY_KAFKA")]
    verify_kafka: bool,
}

#[derive(Debug, ClapArgs)]
struct FanoutArgs {
    /// Subscriber counts; one fresh stack per count.
    #[arg(
        long,
        env = "LOADGEN_CLIENTS",
        default_value = "1000,10000",
        value_delimiter = ','
    )]
    clients: Vec<usize>,

    /// gRPC streams per HTTP/2 connection.
    #[arg(long, env = "LOADGEN_STREAMS_PER_CONNECTION", default_value_t = 100)]
    streams_per_connection: usize,

    /// Total trades per second fed to the service.
    #[arg(long, env = "LOADGEN_RATE", default_value_t = 1000.0)]
    rate: f64,

    /// Measured interval (e.g. 15s).
    #[arg(long, env = "LOADGEN_DURATION", default_value = "15s")]
    duration: String,

    /// Wait after the last subscriber connected before reading the service's memory.
    #[arg(long, env = "LOADGEN_SETTLE", default_value = "3s")]
    settle: String,
}

fn duration(text: &str, flag: &str) -> Result<Duration> {
    candles_core::time::Duration::parse(text)
        .map(|d| d.to_std())
        .with_context(|| format!("invalid {flag} {text:?}: write e.g. 500ms, 20s, 1m"))
}

fn interval(text: &str, flag: &str) -> Result<(String, Interval)> {
    let iv = Interval::parse(text).with_context(|| format!("invalid {flag} {text:?}"))?;
    Ok((text.to_string(), iv))
}

fn positive_rates(rates: &[f64]) -> Result<()> {
    if rates.iter().any(|r| !(*r > 0.0 && r.is_finite())) {
        bail!("--rates must be positive numbers, got {rates:?}");
    }
    Ok(())
}

fn micros(text: &str, flag: &str) -> Result<(String, i64)> {
    let d = duration(text, flag)?;
    let us = i64::try_from(d.as_micros()).context("duration too large")?;
    if us <= 0 {
        bail!("{flag} must be positive, got {text:?}");
    }
    Ok((text.to_string(), us))
}

fn default_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("release")
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    candles_runtime::init_logs(candles_runtime::LogFormat::Text, "warn");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let c = &cli.common;
    if let Some(addr) = c.metrics_addr {
        let _guard = rt.enter();
        candles_runtime::serve_metrics(addr)?;
    }
    if c.exchanges.is_empty() || c.pairs.is_empty() {
        bail!("--exchanges and --pairs must not be empty");
    }
    match cli.command {
        Command::Pipeline(a) => run_pipeline(&rt, c, a)?,
        Command::Fanout(a) => run_fanout(&rt, c, a)?,
        Command::KafkaFloor(a) => run_floor(&rt, c, a)?,
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn programs(c: &Common) -> Result<Programs> {
    Programs::locate(
        c.bin_dir.clone().unwrap_or_else(default_bin_dir),
        c.redis_server_bin.clone(),
    )
}

fn run_pipeline(rt: &tokio::runtime::Runtime, c: &Common, a: PipelineArgs) -> Result<()> {
    let programs = programs(c)?;
    positive_rates(&a.run.rates)?;
    let settings = pipeline::PipelineSettings {
        rates: a.run.rates,
        duration: duration(&a.run.duration, "--duration")?,
        warmup: duration(&a.run.warmup, "--warmup")?,
        exchanges: c.exchanges.clone(),
        pairs: c.pairs.clone(),
        instances: a.instances.max(1),
        interval: interval(&c.interval, "--interval")?,
        grace: micros(&c.grace, "--grace")?,
        update_interval: a.update_interval,
        partitions: a.partitions,
        out: c.out.clone(),
        keep_trade_logs: a.keep_trade_logs,
        verify_kafka: a.verify_kafka,
    };
    pipeline::run(rt, &settings, &programs).map(drop)
}

fn run_fanout(rt: &tokio::runtime::Runtime, c: &Common, a: FanoutArgs) -> Result<()> {
    let programs = programs(c)?;
    let settings = fanout::FanoutSettings {
        clients: a.clients,
        streams_per_connection: a.streams_per_connection,
        rate: a.rate,
        duration: duration(&a.duration, "--duration")?,
        settle: duration(&a.settle, "--settle")?,
        exchanges: c.exchanges.clone(),
        pairs: c.pairs.clone(),
        interval: interval(&c.interval, "--interval")?,
        grace: micros(&c.grace, "--grace")?,
        out: c.out.clone(),
    };
    fanout::run(rt, &settings, &programs).map(drop)
}

fn run_floor(rt: &tokio::runtime::Runtime, c: &Common, a: FloorArgs) -> Result<()> {
    positive_rates(&a.run.rates)?;
    let settings = floor::FloorSettings {
        rates: a.run.rates,
        duration: duration(&a.run.duration, "--duration")?,
        warmup: duration(&a.run.warmup, "--warmup")?,
        partitions: a.partitions.max(1),
        out: c.out.clone(),
    };
    floor::run(rt, &settings).map(drop)
}
