//! `exchange-sim`: a local exchange for tests, benchmarks and demos.
//!
//! It speaks the public trade protocols of Binance, Kraken (WebSocket v2) and Coinbase Exchange
//! on one TCP port: WebSocket upgrades get the exchange's trade stream, plain HTTP requests get the
//! exchange's public REST trades endpoints (for gap backfill). Trades come from a seeded random
//! walk ([`TradeSource::Synthetic`]) or from a recorded file ([`TradeSource::Replay`]), and every
//! trade is kept as ground truth ([`SimHandle::trades`]) so tests can compare what a connector
//! produced with what the exchange sent. Faults (drops, disconnects, stalls, garbage) are opt-in.
#![forbid(unsafe_code)]

mod binance;
mod coinbase;
mod faults;
mod generator;
mod http;
mod klines;
mod kraken;
mod market;
mod ratelimit;
mod registry;
mod replay;
mod server;
mod venue;

use anyhow::Context as _;
use candles_core::{Exchange, Pair, Trade};
use market::Market;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    /// Probability that a trade message to a client is silently not sent (creates trade id
    /// gaps; REST still serves the trade). Acks, snapshots and heartbeats are never dropped.
    pub drop_ratio: f64,
    /// Each connection, [`Timing::stall_after`] after subscribing, goes fully silent (no trades,
    /// heartbeats or pongs) for this long, then resumes.
    pub stall: Option<Duration>,
    /// Probability of an extra garbage/invalid message before each trade message to a client:
    /// truncated JSON, non-JSON text, JSON of an unknown shape, or the trade's own shape with an
    /// invalid price (never a different valid trade).
    pub malformed_ratio: f64,
    /// Hostile input: every this many synthetic trades, one is dated 1970-01-01T00:00:01Z or
    /// 2100-01-01T00:00:00Z (alternately). It is a real trade (its id is in the sequence, it is
    /// ground truth, REST serves it); of every four, the first two are sent on the WebSocket and
    /// the other two are kept off it, so a client meets them through REST gap fill. Trade ids
    /// are paged by id on Binance and Coinbase; Kraken's REST pages by time, where a 1970
    /// trade in the middle of the history is never found.
    pub absurd_time_every: Option<u64>,
    /// Hostile input: after every this many trade messages to a client, one trade message of
    /// a pair it did not subscribe to (XRP-USDT, else BNB-USDT, else DOGE-USDT; not ground
    /// truth).
    pub unsubscribed_every: Option<u64>,
    /// Hostile input: once per connection, right after its first trade message, a garbage text
    /// frame of this many bytes (e.g. 1 MB).
    pub huge_frame: Option<usize>,
    /// Each exchange's own rate-limit answer when a client exceeds its published public REST
    /// limit (Binance 429 + `Retry-After`, then 418; Kraken `EGeneral:Too many requests`;
    /// Coinbase 429); see [`SimHandle::rate_limited`].
    pub rest_limit: bool,
    /// Synthetic trades: this share of trades are split fills, stamped with the time of the
    /// pair's trade before them; every other trade gets a later time than the one before it.
    /// `0` keeps wall-clock times (bursts share a time).
    pub split_ratio: f64,
    /// Kraken's WebSocket (krakenfx/api-go#36): a synthetic trade that shares its timestamp
    /// with the pair's trade before it is never sent on the WebSocket (REST still lists it).
    pub omit_split_trades: bool,
    /// Synthetic trades: this share of trades is lost without an id gap — never sent on the
    /// WebSocket nor listed by REST, the ids of the rest contiguous — while the exchange's
    /// candles count them (see [`SimHandle::hidden`]).
    pub hide_ratio: f64,
    /// With `hide_ratio`: the fault ends at this instant (trades dated from it on are never
    /// hidden), so a run shows the fault, then the fault off again. `None`: for the whole run.
    pub hide_until: Option<candles_core::Micros>,
    /// Stop generating (or replaying) after this many trades in total; heartbeats and REST keep
    /// working.
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
            absurd_time_every: None,
            unsubscribed_every: None,
            huge_frame: None,
            rest_limit: false,
            split_ratio: 0.0,
            omit_split_trades: false,
            hide_ratio: 0.0,
            hide_until: None,
            max_trades: None,
            seed: 1,
            trade_log: None,
            timing: Timing::default(),
        }
    }
}

/// A running simulator. Dropping it stops it (without waiting); [`SimHandle::stop`] also waits
/// until every connection is closed.
pub struct SimHandle {
    addr: SocketAddr,
    exchange: Exchange,
    market: Arc<Market>,
    limiter: Option<Arc<ratelimit::Limiter>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl SimHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL a connector passes as `--ws-url`: Binance `ws://ADDR/ws`, Kraken `ws://ADDR/v2`,
    /// Coinbase `ws://ADDR/`.
    pub fn ws_url(&self) -> String {
        ws_url(self.exchange, self.addr)
    }

    /// The REST base URL, `http://ADDR`.
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Ground truth: every trade generated so far, in generation order (dropped ones included).
    /// Prices, quantities and times are exactly what the wire carries (e.g. Binance's
    /// 8-decimal text and millisecond times).
    pub fn trades(&self) -> Vec<Trade> {
        self.market.trades()
    }

    /// The trades lost without an id gap (`hide_ratio`): in the exchange's candles only.
    pub fn hidden(&self) -> Vec<Trade> {
        self.market.hidden()
    }

    /// How many trades have been generated so far.
    pub fn generated(&self) -> u64 {
        self.market.generated()
    }

    /// Whether generation has finished (`max_trades` reached or the replay file exhausted).
    pub fn done(&self) -> bool {
        self.market.done()
    }

    /// The listed pairs (the configured ones, plus those a replay file names).
    pub fn pairs(&self) -> Vec<Pair> {
        self.market.listed.clone()
    }

