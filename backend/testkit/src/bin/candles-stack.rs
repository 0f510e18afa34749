//! `candles-stack`: the docker-compose.yml topology natively, without Docker
//! ([`candles_testkit::stack`]): Apache Kafka (topics `trades` and `trades.dlq`), redis-server
//! (append-only persistence as in compose, in the run directory's `redis/`), one exchange
//! simulator per exchange (or the real exchanges with `--real`), the connectors and
//! N candles-service instances in one consumer group, all on free 127.0.0.1 ports. Prints where
//! everything is, runs until SIGINT/SIGTERM (or `--duration`), then stops every process it
//! started, programs first. `scripts/stack.sh` builds and runs it.
#![forbid(unsafe_code)]

use anyhow::{Context as _, Result, bail};
use candles_testkit::stack::{Stack, StackConfig};
use clap::Parser;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The candles backend as local processes; Ctrl-C stops everything.
#[derive(Debug, Parser)]
#[command(name = "candles-stack", version)]
struct Args {
    /// candles-service instances.
    #[arg(long, default_value_t = 2)]
    instances: usize,
    /// Connect to the real exchanges instead of local simulators (needs internet access).
    #[arg(long)]
    real: bool,
    /// Candle interval (as in docker-compose.yml).
    #[arg(long, default_value = "5s")]
    interval: String,
    /// Finalization grace (default: the service's own).
    #[arg(long)]
    grace: Option<String>,
    /// Synthetic trades per second per simulator.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Pairs, comma-separated.
    #[arg(long, default_value = candles_testkit::stack::PAIRS)]
    pairs: String,
    /// Stop by itself after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
    /// Where logs go (default: a new $TMPDIR/candles-stack-STAMP).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Directory of exchange-sim, candles-connector and candles-service (default: this
    /// program's own).
    #[arg(long, env = "CANDLES_E2E_BIN_DIR")]
    bin_dir: Option<PathBuf>,
}

/// The stack's configuration from the command line.
fn config(args: Args) -> Result<StackConfig> {
    if args.instances == 0 {
        bail!("--instances must be at least 1");
    }
    let mut config = StackConfig::new("candles-stack");
    let stamp = config.group.trim_start_matches("candles-e2e-").to_string();
    config.run_dir = args
        .run_dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("candles-stack-{stamp}")));
    config.bin_dir = Some(match args.bin_dir {
        Some(dir) => dir,
        None => candles_testkit::bins::profile_dir()?,
    });
    config.instances = args.instances;
    config.real = args.real;
    config.interval = args.interval;
    config.grace = args.grace;
    config.rate = args.rate;
    config.pairs = args.pairs;
    config.max_trades = 0;
    config.trade_logs = false;
    config.group = "candles-service".into();
    config.log_level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    Ok(config)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let duration = args.duration.map(Duration::from_secs);
    let config = config(args)?;
    let dir = config.run_dir.clone();
    println!("candles-stack: starting (logs in {}) ...", dir.display());
    let mut stack = Stack::start(config)?;
    stack.start_feeds()?;
    print_addresses(&stack);
    let stop = wait_for_stop(&mut stack, duration)?;
    println!("\ncandles-stack: {stop}; stopping ...");
    stack.shutdown();
    println!("candles-stack: stopped. Logs kept in {}", dir.display());
    Ok(())
}

fn print_addresses(stack: &Stack) {
    println!(
        "\nThe candles backend is up (run dir {}).",
        stack.dir.display()
    );
    println!(
        "  Apache Kafka      {}   topics: trades ({} partitions), trades.dlq",
        stack.brokers(),
        stack.config.partitions
    );
    println!(
        "  Redis             {}   data: {}",
        stack.redis_url(),
        stack.redis_dir().display()
    );
    for sim in stack.sims() {
        let name = sim.exchange.as_str();
        println!(
            "  exchange-sim {name:<8} {} (REST {})",
            sim.ws_url, sim.rest_url
        );
    }
    for c in stack.connectors() {
        let (name, port) = (c.exchange.as_str(), c.metrics_port);
        println!("  connector {name:<8}    metrics http://127.0.0.1:{port}/metrics");
    }
    for (i, s) in stack.services().iter().enumerate() {
        println!(
            "  candles-service-{i} gRPC http://127.0.0.1:{}   metrics http://127.0.0.1:{}/metrics",
            s.grpc_port, s.metrics_port
        );
    }
    let first = stack.grpc_urls().into_iter().next().unwrap_or_default();
    println!("  logs              {}/*.log\n", stack.dir.display());
    let tui = stack.bin_dir().join("candles-tui");
    let tui = tui.display();
    println!("Attach the dashboard:  {tui} --server {first}");
    println!("Plain output:          {tui} --server {first} --plain");
    println!("Stop: Ctrl-C (or kill -TERM {}).", std::process::id());
}

/// Runs until SIGINT or SIGTERM arrives or `duration` has passed; says which. A process that
/// exits meanwhile is reported once, with the end of its log.
fn wait_for_stop(stack: &mut Stack, duration: Option<Duration>) -> Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let started = Instant::now();
    let mut reported = std::collections::HashSet::new();
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = int.recv() => return Ok("SIGINT".to_string()),
                _ = term.recv() => return Ok("SIGTERM".to_string()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if let Err(e) = stack.check_running() {
                let text = format!("{e:#}");
                if reported.insert(text.lines().next().unwrap_or_default().to_string()) {
                    eprintln!("candles-stack: {text}");
                }
            }
            if duration.is_some_and(|d| started.elapsed() >= d) {
                return Ok(format!(
                    "--duration {}s reached",
                    started.elapsed().as_secs()
                ));
            }
        }
    })
}
