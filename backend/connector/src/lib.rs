//! One exchange's public trade stream → normalized, exactly-once trades → a [`TradeSink`]
//! (Kafka for the backend, a channel for `candles-tui --embedded`).
//!
//! - [`exchange`]: one module per exchange (Binance, Kraken v2, Coinbase Exchange) behind the
//!   [`exchange::Venue`] trait: URLs, subscribe and keep-alive messages, frame parsing, REST
//!   backfill and listing requests.
//! - [`sequencer`]: per-pair trade-id bookkeeping: duplicates dropped, gaps found.
//! - [`backoff`]: exponential backoff with full jitter.
//! - [`listing`]: which configured pairs the exchange lists and trades (pure rules).
//! - [`pacer`]: one exchange's REST pace (a token bucket at its public limit, hold-offs).
//! - [`rest`]: the paced REST client, gap fill (nearby gaps served by one request) and the
//!   listing check.
//! - [`session`]: the connect → subscribe → read → reconnect loop, [`run`].
//! - [`sink`]: [`TradeSink`], [`ChannelSink`].
//! - [`telemetry`]: metric names, shared counters and the log rate limit.
//! - [`verify`]: our final 1-minute candles checked against the exchange's own ([`verify::Verifier`]).
//!
//! With feature `kafka` (on by default; `candles-tui --embedded` goes without it, so it does not
//! build librdkafka):
//! - `kafka_sink`: `KafkaSink`, trades into a Kafka topic, acknowledged by every replica.
//! - `resume`: the last trade published per pair, read back from the topic after a restart.
//! - `kafka`: `--kafka-property key=value` client settings, with secrets kept out of logs.
//!
//! Guarantee: within one [`run`], every trade id of a pair is published at most once and in
//! increasing order; a gap (an id above last + 1, in-stream or after a reconnect) is filled from
//! the exchange's REST trades before the trade that revealed it. Unfillable gaps are logged and
//! counted (`connector_gap_unfilled_total`), never waited on forever. Trades made from the start
//! of the run on are owed ([`ConnectorConfig::start`]); history from before it is never
//! backfilled — snapshots of it only set each pair's reference id.
//!
//! Input bounds: a trade of a pair the connector did not subscribe to, or with a time outside
//! [`ConnectorConfig::time_bounds`], is refused and counted (`connector_rejected_total{reason}`);
//! every log line about input from outside shows only a short excerpt and is rate-limited.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod error;
pub mod exchange;
/// Kafka client properties from the user (`--kafka-property`): the shared `candles-kafka` crate.
#[cfg(feature = "kafka")]
pub use candles_kafka as kafka;
#[cfg(feature = "kafka")]
pub mod kafka_sink;
pub mod listing;
pub mod pacer;
pub mod rest;
#[cfg(feature = "kafka")]
pub mod resume;
pub mod sequencer;
pub mod session;
pub mod sink;
pub mod telemetry;
pub mod verify;

use candles_core::{Exchange, Pair};
use std::sync::Arc;
use std::time::Duration;

pub use backoff::BackoffConfig;
#[cfg(feature = "kafka")]
pub use kafka_sink::KafkaSink;
pub use rest::{check_pairs, read_listing};
pub use session::run;
pub use sink::{ChannelSink, TradeSink};
pub use telemetry::Counters;

