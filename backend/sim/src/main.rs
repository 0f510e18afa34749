//! `exchange-sim`: a local Binance, Kraken or Coinbase for tests, benchmarks and demos.
//!
//! The first line on stdout is always
//! `exchange-sim listening on ADDR ws=<ws_url> rest=<rest_url>`, so scripts and tests can read
//! the address (the default `--listen 127.0.0.1:0` picks a free port; several simulators, one
//! per exchange, can run side by side). Logs go to stderr.
#![forbid(unsafe_code)]

use candles_core::{Exchange, Pair};
use candles_runtime::LogFormat;
use clap::Parser;
use exchange_sim::{SimConfig, Speed, TradeSource};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A local exchange: speaks Binance, Kraken (WebSocket v2) or Coinbase Exchange public trade
/// streams and REST trades endpoints on one port, from a seeded random walk or a recording,
/// with faults on demand.
#[derive(Debug, Parser)]
#[command(name = "exchange-sim", version)]
struct Args {
    /// Which exchange's protocol to speak: binance, kraken or coinbase.
    #[arg(long, env = "SIM_EXCHANGE", default_value = "binance")]
    exchange: Exchange,

    /// Address to listen on (WebSocket and REST on the same port). Port 0 picks a free port;
    /// the chosen address is printed as the first line on stdout.
    #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// Listed pairs, comma-separated (btcusdt, BTC-USDT, btc/usdt, …). Others are unknown.
    #[arg(long, env = "SIM_PAIRS", default_value = candles_core::pair::DEFAULT_PAIRS, value_parser = parse_pairs)]
    pairs: PairList,

    /// Replay this file: one verbatim exchange message per line (a capture or a sample file).
    #[arg(long, env = "SIM_REPLAY", conflicts_with = "synthetic")]
    replay: Option<PathBuf>,

    /// Replay speed: `max` (as fast as clients take it) or a factor (`1` = real time, `10`).
    #[arg(long, env = "SIM_SPEED", default_value = "1", value_parser = parse_speed)]
    speed: Speed,

    /// Generate trades with a seeded random walk (the default when --replay is not given).
    #[arg(long, env = "SIM_SYNTHETIC")]
    synthetic: bool,

    /// Synthetic trades per second, all pairs together.
    #[arg(long, env = "SIM_RATE", default_value_t = 100.0)]
    rate: f64,

    /// Close every client socket this long after it connected (e.g. `30s`).
    #[arg(long, env = "SIM_DISCONNECT_EVERY", value_parser = parse_duration)]
    disconnect_every: Option<std::time::Duration>,

    /// Probability that a trade message to a client is silently not sent (creates id gaps).
    #[arg(long, env = "SIM_DROP_RATIO", default_value_t = 0.0)]
    drop_ratio: f64,

    /// Each connection, ~1 s after subscribing, goes silent (no trades, heartbeats or pongs)
    /// for this long, then resumes (e.g. `3s`).
    #[arg(long, env = "SIM_STALL", value_parser = parse_duration)]
    stall: Option<std::time::Duration>,

    /// Probability of an extra garbage/invalid message before each trade message.
    #[arg(long, env = "SIM_MALFORMED_RATIO", default_value_t = 0.0)]
    malformed_ratio: f64,

    /// Hostile: every N-th synthetic trade is dated 1970 or 2100 (alternately; half of them
    /// only on REST).
    #[arg(long, env = "SIM_ABSURD_TIME_EVERY")]
    absurd_time_every: Option<u64>,

    /// Hostile: after every N trade messages, a trade of a pair the client did not subscribe to.
    #[arg(long, env = "SIM_UNSUBSCRIBED_EVERY")]
    unsubscribed_every: Option<u64>,

    /// Hostile: once per connection, a garbage text frame of this many bytes (e.g. 1000000).
    #[arg(long, env = "SIM_HUGE_FRAME")]
    huge_frame: Option<usize>,

    /// Answer REST as the exchange does beyond its published public limit: Binance 429 with
    /// Retry-After (418 to who keeps asking), Kraken `EGeneral:Too many requests`, Coinbase 429.
    #[arg(long, env = "SIM_REST_LIMIT")]
    rest_limit: bool,

    /// Synthetic: this share of trades are split fills, stamped with the time of the trade
    /// before them (e.g. 0.4).
    #[arg(long, env = "SIM_SPLIT_RATIO", default_value_t = 0.0)]
    split_ratio: f64,

