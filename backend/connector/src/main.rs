//! `candles-connector`: one exchange's public trade stream → Kafka topic `trades`.
//!
//! A thin shell over the library: parses flags (each with an environment variable), sets up
//! logs and the Prometheus endpoint (`candles-runtime`), reads the exchange's own listing of
//! the pairs and serves those it lists and trades (the others named in one warning each, in
//! `connector_pair_listed` and, with `--redis`, in the reports; re-read every
//! `--listing-every`), then runs [`candles_connector::run`] with a [`KafkaSink`] until
//! SIGINT/SIGTERM, and flushes. Exit codes: 0 after a stop, 2 for bad flags or when the
//! exchange serves none of the pairs, 1 for anything else (an exchange that cannot be asked,
//! Kafka refusing a setting).
#![forbid(unsafe_code)]

use anyhow::Context as _;
use candles_connector::kafka::KafkaProperties;
use candles_connector::listing::{self, PairListing, Status};
use candles_connector::pacer::{Pacer, RestLimit};
use candles_connector::rest::ListingError;
use candles_connector::{
    ConnState, ConnectorConfig, KafkaSink, read_listing, resume, run, telemetry, verify,
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
    /// Do not read the exchange's listing of the pairs: subscribe to every pair as given.
    #[arg(long, env = "CANDLES_SKIP_PAIR_CHECK")]
    skip_pair_check: bool,
    /// Re-read the exchange's listing this often, to report a pair halted or delisted later
    /// (e.g. 10m, 30s).
    #[arg(long, env = "CANDLES_LISTING_EVERY", default_value = "10m", value_parser = parse_duration)]
    listing_every: Duration,
    /// Refuse trades (WebSocket and REST) older than this, against the wall clock (e.g. 7d, 12h).
    #[arg(long, env = "CANDLES_MAX_TRADE_AGE", default_value = "7d", value_parser = parse_bound)]
    max_trade_age: candles_core::time::Duration,
    /// Refuse trades dated further than this ahead of the wall clock (clock skew, e.g. 1h, 5m).
    #[arg(long, env = "CANDLES_MAX_TRADE_LEAD", default_value = "1h", value_parser = parse_bound)]
    max_trade_lead: candles_core::time::Duration,
    /// At a cold start, fetch each pair's trades since the start of the current minute, so this
    /// exchange's first 1m candle is complete instead of partial. Composite windows that other
    /// live exchanges already finalized stay without those trades: use it when this exchange
    /// starts alone or with the others.
    #[arg(long, env = "CANDLES_COLD_FILL_MINUTE")]
    cold_fill_minute: bool,
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
        // Only pairs the exchange does not serve are the user's to fix; an exchange we could
        // not ask is not.
        let code = if matches!(
            error,
            ListingError::NotListed { .. } | ListingError::NoneServed { .. }
        ) {
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

/// Reads the exchange's listing of every pair, retrying while it cannot be asked. Empty when a
/// stop is requested meanwhile.
async fn check_listing(
    config: &ConnectorConfig,
    shutdown: &CancellationToken,
) -> Result<Vec<PairListing>, ListingError> {
    let mut wait = Doubling::new(Duration::from_secs(1), Duration::from_secs(16));
    for attempt in 1..=PAIR_CHECK_TRIES {
        let check = tokio::select! {
            r = read_listing(config) => r,
            _ = shutdown.cancelled() => return Ok(Vec::new()),
        };
        match check {
            Err(e) if e.is_retryable() && attempt < PAIR_CHECK_TRIES => {
                let delay = wait.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "reading the listing failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Ok(Vec::new()),
                }
            }
            other => return other,
        }
    }
    Ok(Vec::new())
}

/// Logs one pair's listing: a warning unless it trades, with what to do; `subscribed`:
/// whether this run streams it.
fn log_listing(exchange: Exchange, l: &PairListing, subscribed: bool) {
    let (pair, status, advice) = (l.pair, l.status, l.advice(exchange, subscribed));
    match status {
        Status::Trading => {
            tracing::info!(%exchange, %pair, %status, detail = %l.detail, "{advice}")
        }
        _ => tracing::warn!(%exchange, %pair, %status, detail = %l.detail, "{advice}"),
    }
}

/// Writes the listings to the reports in Redis; whether that worked (else logged).
async fn report_listing(
    exchange: Exchange,
    listings: &[PairListing],
    reporter: &mut Reporter,
) -> bool {
    let report: Vec<(Pair, candles_proto::v1::Listing)> = listings
        .iter()
        .map(|l| {
            let listing = candles_proto::v1::Listing {
                source: exchange.as_str().to_string(),
                status: l.status.as_str().to_string(),
                detail: l.detail.clone(),
            };
            (l.pair, listing)
        })
        .collect();
    match reporter.listings(exchange, &report).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(%exchange, error = %e, "could not report the listing to Redis; trying again");
            false
        }
    }
}