/// Everything [`run`] needs to know. Build it with [`ConnectorConfig::new`] (real endpoints) and
/// override fields for tests or other endpoints.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// Which exchange.
    pub exchange: Exchange,
    /// Canonical pairs to stream.
    pub pairs: Vec<Pair>,
    /// WebSocket URL; `None` = the exchange's real public endpoint.
    pub ws_url: Option<String>,
    /// REST base URL; `None` = the exchange's real public endpoint.
    pub rest_url: Option<String>,
    /// Silence (no frame of any kind, pongs included) after which the socket counts as dead and
    /// is replaced. At half of it the state shows [`ConnState::Stale`].
    pub stale_after: Duration,
    /// Reconnect backoff.
    pub backoff: BackoffConfig,
    /// How often to send a keep-alive (WebSocket ping, or Kraken's application ping).
    pub keepalive_every: Duration,
    /// Reconnect proactively after this long (Binance closes connections at 24 h).
    pub max_session: Duration,
    /// Give up connecting (TCP + TLS + WebSocket handshake) after this long.
    pub connect_timeout: Duration,
    /// Timeout of one REST request.
    pub rest_timeout: Duration,
    /// The most time one gap fill may take before the rest of the gap is counted as unfilled.
    pub backfill_budget: Duration,
    /// The most trades one gap fill fetches; larger gaps are partly unfilled (and counted).
    pub backfill_max_trades: u64,
    /// Trades made (exchange trade time) from this instant on are owed to the sink, even those
    /// made before a pair's first trade reached us; older ones are history and not fetched.
    /// `None` = the moment [`run`] starts.
    pub start: Option<candles_core::Micros>,
    /// A cold pair's start-up fill reaches back to the start of the current minute
    /// ([`session::COLD_FILL`]), so this exchange's first 1m window (and its 1s/5s windows) is
    /// complete. Off by default: when other exchanges of the pair are already live, the
    /// composite windows they finalized before the fetched trades arrive stay without them
    /// (those trades are late for the composite), so the composite would no longer be the sum
    /// of its exchanges there. Off, the fill reaches back to `start` and the first windows are
    /// marked partial (DESIGN.md "Partial candles").
    pub cold_fill_minute: bool,
    /// Counters shared with whoever wants figures without scraping Prometheus (tests, the TUI).
    pub counters: Arc<Counters>,
    /// The last trade already published per pair (id, trade time), e.g. read back from Kafka by
    /// `resume::last_published` after a restart: the sequencer continues from these ids, so
    /// what was missed while down is fetched from REST and nothing is published twice.
    pub resume: std::collections::HashMap<Pair, (u64, candles_core::Micros)>,
    /// Trades (WebSocket and REST) whose time is outside this window around the wall clock are
    /// refused: counted (`connector_rejected_total{reason="implausible_time"}`), logged, never
    /// published. Default: 7 days back, 1 hour ahead (`--max-trade-age`, `--max-trade-lead`).
    pub time_bounds: candles_core::TimeBounds,
    /// The exchange's REST pace, shared by every REST user of this configuration (gap fill,
    /// the listing check; clones share it). Default: the exchange's public limit
    /// ([`exchange::Venue::rest_limit`]).
    pub rest_pacer: Arc<pacer::Pacer>,
    /// The exchange's REST symbol per pair, as its own listing names it ([`read_listing`],
    /// [`listing::symbols`]); a pair absent here is named by `candles_core::symbols`' rule.
    pub symbols: std::collections::HashMap<Pair, String>,
}

impl ConnectorConfig {
    /// A configuration for the real public endpoints of `exchange`, with sensible defaults.
    pub fn new(exchange: Exchange, pairs: Vec<Pair>) -> Self {
        ConnectorConfig {
            exchange,
            pairs,
            ws_url: None,
            rest_url: None,
            stale_after: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            keepalive_every: Duration::from_secs(5),
            max_session: Duration::from_secs(23 * 3600 + 45 * 60),
            connect_timeout: Duration::from_secs(10),
            rest_timeout: Duration::from_secs(10),
            backfill_budget: Duration::from_secs(30),
            backfill_max_trades: 50_000,
            start: None,
            cold_fill_minute: false,
            counters: Arc::default(),
            resume: Default::default(),
            time_bounds: candles_core::TimeBounds::default(),
            rest_pacer: Arc::new(pacer::Pacer::new(exchange::venue(exchange).rest_limit())),
            symbols: Default::default(),
        }
    }

    /// The WebSocket URL in effect.
    pub fn ws_url(&self) -> String {
        self.ws_url
            .clone()
            .unwrap_or_else(|| exchange::venue(self.exchange).default_ws_url().to_string())
    }

    /// The REST base URL in effect.
    pub fn rest_url(&self) -> String {
        self.rest_url.clone().unwrap_or_else(|| {
            exchange::venue(self.exchange)
                .default_rest_url()
                .to_string()
        })
    }
}

/// The connection's state, for status lines (the TUI shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Opening the socket and subscribing.
    Connecting,
    /// Subscribed and hearing from the exchange.
    Live,
    /// Nothing heard for a while (half of `stale_after`); replaced if it goes on.
    Stale,
    /// Waiting before the next attempt.
    Reconnecting {
        /// How long until the attempt, ms.
        in_ms: u64,
        /// Which attempt in a row (1 = first retry).
        attempt: u32,
    },
    /// [`run`] has returned.
    Stopped,
}

impl std::fmt::Display for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnState::Connecting => f.write_str("connecting"),
            ConnState::Live => f.write_str("live"),
            ConnState::Stale => f.write_str("stale"),
            ConnState::Reconnecting { in_ms, attempt } => {
                write!(f, "reconnecting in {in_ms} ms (attempt {attempt})")
            }
            ConnState::Stopped => f.write_str("stopped"),
        }
    }
}
