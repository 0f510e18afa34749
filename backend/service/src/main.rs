//! `candles-service`: Kafka trades → candles → Redis → gRPC. A thin shell over
//! [`candles_service::run`]: flags (each with an environment variable), logging, metrics
//! exporter, signals.
#![forbid(unsafe_code)]

use candles_core::time::Duration;
use candles_core::{ClockMode, EngineConfig, Interval, Intervals};
use candles_service::{ServiceConfig, TlsFiles};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// Builds candles from the Kafka `trades` topic, publishes them through Redis and serves them
/// over gRPC (candles.v1.CandleService). Run as many instances as you like in one consumer group.
#[derive(Parser, Debug)]
#[command(name = "candles-service", version)]
struct Cli {
    /// Kafka bootstrap servers (host:port[,host:port]).
    #[arg(long, env = "CANDLES_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Topic of normalized trades.
    #[arg(long, env = "CANDLES_TOPIC", default_value = "trades")]
    topic: String,
    /// Consumer group shared by all instances.
    #[arg(long, env = "CANDLES_GROUP", default_value = "candles-service")]
    group: String,
    /// Dead-letter topic for records that cannot be decoded.
    #[arg(long, env = "CANDLES_DLQ_TOPIC", default_value = "trades.dlq")]
    dlq_topic: String,
    /// Redis URL.
    #[arg(long, env = "CANDLES_REDIS", default_value = "redis://127.0.0.1:6379/")]
    redis: String,
    /// Prefix of every Redis key and channel, separating deployments on one Redis server
    /// (default: empty on DB 0, `db<N>.` on DB N, since Pub/Sub ignores the DB number).
    #[arg(long, env = "CANDLES_REDIS_PREFIX")]
    redis_prefix: Option<String>,
    /// gRPC listen address.
    #[arg(long, env = "CANDLES_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Build and serve this one interval only (500ms, 5s, 1m, 1h, ...); takes precedence over
    /// --intervals.
    #[arg(long, env = "CANDLES_INTERVAL")]
    interval: Option<Interval>,
    /// Intervals built and served, comma-separated, finest first, each a whole multiple of the
    /// finest (at most 16). Subscriptions naming no interval get 5s when built, else the finest.
    #[arg(long, env = "CANDLES_INTERVALS", default_value = Intervals::DEFAULT)]
    intervals: Intervals,
    /// How long a window stays open after its end, for trades delayed in transit.
    #[arg(long, env = "CANDLES_GRACE", default_value = "1500ms")]
    grace: Duration,
    /// Clock that finalizes windows: `wall` (live) or `event` (trade-time watermark, for replays).
    #[arg(long, env = "CANDLES_CLOCK", default_value = "wall")]
    clock: ClockMode,
    /// Publish in-progress candles at most this often per pair and source.
    #[arg(long, env = "CANDLES_UPDATE_INTERVAL", default_value = "20ms")]
    update_interval: Duration,
    /// Final candles kept in Redis per pair, source and interval (the most a client's `history`
    /// may ask).
    #[arg(long, env = "CANDLES_HISTORY_MAX", default_value_t = 1000)]
    history_max: usize,
    /// Messages queued per gRPC client before it is dropped as too slow (RESOURCE_EXHAUSTED).
    #[arg(long, env = "CANDLES_CLIENT_QUEUE", default_value_t = 1024)]
    client_queue: usize,
    /// Kafka session timeout: how soon partitions of a dead instance move to the others.
    #[arg(long, env = "CANDLES_SESSION_TIMEOUT", default_value = "6s")]
    session_timeout: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9100); off when unset.
    #[arg(long, env = "CANDLES_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Log format: `text` or `json`. Filter with RUST_LOG (default `info`).
    #[arg(long, env = "CANDLES_LOG_FORMAT", value_enum, default_value_t)]
    log_format: candles_runtime::LogFormat,
    /// TLS certificate chain (PEM); enables TLS together with --tls-key.
    #[arg(long, env = "CANDLES_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "CANDLES_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Pairs this server serves, comma-separated, any spelling; subscriptions to others are refused.
    #[arg(long, env = "CANDLES_PAIRS", default_value = "btcusdt,ethusdt,solusdt", value_parser = parse_pairs)]
    pairs: Pairs,
    /// Trades dated further back than this from the wall clock are dead-lettered (raise it to
    /// replay an older recording with --clock event).
    #[arg(long, env = "CANDLES_MAX_TRADE_AGE", default_value = "7d")]
    max_trade_age: Duration,
    /// Trades dated further ahead of the wall clock than this are dead-lettered (clock skew).
    #[arg(long, env = "CANDLES_MAX_TRADE_LEAD", default_value = "1h")]
    max_trade_lead: Duration,
    #[command(flatten)]
    kafka: candles_kafka::KafkaPropertyArgs,
    /// Require `authorization: Bearer <TOKEN>` on every CandleService call.
    #[arg(long, env = "CANDLES_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Concurrent gRPC connections; beyond it a new connection is closed at once.
    #[arg(long, env = "CANDLES_GRPC_MAX_CONNECTIONS", default_value_t = 1024)]
    grpc_max_connections: usize,
    /// Concurrent calls (HTTP/2 streams) per gRPC connection.
    #[arg(long, env = "CANDLES_GRPC_MAX_STREAMS", default_value_t = 16)]
    grpc_max_streams: u32,
    /// Close a gRPC connection with no open call for this long (0s: never).
    #[arg(long, env = "CANDLES_GRPC_IDLE_TIMEOUT", default_value = "120s")]
    grpc_idle_timeout: Duration,
    /// Ask a gRPC connection older than this to go away; open streams may finish (0s: never).
    #[arg(long, env = "CANDLES_GRPC_MAX_CONNECTION_AGE", default_value = "0s")]
    grpc_max_connection_age: Duration,
    /// HTTP/2 PING interval (0s: off); an unanswered PING closes the connection.
    #[arg(long, env = "CANDLES_GRPC_KEEPALIVE_INTERVAL", default_value = "30s")]
    grpc_keepalive_interval: Duration,
    /// How long an HTTP/2 PING may go unanswered.
    #[arg(long, env = "CANDLES_GRPC_KEEPALIVE_TIMEOUT", default_value = "10s")]
    grpc_keepalive_timeout: Duration,
    /// TCP keepalive idle time on accepted gRPC sockets (0s: off).
    #[arg(long, env = "CANDLES_GRPC_TCP_KEEPALIVE", default_value = "60s")]
    grpc_tcp_keepalive: Duration,
    /// Largest gRPC request message accepted, in bytes.
    #[arg(long, env = "CANDLES_GRPC_MAX_REQUEST_BYTES", default_value_t = 65_536)]
    grpc_max_request_bytes: usize,
    /// After a slow client is dropped, how long its status may take to leave before its
    /// connection is closed.
    #[arg(long, env = "CANDLES_GRPC_SLOW_CLIENT_GRACE", default_value = "30s")]
    grpc_slow_client_grace: Duration,
}