/// What [`keep_listing`] re-reads and where it tells it.
struct Rereads {
    config: ConnectorConfig,
    every: Duration,
    /// The pairs this run streams.
    subscribed: Vec<Pair>,
    reporter: Option<Reporter>,
    /// Whether the last listing read is in the reports (or there are none).
    reported: bool,
}

/// Re-reads the listing every `every`: each pair whose status changed is logged, the gauge
/// set, the report written. A report that failed is written again after a doubling wait.
async fn keep_listing(mut r: Rereads, mut last: Vec<PairListing>, shutdown: CancellationToken) {
    let exchange = r.config.exchange;
    let new_retry = || Doubling::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut retry = new_retry();
    let mut next_read = tokio::time::Instant::now() + r.every;
    loop {
        let wake = match r.reported {
            true => next_read,
            false => next_read.min(tokio::time::Instant::now() + retry.next_delay()),
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = shutdown.cancelled() => return,
        }
        if tokio::time::Instant::now() >= next_read {
            next_read = tokio::time::Instant::now() + r.every;
            match read_listing(&r.config).await {
                Ok(now) => {
                    for l in listing::changes(&last, &now) {
                        log_listing(exchange, l, r.subscribed.contains(&l.pair));
                    }
                    listing::record_gauge(exchange, &now);
                    last = now;
                    r.reported = r.reporter.is_none();
                }
                Err(e) => {
                    tracing::warn!(%exchange, error = %e, "re-reading the listing failed; trying again later")
                }
            }
        }
        if let (false, Some(reporter)) = (r.reported, r.reporter.as_mut()) {
            r.reported = report_listing(exchange, &last, reporter).await;
            if r.reported {
                retry = new_retry();
            }
        }
    }
}

/// The exchange's listing of every pair, read and told (a warning per pair not served, the
/// gauge, the report) and kept re-read every `--listing-every` in the background
/// ([`keep_listing`]); an error when it serves none of them.
async fn listed_pairs(
    args: &Args,
    config: &ConnectorConfig,
    mut reporter: Option<Reporter>,
    shutdown: &CancellationToken,
) -> Result<Vec<PairListing>, Failure> {
    let exchange = config.exchange;
    let listings = check_listing(config, shutdown).await?;
    if shutdown.is_cancelled() {
        return Ok(Vec::new());
    }
    for l in listings.iter().filter(|l| l.status != Status::Trading) {
        log_listing(exchange, l, false);
    }
    listing::record_gauge(exchange, &listings);
    let subscribed = listing::served(&listings);
    if subscribed.is_empty() {
        let reasons = listing::none_served(exchange, &listings);
        return Err(ListingError::NoneServed { exchange, reasons }.into());
    }
    tracing::info!(%exchange, served = subscribed.len(), asked = listings.len(), "serving the pairs the exchange lists and trades");
    let reported = match reporter.as_mut() {
        Some(reporter) => report_listing(exchange, &listings, reporter).await,
        None => true,
    };
    let rereads = Rereads {
        config: config.clone(),
        every: args.listing_every,
        subscribed,
        reporter,
        reported,
    };
    tokio::spawn(keep_listing(rereads, listings.clone(), shutdown.clone()));
    Ok(listings)
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

/// How long the start waits for Redis (`--redis`) before going on without it.
const REDIS_START_WAIT: Duration = Duration::from_secs(1);

/// The Redis reporter, when `--redis` is given. It connects in the background: Redis being
/// down (at start or later) never stops trades (the start waits [`REDIS_START_WAIT`] at most);
/// failed attempts are logged and counted.
async fn reporter(args: &Args) -> anyhow::Result<Option<Reporter>> {
    let Some(url) = &args.redis else {
        return Ok(None);
    };
    let exchange = args.exchange;
    let reporter = Reporter::connect_in_background(url, args.redis_prefix.as_deref(), move |e| {
        telemetry::side_channel_failed(exchange, "connect", e);
    })
    .context("the Redis URL (--redis) for reports")?;
    if !reporter.wait_connected(REDIS_START_WAIT).await {
        tracing::warn!("Redis (--redis) not reachable yet: streaming trades, reports wait for it");
    }
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
    config.cold_fill_minute = args.cold_fill_minute;
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
    let reporter = reporter(&args).await?;
    if !args.skip_pair_check {
        let listings = listed_pairs(&args, &config, reporter.clone(), &shutdown).await?;
        config.pairs = listing::served(&listings);
        config.symbols = listing::symbols(&listings);
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
        let none = ListingError::NoneServed {
            exchange: Exchange::Kraken,
            reasons: "BTC-JPY: halted".into(),
        };
        assert_eq!(Failure::from(none).code, 2);
        let unreachable = listing_error(true);
        assert!(unreachable.is_retryable());
        assert_eq!(Failure::from(unreachable).code, 1);
        assert_eq!(Failure::from(anyhow::anyhow!("Kafka refused")).code, 1);
    }
}
