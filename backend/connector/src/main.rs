//! `candles-connector`: one exchange's public trade stream → Kafka topic `trades`.
//!
//! A thin shell over the library: parses flags (each with an environment variable), sets up
//! logs and the Prometheus endpoint (`candles-runtime`), checks that the exchange lists the
//! pairs, then runs [`candles_connector::run`] with a [`KafkaSink`] until SIGINT/SIGTERM, and
//! flushes. Exit codes: 0 after a stop, 2 for bad flags or a pair the exchange does not list,
//! 1 for anything else (an exchange that cannot be asked, Kafka refusing a setting).
#![forbid(unsafe_code)]

use anyhow::Context as _;
use candles_connector::kafka::KafkaProperties;
use candles_connector::pacer::{Pacer, RestLimit};
use candles_connector::rest::ListingError;
use candles_connector::{
    ConnState, ConnectorConfig, KafkaSink, check_pairs, resume, run, telemetry, verify,
};
use candles_core::retry::Doubling;
use candles_core::{Exchange, Micros, Pair};
use candles_reports::Reporter;
use candles_runtime::LogFormat;
use clap::Parser;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
    /// REST pace as BURST,PER_SECOND (requests, or Binance's weight), e.g. 20,10 for a
    /// higher limit or a simulator without one (default: the exchange's public limit).
    #[arg(long, env = "CANDLES_REST_RATE")]
    rest_rate: Option<RestLimit>,
    /// Redis URL where this connector reports what it checks (the exchange's listing of the
    /// pairs, verdicts on our candles), for every candles-service to serve; off when not given.
    #[arg(long, env = "CANDLES_REDIS")]
    redis: Option<String>,
    /// Key and channel prefix in Redis (default: `dbN.` for database N > 0, else none), the
    /// services' `--redis-prefix`.
    #[arg(long, env = "CANDLES_REDIS_PREFIX")]
    redis_prefix: Option<String>,
    /// Do not verify our final 1-minute candles against the exchange's own (verification is on
    /// whenever `--redis` is given: it reads the services' candles and reports there).
    #[arg(long, env = "CANDLES_NO_VERIFY")]
    no_verify: bool,
    /// How long after a minute's end the verifier keeps asking the exchange for its candle
    /// before the verdict is `unavailable` (e.g. 3m).
    #[arg(long, env = "CANDLES_VERIFY_PATIENCE", default_value = "3m", value_parser = parse_duration)]
    verify_patience: Duration,
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

/// How many times the start-up pair check asks an unreachable REST API, waiting 1, 2, 4, 8 and
/// 16 s between the asks (about 30 s in all).
const PAIR_CHECK_TRIES: u32 = 6;

/// Why the connector stopped with an error, and so its exit code.
#[derive(Debug)]
struct Failure {
    /// 2 for a configuration the exchange refuses (an unlisted pair, a bad flag), else 1.
    code: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure { code: 1, error }
    }
}

impl From<ListingError> for Failure {
    fn from(error: ListingError) -> Self {
        // Only an unlisted pair is the user's to fix; an exchange we could not ask is not.
        let code = if matches!(error, ListingError::NotListed { .. }) {
            2
        } else {
            1
        };
        Failure {
            code,
            error: error.into(),
        }
    }
}

/// Asks the exchange whether it lists every pair, retrying while it cannot be asked. `Ok` also
/// when a stop is requested meanwhile.
async fn check_listing(
    config: &ConnectorConfig,
    shutdown: &CancellationToken,
) -> Result<(), ListingError> {
    let mut wait = Doubling::new(Duration::from_secs(1), Duration::from_secs(16));
    for attempt in 1..=PAIR_CHECK_TRIES {
        let check = tokio::select! {
            r = check_pairs(config) => r,
            _ = shutdown.cancelled() => return Ok(()),
        };
        match check {
            Err(e) if e.is_retryable() && attempt < PAIR_CHECK_TRIES => {
                let delay = wait.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "pair check failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
            other => return other,
        }
    }
    Ok(())
}

/// The last trade published per pair by an earlier run of this connector (see `resume`);
/// empty, with a warning, when the topic cannot be read back.
async fn last_published(
    args: &Args,
    properties: &KafkaProperties,
    config: &ConnectorConfig,
) -> anyhow::Result<HashMap<Pair, (u64, Micros)>> {
    let (brokers, topic, pairs) = (
        args.brokers.clone(),
        args.topic.clone(),
        config.pairs.clone(),
    );
    let (exchange, properties) = (config.exchange, properties.clone());
    let read = tokio::task::spawn_blocking(move || {
        resume::last_published(
            &brokers,
            &topic,
            &properties,
            exchange,
            &pairs,
            Duration::from_secs(30),
        )
    })
    .await?;
    Ok(match read {
        Ok(last) => {
            for (pair, (id, _)) in &last {
                tracing::info!(%pair, id, "resuming after the last published trade");
            }
            last
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "could not read back the last published trades; starting fresh");
            HashMap::new()
        }
    })
}