    /// How many WebSocket connections have been accepted so far.
    pub fn connections(&self) -> u64 {
        self.market
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many REST requests have been answered so far (rate-limit answers included).
    pub fn rest_requests(&self) -> u64 {
        self.market
            .rest_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// With [`SimConfig::rest_limit`]: REST requests answered with a rate-limit response.
    pub fn rate_limited(&self) -> u64 {
        self.limiter.as_ref().map_or(0, |l| l.limited())
    }

    /// With [`SimConfig::rest_limit`]: of those, requests that came while the client had
    /// already been told to wait (violations after a first rate-limit answer; Binance's 418s).
    pub fn rate_limit_violations(&self) -> u64 {
        self.limiter.as_ref().map_or(0, |l| l.violations())
    }

    /// Stops listening, closes every connection and waits (up to 5 s) for all tasks to end.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("exchange-sim: some connections did not close within 5 s");
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The WebSocket URL of a simulator of `exchange` listening on `addr`.
pub fn ws_url(exchange: Exchange, addr: SocketAddr) -> String {
    format!("ws://{addr}{}", registry::venue(exchange).ws_path())
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A probability outside [0, 1].
    #[error("{name} is {value}: it must be a probability between 0 and 1 (e.g. 0.01 for 1%)")]
    Ratio {
        /// Which setting.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// A rate or speed that is not a positive number.
    #[error("{name} is {value}: it must be a positive number")]
    NotPositive {
        /// Which setting.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// No pairs.
    #[error("no pairs are listed: give at least one pair, e.g. BTC-USDT")]
    NoPairs,
}

fn check(config: &SimConfig) -> Result<(), ConfigError> {
    for (name, value) in [
        ("drop_ratio", config.drop_ratio),
        ("malformed_ratio", config.malformed_ratio),
        ("split_ratio", config.split_ratio),
    ] {
        if !(0.0..=1.0).contains(&value) {
            return Err(ConfigError::Ratio { name, value });
        }
    }
    match config.source {
        TradeSource::Synthetic { rate } if !(rate >= 0.0 && rate.is_finite()) => {
            Err(ConfigError::NotPositive {
                name: "rate",
                value: rate,
            })
        }
        TradeSource::Synthetic { .. } if config.pairs.is_empty() => Err(ConfigError::NoPairs),
        TradeSource::Replay {
            speed: Speed::Factor(f),
            ..
        } if !(f > 0.0 && f.is_finite()) => Err(ConfigError::NotPositive {
            name: "speed",
            value: f,
        }),
        _ => Ok(()),
    }
}

/// Opens `--trade-log` for appending.
fn open_trade_log(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the trade log {} for appending", path.display()))
}

/// The faults every connection applies.
fn fault_config(config: &SimConfig) -> faults::FaultConfig {
    faults::FaultConfig {
        disconnect_every: config.disconnect_every,
        drop_ratio: config.drop_ratio,
        stall: config.stall,
        stall_after: config.timing.stall_after,
        malformed_ratio: config.malformed_ratio,
        unsubscribed_every: config.unsubscribed_every,
        huge_frame: config.huge_frame,
    }
}

/// The pairs the simulator lists: the configured ones, then any other a recording trades.
fn listed_pairs(pairs: &[Pair], recording: Option<&replay::Recording>) -> Vec<Pair> {
    let mut listed = pairs.to_vec();
    for pair in recording.into_iter().flat_map(replay::Recording::pairs) {
        if !listed.contains(&pair) {
            listed.push(pair);
        }
    }
    listed
}

/// Starts a simulator: binds `config.listen`, starts the trade source and serves clients.
pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
    check(&config)?;
    let venue = registry::venue(config.exchange);
    let recording = match &config.source {
        TradeSource::Replay { path, .. } => Some(replay::Recording::load(path, &*venue)?),
        TradeSource::Synthetic { .. } => None,
    };
    let listed = listed_pairs(&config.pairs, recording.as_ref());
    let trade_log = config
        .trade_log
        .as_deref()
        .map(open_trade_log)
        .transpose()?;
    let market = Arc::new(Market::new(config.exchange, listed, trade_log));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is the port in use? Use another --listen address or port 0",
                config.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let limiter = config.rest_limit.then(|| {
        Arc::new(ratelimit::Limiter::new(
            venue.rest_limit(),
            config.exchange.as_str(),
        ))
    });
    let shared = Arc::new(server::Shared {
        market: market.clone(),
        venue,
        faults: fault_config(&config),
        timing: config.timing,
        seed: config.seed,
        cancel: cancel.clone(),
        limiter: limiter.clone(),
    });
    tracker.spawn(server::accept_loop(
        listener,
        shared.clone(),
        tracker.clone(),
    ));
    if let (TradeSource::Replay { speed, .. }, Some(recording)) = (&config.source, recording) {
        tracker.spawn(replay::run(
            recording,
            *speed,
            config.max_trades,
            market.clone(),
            cancel.clone(),
        ));
    } else if let TradeSource::Synthetic { rate } = config.source {
        let generator = generator::Generator {
            rate,
            max_trades: config.max_trades,
            seed: config.seed,
            pairs: config.pairs,
            absurd_time_every: config.absurd_time_every,
            split_ratio: config.split_ratio,
            omit_split_trades: config.omit_split_trades,
            hide_ratio: config.hide_ratio,
            hide_until: config.hide_until,
        };
        tracker.spawn(generator.run(shared, cancel.clone()));
    }
    tracing::info!(%addr, exchange = %config.exchange, "exchange-sim listening");
    Ok(SimHandle {
        addr,
        exchange: config.exchange,
        market,
        limiter,
        cancel,
        tracker,
    })
}