    /// Like Kraken's WebSocket: leave out every trade that shares its timestamp with the
    /// trade before it (REST still lists it).
    #[arg(long, env = "SIM_OMIT_SPLIT_TRADES")]
    omit_split_trades: bool,

    /// Lose this share of trades without an id gap: never sent nor listed, the ids of the
    /// rest contiguous, while the candle endpoints count them (e.g. 0.05).
    #[arg(long, env = "SIM_HIDE_RATIO", default_value_t = 0.0)]
    hide_ratio: f64,

    /// End the `--hide-ratio` fault at this instant (RFC 3339, e.g. 2026-12-07T10:31:00Z):
    /// trades from then on are never hidden.
    #[arg(long, env = "SIM_HIDE_UNTIL", value_parser = parse_time)]
    hide_until: Option<candles_core::Micros>,

    /// Stop generating after this many trades (heartbeats and REST keep working).
    #[arg(long, env = "SIM_MAX_TRADES")]
    max_trades: Option<u64>,

    /// Random seed: the same seed gives the same trades (prices, sizes, sides, ids).
    #[arg(long, env = "SIM_SEED", default_value_t = 1)]
    seed: u64,

    /// Append every generated trade to this file as one JSON line.
    #[arg(long, env = "SIM_TRADE_LOG")]
    trade_log: Option<PathBuf>,

    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9100), at /metrics.
    #[arg(long, env = "SIM_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,

    /// Log format on stderr.
    #[arg(long, env = "SIM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// A parsed `--pairs` value (a newtype so clap does not treat it as a repeated argument).
#[derive(Debug, Clone)]
struct PairList(Vec<Pair>);

fn parse_pairs(text: &str) -> Result<PairList, String> {
    Pair::parse_list(text)
        .map(PairList)
        .map_err(|e| e.to_string())
}

fn parse_speed(text: &str) -> Result<Speed, String> {
    if text.trim().eq_ignore_ascii_case("max") {
        return Ok(Speed::Max);
    }
    match text.trim().trim_end_matches('x').parse::<f64>() {
        Ok(f) if f > 0.0 && f.is_finite() => Ok(Speed::Factor(f)),
        _ => Err(format!(
            "invalid speed {text:?}: write `max` or a positive factor such as 1, 10 or 0.5"
        )),
    }
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    candles_core::time::Duration::parse(text)
        .map(|d| d.to_std())
        .map_err(|e| e.to_string())
}

fn parse_time(s: &str) -> Result<candles_core::Micros, String> {
    candles_core::Micros::parse_rfc3339(s).map_err(|e| format!("{e}; e.g. 2026-12-07T10:31:00Z"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    candles_runtime::init_logs(args.log_format, "info");
    if let Some(addr) = args.metrics_addr {
        candles_runtime::serve_metrics(addr)?;
    }
    let source = match &args.replay {
        Some(path) => TradeSource::Replay {
            path: path.clone(),
            speed: args.speed,
        },
        None => TradeSource::Synthetic { rate: args.rate },
    };
    let config = SimConfig {
        exchange: args.exchange,
        pairs: args.pairs.0,
        listen: args.listen,
        source,
        disconnect_every: args.disconnect_every,
        drop_ratio: args.drop_ratio,
        stall: args.stall,
        malformed_ratio: args.malformed_ratio,
        absurd_time_every: args.absurd_time_every,
        unsubscribed_every: args.unsubscribed_every,
        huge_frame: args.huge_frame,
        rest_limit: args.rest_limit,
        split_ratio: args.split_ratio,
        omit_split_trades: args.omit_split_trades,
        hide_ratio: args.hide_ratio,
        hide_until: args.hide_until,
        max_trades: args.max_trades,
        seed: args.seed,
        trade_log: args.trade_log,
        ..SimConfig::default()
    };
    let sim = exchange_sim::start(config).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "exchange-sim listening on {} ws={} rest={}",
            sim.addr(),
            sim.ws_url(),
            sim.rest_url()
        )?;
        stdout.flush()?;
    }
    let signal = candles_runtime::shutdown_signal().await;
    tracing::info!(signal, trades = sim.generated(), "shutting down");
    sim.stop().await;
    Ok(())
}