/// The Redis reporter, when `--redis` is given. It connects in the background: Redis being
/// down (at start or later) never stops trades; failed attempts are logged and counted.
fn reporter(args: &Args) -> anyhow::Result<Option<Reporter>> {
    let Some(url) = &args.redis else {
        return Ok(None);
    };
    let exchange = args.exchange;
    let reporter = Reporter::connect_in_background(url, args.redis_prefix.as_deref(), move |e| {
        telemetry::side_channel_failed(exchange, "connect", e);
    })
    .context("the Redis URL (--redis) for reports")?;
    Ok(Some(reporter))
}

/// Starts verifying our 1m candles against the exchange's (with `--redis`, unless
/// `--no-verify`), sharing `config`'s REST pace.
fn start_verifying(
    args: &Args,
    config: &ConnectorConfig,
    reporter: Option<&Reporter>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let (Some(url), Some(reporter)) = (&args.redis, reporter) else {
        return Ok(());
    };
    if args.no_verify {
        tracing::info!("verification off (--no-verify)");
        return Ok(());
    }
    let mut settings = verify::Settings::for_exchange(config.exchange);
    settings.patience = args.verify_patience;
    verify::relay::spawn(config, url, reporter.clone(), settings, shutdown.clone())
}

/// The library's configuration from the flags.
fn connector_config(args: &Args) -> ConnectorConfig {
    let mut config = ConnectorConfig::new(args.exchange, args.pairs.0.clone());
    config.ws_url = args.ws_url.clone();
    config.rest_url = args.rest_url.clone();
    config.stale_after = args.stale_after;
    config.time_bounds = candles_core::TimeBounds {
        max_age: args.max_trade_age,
        max_lead: args.max_trade_lead,
    };
    if let Some(limit) = args.rest_rate {
        config.rest_pacer = Arc::new(Pacer::new(limit));
    }
    config
}

async fn main_inner(args: Args, properties: KafkaProperties) -> Result<(), Failure> {
    if let Some(addr) = args.metrics_addr {
        candles_runtime::serve_metrics(addr)?;
        telemetry::describe();
    }
    if !properties.is_empty() {
        // Display redacts secret values.
        tracing::info!(properties = %properties, "Kafka client properties");
    }
    // First, so a property librdkafka refuses stops the start with its name.
    let sink = KafkaSink::with_properties(&args.brokers, &args.topic, &properties)?;
    let mut config = connector_config(&args);
    let shutdown = CancellationToken::new();
    candles_runtime::cancel_on_shutdown(shutdown.clone());
    let reporter = reporter(&args)?;
    if !args.skip_pair_check {
        check_listing(&config, &shutdown).await?;
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
    // Continue exactly where an earlier run of this connector stopped.
    config.resume = last_published(&args, &properties, &config).await?;
    start_verifying(&args, &config, reporter.as_ref(), &shutdown)?;
    let (status_tx, mut status_rx) = tokio::sync::watch::channel(ConnState::Connecting);
    tokio::spawn(async move {
        while status_rx.changed().await.is_ok() {
            tracing::debug!(state = %*status_rx.borrow(), "connection state");
        }
    });
    let result = run(config, sink.clone(), status_tx, shutdown).await;
    let flushed = sink.flush(Duration::from_secs(10)).await;
    result?;
    Ok(flushed?)
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
    candles_runtime::init_logs(args.log_format, "info");
    match main_inner(args, properties).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            tracing::error!("{error:#}");
            eprintln!("candles-connector: {error:#}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing_error(unreachable: bool) -> ListingError {
        let (exchange, pair) = (Exchange::Kraken, Pair::defaults()[0]);
        let url = "http://127.0.0.1:1/0/public/AssetPairs".to_string();
        if unreachable {
            ListingError::Unreachable {
                exchange,
                pair,
                url,
                reason: "connection refused".into(),
            }
        } else {
            ListingError::NotListed {
                exchange,
                pair,
                symbol: "XBTUSDT".into(),
                url,
            }
        }
    }

    #[test]
    fn only_an_unlisted_pair_exits_with_2() {
        assert_eq!(Failure::from(listing_error(false)).code, 2);
        let unreachable = listing_error(true);
        assert!(unreachable.is_retryable());
        assert_eq!(Failure::from(unreachable).code, 1);
        assert_eq!(Failure::from(anyhow::anyhow!("Kafka refused")).code, 1);
    }
}
