//! The service's configuration: every knob, with the defaults the binary's flags use.

use anyhow::{Context as _, bail};
use candles_core::{EngineConfig, Interval, Intervals};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything [`crate::run`] needs. `ServiceConfig::default()` is the binary's defaults, except
/// [`ServiceConfig::intervals`] (the binary builds [`Intervals::DEFAULT`] unless `--interval` is
/// given; the library default builds `engine.interval` only).
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Topic of normalized trades (record key = canonical pair).
    pub topic: String,
    /// Consumer group shared by all instances; partitions are split among its members.
    pub group: String,
    /// Where records that cannot be decoded go, with a header `error` naming the reason.
    pub dlq_topic: String,
    /// Redis URL, `redis://host:port/`.
    pub redis_url: String,
    /// Prefix of every Redis key and channel (separates deployments on one Redis server);
    /// `None`: derived from the URL's DB number ([`crate::redis_input::default_prefix`]).
    pub redis_prefix: Option<String>,
    /// gRPC listen address (used by [`crate::run`]; [`crate::serve`] takes a bound listener).
    pub listen: SocketAddr,
    /// Window length, grace period and clock. With [`ServiceConfig::intervals`] set, its
    /// `interval` is ignored (the set's finest is used).
    pub engine: EngineConfig,
    /// Every interval built and served (`--intervals`); `None`: only `engine.interval`
    /// (`--interval`). See [`ServiceConfig::intervals`].
    pub intervals: Option<Intervals>,
    /// Live (in-progress) candles are published at most this often per series.
    pub update_interval: Duration,
    /// Finalized candles kept in Redis per pair, source and interval (also the largest `history`
    /// a client may ask for); at least the most finer candles one coarser window of
    /// [`ServiceConfig::intervals`] holds (12 for the default set), which a restart reads back.
    pub history_max: usize,
    /// Messages queued per gRPC client; a client that falls this far behind is dropped with
    /// `RESOURCE_EXHAUSTED`.
    pub client_queue: usize,
    /// Capacity of the in-process broadcast from the Redis subscriber to client tasks.
    pub hub_capacity: usize,
    /// Kafka session timeout: how long after an instance dies (even `kill -9`) the group hands
    /// its partitions to the survivors.
    pub session_timeout: Duration,
    /// TLS certificate and key (PEM); plaintext when `None`.
    pub tls: Option<TlsFiles>,
    /// When set, every `CandleService` call must carry `authorization: Bearer <token>`.
    pub auth_token: Option<String>,
    /// The pairs this server serves. A subscription naming another pair is `INVALID_ARGUMENT`
    /// (naming the pair and this list), never a silent empty stream.
    pub pairs: Vec<candles_core::Pair>,
    /// Trades dated outside this window around the wall clock are dead-lettered with the reason
    /// ([`crate::admission`]). Replaying a recording older than `max_age` needs a larger one.
    pub trade_times: candles_core::TimeBounds,
    /// Kafka client properties from the user (`--kafka-property`: TLS, SASL, managed-cloud
    /// settings), set on every Kafka client after the service's own settings.
    pub kafka_properties: candles_kafka::KafkaProperties,
    /// Limits against hostile or broken gRPC clients (DESIGN.md "Hostile clients and limits").
    pub grpc: GrpcLimits,
}

/// The most pairs one deployment serves (`--pairs`): each costs a series per source, Redis
/// history and finals every window.
pub const MAX_PAIRS: usize = 1_000;

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "trades".into(),
            group: "candles-service".into(),
            dlq_topic: "trades.dlq".into(),
            redis_url: "redis://127.0.0.1:6379/".into(),
            redis_prefix: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            engine: EngineConfig::default(),
            intervals: None,
            update_interval: Duration::from_millis(20),
            history_max: 1000,
            client_queue: 1024,
            hub_capacity: 65_536,
            session_timeout: Duration::from_secs(6),
            tls: None,
            auth_token: None,
            pairs: candles_core::Pair::defaults(),
            trade_times: candles_core::TimeBounds::default(),
            kafka_properties: candles_kafka::KafkaProperties::new(),
            grpc: GrpcLimits::default(),
        }
    }
}

/// The interval a subscription gets when it names none, if this server builds it.
pub const DEFAULT_INTERVAL: Interval = Interval::seconds(5);

impl ServiceConfig {
    /// Every interval built and served, finest first: [`ServiceConfig::intervals`], or the one
    /// interval of `engine` when that is `None`.
    pub fn intervals(&self) -> Intervals {
        self.intervals
            .unwrap_or_else(|| Intervals::one(self.engine.interval))
    }