/// `None` for a zero duration (a limit switched off).
fn nonzero(d: Duration) -> Option<std::time::Duration> {
    Some(d.to_std()).filter(|d| !d.is_zero())
}

impl Cli {
    fn into_config(self) -> Result<ServiceConfig, candles_kafka::PropertyError> {
        Ok(ServiceConfig {
            brokers: self.brokers,
            topic: self.topic,
            group: self.group,
            dlq_topic: self.dlq_topic,
            redis_url: self.redis,
            redis_prefix: self.redis_prefix,
            listen: self.listen,
            engine: EngineConfig {
                interval: self.interval.unwrap_or(self.intervals.finest()),
                grace: self.grace,
                clock: self.clock,
            },
            // `--interval` is a one-interval set and takes precedence.
            intervals: Some(self.interval.map_or(self.intervals, Intervals::one)),
            update_interval: self.update_interval.to_std(),
            history_max: self.history_max,
            client_queue: self.client_queue,
            hub_capacity: ServiceConfig::default().hub_capacity,
            session_timeout: self.session_timeout.to_std(),
            tls: match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                _ => None,
            },
            auth_token: self.auth_token,
            pairs: self.pairs.0,
            trade_times: candles_core::TimeBounds {
                max_age: self.max_trade_age,
                max_lead: self.max_trade_lead,
            },
            kafka_properties: self.kafka.parse()?,
            grpc: candles_service::config::GrpcLimits {
                max_connections: self.grpc_max_connections,
                max_streams_per_connection: self.grpc_max_streams,
                idle_timeout: nonzero(self.grpc_idle_timeout),
                max_connection_age: nonzero(self.grpc_max_connection_age),
                http2_keepalive_interval: nonzero(self.grpc_keepalive_interval),
                http2_keepalive_timeout: self.grpc_keepalive_timeout.to_std(),
                tcp_keepalive: nonzero(self.grpc_tcp_keepalive),
                max_request_bytes: self.grpc_max_request_bytes,
                slow_client_grace: self.grpc_slow_client_grace.to_std(),
                ..Default::default()
            },
        })
    }
}

fn init_metrics(addr: SocketAddr) -> anyhow::Result<()> {
    let mut builder = metrics_exporter_prometheus::PrometheusBuilder::new();
    for name in candles_service::metrics::LATENCY_HISTOGRAMS {
        builder = builder.set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(name.to_string()),
            candles_service::metrics::LATENCY_BUCKETS,
        )?;
    }
    candles_runtime::serve_metrics_from(builder, addr)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    candles_runtime::init_logs(cli.log_format, "info");
    if let Some(addr) = cli.metrics_addr {
        init_metrics(addr)?;
    }
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let shutdown = CancellationToken::new();
    candles_runtime::cancel_on_shutdown(shutdown.clone());
    let result = candles_service::run(config, shutdown).await;
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "candles-service failed");
    }
    result
}

/// A parsed `--pairs` list (a newtype, so clap treats it as one value).
#[derive(Debug, Clone)]
struct Pairs(Vec<candles_core::Pair>);

fn parse_pairs(text: &str) -> Result<Pairs, String> {
    candles_core::Pair::parse_list(text)
        .map(Pairs)
        .map_err(|e| e.to_string())
}
