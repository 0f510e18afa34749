//! `candles-connector`: one exchange's public trade stream → Kafka topic `trades`.
//!
//! A thin shell over the library: parses flags (each with an environment variable), sets up
//! logs and the Prometheus endpoint, checks that the exchange lists the pairs, then runs
//! [`candles_connector::run`] with a [`KafkaSink`] until SIGINT/SIGTERM, and flushes.
#![forbid(unsafe_code)]

use anyhow::Context;
use candles_connector::kafka::KafkaProperties;
use candles_connector::rest::ListingError;
use candles_connector::{
    ConnState, ConnectorConfig, KafkaSink, check_pairs, resume, run, telemetry,
};
use candles_core::{Exchange, Pair};
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Streams one exchange's public trades into Kafka, exactly once and in order per pair.
#[derive(Debug, Parser)]
#[command(name = "candles-connector", version, about, long_about = None)]
struct Args {
    /// Exchange to stream: binance, kraken or coinbase.
    #[arg(long, env = "CANDLES_EXCHANGE", value_parser = parse_exchange)]
    exchange: Exchange,
    /// Pairs, comma-separated, any spelling (btcusdt, BTC-USDT, btc/usdt, BTC_USDT).
    #[arg(long, env = "CANDLES_PAIRS", default_value = "btcusdt,ethusdt,solusdt", value_parser = parse_pairs)]
    pairs: Pairs,
    /// Kafka bootstrap servers.
    #[arg(long, env = "CANDLES_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Kafka topic for trades.
    #[arg(long, env = "CANDLES_TOPIC", default_value = "trades")]
    topic: String,
    /// WebSocket URL (default: the exchange's real public endpoint).
    #[arg(long, env = "CANDLES_WS_URL")]
    ws_url: Option<String>,
    /// REST base URL for gap fill and the pair check (default: the exchange's real one).
    #[arg(long, env = "CANDLES_REST_URL")]
    rest_url: Option<String>,
    /// Serve Prometheus metrics on this address (e.g. 0.0.0.0:9101); off when not given.
    #[arg(long, env = "CANDLES_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "CANDLES_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Replace the connection after this much silence (e.g. 10s, 500ms).
    #[arg(long, env = "CANDLES_STALE_AFTER", default_value = "10s", value_parser = parse_duration)]
    stale_after: Duration,
    /// Do not ask the exchange's REST API whether it lists the pairs before starting.
    #[arg(long, env = "CANDLES_SKIP_PAIR_CHECK")]
    skip_pair_check: bool,
    /// Refuse trades (WebSocket and REST) older than this, against the wall clock (e.g. 7d, 12h).
    #[arg(long, env = "CANDLES_MAX_TRADE_AGE", default_value = "7d", value_parser = parse_bound)]
    max_trade_age: candles_core::time::Duration,
    /// Refuse trades dated further than this ahead of the wall clock (clock skew, e.g. 1h, 5m).
    #[arg(long, env = "CANDLES_MAX_TRADE_LEAD", default_value = "1h", value_parser = parse_bound)]
    max_trade_lead: candles_core::time::Duration,
    #[command(flatten)]
    kafka: candles_kafka::KafkaPropertyArgs,
}

/// A parsed `--pairs` list (a newtype so clap treats it as one value).
#[derive(Debug, Clone)]
struct Pairs(Vec<Pair>);

fn parse_pairs(s: &str) -> Result<Pairs, String> {
    Pair::parse_list(s).map(Pairs).map_err(|e| e.to_string())
}

fn parse_exchange(s: &str) -> Result<Exchange, String> {
    s.parse()
        .map_err(|e: candles_core::market::NameError| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    candles_core::time::Duration::parse(s)
        .map(|d| d.to_std())
        .map_err(|e| e.to_string())
}

fn parse_bound(s: &str) -> Result<candles_core::time::Duration, String> {
    candles_core::time::Duration::parse(s).map_err(|e| e.to_string())
}

fn init_logs(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    // rdkafka logs through the `log` crate.
    let _ = tracing_log::LogTracer::init();
}

async fn signalled() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// How long the start-up pair check keeps retrying an unreachable REST API (1 + 2 + … s).
const PAIR_CHECK_PATIENCE: Duration = Duration::from_secs(16);

fn is_unreachable(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<ListingError>(),
        Some(ListingError::Unreachable { .. })
    )
}

async fn main_inner(args: Args, properties: KafkaProperties) -> anyhow::Result<()> {
    if let Some(addr) = args.metrics_addr {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .with_context(|| format!("serving metrics on {addr} (--metrics-addr)"))?;
        telemetry::describe();
    }
    if !properties.is_empty() {
        // Display redacts secret values.
        tracing::info!(properties = %properties, "Kafka client properties");
    }
    // First, so a property librdkafka refuses stops the start with its name.
    let sink = KafkaSink::with_properties(&args.brokers, &args.topic, &properties)?;
    let mut config = ConnectorConfig::new(args.exchange, args.pairs.0);
    config.ws_url = args.ws_url;
    config.rest_url = args.rest_url;
    config.stale_after = args.stale_after;
    config.time_bounds = candles_core::TimeBounds {
        max_age: args.max_trade_age,
        max_lead: args.max_trade_lead,
    };

    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            signalled().await;
            tracing::info!("stop requested; finishing");
            shutdown.cancel();
        }
    });

    if !args.skip_pair_check {
        // An unlisted pair is final; an unreachable REST API is worth a few more tries.
        let mut wait = Duration::from_secs(1);
        loop {
            let check = tokio::select! {
                r = check_pairs(&config) => r,
                _ = shutdown.cancelled() => return Ok(()),
            };
            match check {
                Err(e) if wait <= PAIR_CHECK_PATIENCE && is_unreachable(&e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?wait, "pair check failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                    wait *= 2;
                }
                other => break other?,
            }
        }
    }

    // Continue exactly where an earlier run of this connector stopped (see `resume`).
    let resume = {
        let (brokers, topic, pairs) = (
            args.brokers.clone(),
            args.topic.clone(),
            config.pairs.clone(),
        );
        let exchange = config.exchange;
        let properties = properties.clone();
        tokio::task::spawn_blocking(move || {
            resume::last_published_with(
                &brokers,
                &topic,
                &properties,
                exchange,
                &pairs,
                Duration::from_secs(30),
            )
        })
        .await?
    };
    match resume {
        Ok(last) => {
            for (pair, (id, _)) in &last {
                tracing::info!(%pair, id, "resuming after the last published trade");
            }
            config.resume = last;
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "could not read back the last published trades; starting fresh")
        }
    }
    let (status_tx, mut status_rx) = tokio::sync::watch::channel(ConnState::Connecting);
    tokio::spawn(async move {
        while status_rx.changed().await.is_ok() {
            tracing::debug!(state = %*status_rx.borrow(), "connection state");
        }
    });
    let result = run(config, sink.clone(), status_tx, shutdown).await;
    let flushed = sink.flush(Duration::from_secs(10)).await;
    result?;
    flushed
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let properties = match args.kafka.parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logs(args.log_format);
    match main_inner(args, properties).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = if e.downcast_ref::<ListingError>().is_some() {
                2
            } else {
                1
            };
            tracing::error!("{e:#}");
            eprintln!("candles-connector: {e:#}");
            ExitCode::from(code)
        }
    }
}