    /// The engine configuration, its interval the finest built.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            interval: self.intervals().finest(),
            ..self.engine
        }
    }

    /// The interval of subscriptions that name none: [`DEFAULT_INTERVAL`] when built, else the
    /// finest.
    pub fn default_interval(&self) -> Interval {
        let intervals = self.intervals();
        if intervals.contains(DEFAULT_INTERVAL) {
            DEFAULT_INTERVAL
        } else {
            intervals.finest()
        }
    }

    /// Checks the values that have no natural type-level bound.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.history_max == 0 || self.history_max > u32::MAX as usize {
            bail!(
                "invalid history max {}: expected 1..={} (--history-max / CANDLES_HISTORY_MAX)",
                self.history_max,
                u32::MAX
            );
        }
        let intervals = self.intervals();
        if let Some((finer, coarser)) = intervals
            .as_slice()
            .windows(2)
            .map(|w| (w[0], w[1]))
            .max_by_key(|(f, c)| c.micros() / f.micros())
            && self.history_max < (coarser.micros() / finer.micros()) as usize
        {
            bail!(
                "history max {} is too small for the intervals {intervals}: one {coarser} window holds {} {finer} candles, and after a restart its open part is restored from that history; raise --history-max",
                self.history_max,
                coarser.micros() / finer.micros()
            );
        }
        if self.client_queue == 0 {
            bail!("invalid client queue 0: expected at least 1 message");
        }
        if self.update_interval.is_zero() {
            bail!(
                "invalid update interval 0: expected a positive duration such as 250ms (--update-interval / CANDLES_UPDATE_INTERVAL)"
            );
        }
        if self.engine.grace.0 < 0 {
            bail!("invalid grace {}: expected zero or more", self.engine.grace);
        }
        if self.pairs.len() > MAX_PAIRS {
            bail!(
                "{} pairs given (--pairs / CANDLES_PAIRS); one deployment serves at most {MAX_PAIRS}: split them across deployments",
                self.pairs.len()
            );
        }
        if self.trade_times.max_age.0 <= 0 || self.trade_times.max_lead.0 < 0 {
            bail!(
                "invalid trade time window: --max-trade-age must be positive and --max-trade-lead zero or more (got {} and {})",
                self.trade_times.max_age,
                self.trade_times.max_lead
            );
        }
        self.grpc.validate()?;
        if self.auth_token.as_deref().is_some_and(str::is_empty) {
            bail!(
                "the auth token is empty: pass a non-empty --auth-token / CANDLES_AUTH_TOKEN, or none to disable auth"
            );
        }
        Ok(())
    }
}

/// A TLS certificate chain and private key, both PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads both files: `(cert, key)`.
    pub async fn load(&self) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let cert = tokio::fs::read(&self.cert).await.with_context(|| {
            format!(
                "cannot read the TLS certificate {} (--tls-cert)",
                self.cert.display()
            )
        })?;
        let key = tokio::fs::read(&self.key).await.with_context(|| {
            format!("cannot read the TLS key {} (--tls-key)", self.key.display())
        })?;
        Ok((cert, key))
    }
}

/// Limits that keep hostile or broken gRPC clients from exhausting the server (connections,
/// streams, memory, file descriptors). `None` durations switch a limit off.
#[derive(Clone, Debug)]
pub struct GrpcLimits {
    /// Concurrent connections; beyond it a new connection is closed at once.
    pub max_connections: usize,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`: concurrent calls per connection.
    pub max_streams_per_connection: u32,
    /// A connection with no open stream for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// A connection older than this is asked to go away (GOAWAY; open streams may finish).
    pub max_connection_age: Option<Duration>,
    /// HTTP/2 PING interval; a peer that does not answer within `http2_keepalive_timeout` is
    /// disconnected (also one that stopped reading its socket).
    pub http2_keepalive_interval: Option<Duration>,
    /// How long a PING may go unanswered.
    pub http2_keepalive_timeout: Duration,
    /// TCP keepalive idle time on accepted sockets.
    pub tcp_keepalive: Option<Duration>,
    /// Largest request message accepted (bytes); larger ones get a short `RESOURCE_EXHAUSTED`.
    pub max_request_bytes: usize,
    /// HTTP/2 receive window per stream (bytes): what a client may send ahead of the server.
    pub stream_window: u32,
    /// HTTP/2 receive window per connection (bytes).
    pub connection_window: u32,
    /// After a slow client was dropped, how long its status may take to leave; then its whole
    /// connection is closed, which frees everything queued for it.
    pub slow_client_grace: Duration,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        GrpcLimits {
            max_connections: 1024,
            max_streams_per_connection: 16,
            idle_timeout: Some(Duration::from_secs(120)),
            max_connection_age: None,
            http2_keepalive_interval: Some(Duration::from_secs(30)),
            http2_keepalive_timeout: Duration::from_secs(10),
            tcp_keepalive: Some(Duration::from_secs(60)),
            max_request_bytes: 64 * 1024,
            stream_window: 64 * 1024,
            connection_window: 256 * 1024,
            slow_client_grace: Duration::from_secs(30),
        }
    }
}

impl GrpcLimits {
    /// Checks the values that have no natural type-level bound.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_connections == 0 {
            bail!("invalid --grpc-max-connections 0: expected at least 1");
        }
        if self.max_streams_per_connection == 0 {
            bail!("invalid --grpc-max-streams 0: expected at least 1");
        }
        if self.max_request_bytes < 1024 {
            bail!(
                "invalid --grpc-max-request-bytes {}: expected at least 1024",
                self.max_request_bytes
            );
        }
        if self.stream_window < 65_535 || self.connection_window < 65_535 {
            bail!(
                "invalid HTTP/2 window: expected at least 65535 bytes (the protocol's initial window)"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_served_set_and_its_default_interval() {
        let one = ServiceConfig::default();
        assert_eq!(one.intervals().as_slice(), &[Interval::seconds(5)]);
        let mut config = ServiceConfig {
            intervals: Some(Intervals::default_set()),
            ..ServiceConfig::default()
        };
        assert_eq!(config.intervals().len(), 8);
        assert_eq!(config.default_interval(), DEFAULT_INTERVAL);
        assert_eq!(config.engine_config().interval, Interval::seconds(1));
        config.intervals = Some("1m,1h".parse().unwrap());
        assert_eq!(
            config.default_interval(),
            Interval::seconds(60),
            "5s is not built: the finest"
        );
        assert_eq!(config.engine_config().interval, Interval::seconds(60));
    }

    #[test]
    fn history_holds_what_restores_a_coarse_window() {
        let mut config = ServiceConfig {
            intervals: Some(Intervals::default_set()),
            history_max: 11,
            ..ServiceConfig::default()
        };
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("1m window holds 12 5s candles"), "{e}");
        config.history_max = 12;
        config.validate().unwrap();
        config.intervals = None;
        config.history_max = 1;
        config.validate().unwrap();
    }
}
