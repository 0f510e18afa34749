//! Command-line flags (each with a `CANDLES_*` environment variable) and the program's modes:
//! the dashboard, `--plain`/`--json` lines, fed by the gRPC server or, with `--embedded`, by
//! connectors and a candle engine inside this process.

use crate::app::{App, Event};
use crate::client::{self, ClientConfig};
use crate::embedded::{self, EmbeddedConfig};
use crate::output::{self, Format, Outcome};
use candles_core::time::Duration;
use candles_core::{Exchange, Interval, Micros, Pair, Source};
use clap::{ArgAction, Parser};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn dedup<T: PartialEq>(items: &mut Vec<T>) {
    let mut seen = 0;
    while seen < items.len() {
        if items[..seen].contains(&items[seen]) {
            items.remove(seen);
        } else {
            seen += 1;
        }
    }
}

/// The candles client: a live candlestick dashboard, `--plain`/`--json` lines, `--embedded`.
#[derive(Clone, Debug, Parser)]
#[command(name = "candles-tui", version, about, long_about = None)]
pub struct Cli {
    /// candles-service gRPC address (http:// or https://).
    #[arg(long, env = "CANDLES_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Pairs, comma-separated, in any spelling: btcusdt, BTC-USDT, btc/usdt, BTC_USDT.
    #[arg(long, env = "CANDLES_PAIRS", default_value = candles_core::pair::DEFAULT_PAIRS, value_delimiter = ',')]
    pub pairs: Vec<Pair>,
    /// Source(s): composite, binance, kraken, coinbase. The dashboard starts on the first (`s`
    /// cycles); --plain/--json print every one listed.
    #[arg(
        long,
        env = "CANDLES_SOURCE",
        default_value = "composite",
        value_delimiter = ','
    )]
    pub source: Vec<Source>,
    /// Finalized candles per pair and source to fetch first (and again after a reconnect).
    #[arg(long, env = "CANDLES_HISTORY", default_value_t = 120)]
    pub history: u32,
    /// Stream in-progress candles too, so the forming candle moves (`--live false` to turn off).
    #[arg(long, env = "CANDLES_LIVE", default_value_t = true, action = ArgAction::Set)]
    pub live: bool,
    /// Bearer token for the server, if it asks for one.
    #[arg(long, env = "CANDLES_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// One human-readable line per finalized candle on stdout, instead of the dashboard.
    #[arg(long, env = "CANDLES_PLAIN", conflicts_with = "json")]
    pub plain: bool,
    /// One JSON object per finalized candle per line on stdout, instead of the dashboard.
    #[arg(long, env = "CANDLES_JSON")]
    pub json: bool,
    /// No server: run the exchange connectors and the candle engine inside this process (no
    /// history: the chart fills as trades arrive).
    #[arg(long, env = "CANDLES_EMBEDDED")]
    pub embedded: bool,
    /// --embedded: exchanges to connect to.
    #[arg(
        long,
        env = "CANDLES_EXCHANGES",
        default_value = "binance,kraken,coinbase",
        value_delimiter = ','
    )]
    pub exchanges: Vec<Exchange>,
    /// --embedded: Binance WebSocket URL (default: the real endpoint).
    #[arg(long, env = "CANDLES_BINANCE_WS_URL")]
    pub binance_ws_url: Option<String>,
    /// --embedded: Binance REST URL (default: the real endpoint).
    #[arg(long, env = "CANDLES_BINANCE_REST_URL")]
    pub binance_rest_url: Option<String>,
    /// --embedded: Kraken WebSocket URL (default: the real endpoint).
    #[arg(long, env = "CANDLES_KRAKEN_WS_URL")]
    pub kraken_ws_url: Option<String>,
    /// --embedded: Kraken REST URL (default: the real endpoint).
    #[arg(long, env = "CANDLES_KRAKEN_REST_URL")]
    pub kraken_rest_url: Option<String>,
    /// --embedded: Coinbase WebSocket URL (default: the real endpoint).
    #[arg(long, env = "CANDLES_COINBASE_WS_URL")]
    pub coinbase_ws_url: Option<String>,
    /// --embedded: Coinbase REST URL (default: the real endpoint).
    #[arg(long, env = "CANDLES_COINBASE_REST_URL")]
    pub coinbase_rest_url: Option<String>,
    /// --embedded: candle interval (500ms, 5s, 1m, ...).
    #[arg(long, env = "CANDLES_INTERVAL", default_value = "5s")]
    pub interval: Interval,
    /// --embedded: how long a window stays open after its end for late trades.
    #[arg(long, env = "CANDLES_GRACE", default_value = "1500ms")]
    pub grace: Duration,
    /// --embedded: how often the forming candle is updated.
    #[arg(long, env = "CANDLES_UPDATE_INTERVAL", default_value = "20ms")]
    pub update_interval: Duration,
    /// Log file. Default: a daily-rotated file under ~/.cache/candles/logs (or the temp dir).
    /// Logs never go to the screen.
    #[arg(long, env = "CANDLES_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "CANDLES_LOG", default_value = "info")]
    pub log: String,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9102); off by default.
    #[arg(long, env = "CANDLES_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

impl Cli {
    /// Parses flags and the environment, dropping repeated pairs, sources and exchanges.
    pub fn parse_args() -> Cli {
        Cli::parse().normalized()
    }

    /// Drops repeated pairs, sources and exchanges (first mention wins).
    pub fn normalized(mut self) -> Cli {
        dedup(&mut self.pairs);
        dedup(&mut self.source);
        dedup(&mut self.exchanges);
        self
    }

    /// The output mode: a line format, or `None` for the dashboard. Without a terminal on stdout
    /// the dashboard is impossible, so plain lines are printed instead.
    pub fn format(&self) -> Option<Format> {
        if self.json {
            Some(Format::Json)
        } else if self.plain || !std::io::stdout().is_terminal() {
            Some(Format::Plain)
        } else {
            None
        }
    }

    fn embedded_config(&self) -> EmbeddedConfig {
        let urls = |e: Exchange| match e {
            Exchange::Binance => (self.binance_ws_url.clone(), self.binance_rest_url.clone()),
            Exchange::Kraken => (self.kraken_ws_url.clone(), self.kraken_rest_url.clone()),
            Exchange::Coinbase => (self.coinbase_ws_url.clone(), self.coinbase_rest_url.clone()),
        };
        EmbeddedConfig {
            pairs: self.pairs.clone(),
            exchanges: self
                .exchanges
                .iter()
                .map(|e| (*e, urls(*e).0, urls(*e).1))
                .collect(),
            interval: self.interval,
            grace: self.grace,
            update_interval: self.update_interval,
            live: self.live,
        }
    }

    fn client_config(&self, sources: Vec<Source>, exit_on_eof: bool) -> ClientConfig {
        let mut cfg = ClientConfig::new(self.server.clone(), self.pairs.clone());
        cfg.sources = sources;
        cfg.history = self.history;
        cfg.live = self.live;
        cfg.token = self.token.clone();
        cfg.exit_on_eof = exit_on_eof;
        cfg
    }
}

/// Starts the data source (server client or embedded pipeline) feeding `tx`.
fn start_source(
    cli: &Cli,
    sources: Vec<Source>,
    exit_on_eof: bool,
    tx: mpsc::Sender<Event>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    if cli.embedded {
        embedded::start(cli.embedded_config(), tx, tracker, shutdown.clone())?;
    } else {
        let cfg = cli.client_config(sources, exit_on_eof);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            if let Err(e) = client::run(cfg, tx, shutdown).await {
                tracing::error!(error = %e, "client stopped");
            }
        });
    }
    Ok(())
}

/// Resolves when the process is asked to stop (SIGTERM, SIGHUP), so the terminal is restored.
async fn terminated() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(mut term), Ok(mut hup)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            },
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        std::future::pending().await
    }
}

/// Runs the program; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (tx, mut rx) = mpsc::channel::<Event>(4_096);
    let code = match cli.format() {
        Some(format) => {
            start_source(&cli, cli.source.clone(), true, tx, &tracker, &shutdown)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let outcome = tokio::select! {
                outcome = output::print(format, &cli.pairs, &cli.source, &mut rx, &mut out) => outcome?,
                _ = tokio::signal::ctrl_c() => Outcome::Done,
            };
            match outcome {
                Outcome::Done => std::process::ExitCode::SUCCESS,
                Outcome::Failed(message) => {
                    eprintln!("candles-tui: {message}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        None => {
            // The dashboard subscribes to every source so `s` switches without a round trip.
            start_source(
                &cli,
                Source::ALL.to_vec(),
                false,
                tx.clone(),
                &tracker,
                &shutdown,
            )?;
            tracker.spawn(crate::event::forward_terminal_events(
                tx.clone(),
                shutdown.clone(),
            ));
            tracker.spawn(crate::event::tick(
                tx,
                std::time::Duration::from_secs(1),
                shutdown.clone(),
            ));
            let origin = if cli.embedded {
                "embedded".to_string()
            } else {
                cli.server.clone()
            };
            let mut app = App::new(
                cli.pairs.clone(),
                cli.source.first().copied().unwrap_or(Source::Composite),
                origin,
            );
            let mut terminal = ratatui::init();
            let result = tokio::select! {
                result = crate::event::run(&mut terminal, &mut app, &mut rx, Micros::now) => result,
                signal = terminated() => {
                    tracing::info!(signal, "terminated by a signal");
                    Ok(())
                }
            };
            ratatui::restore();
            result?;
            match app.fatal {
                Some(message) => {
                    eprintln!("candles-tui: {message}");
                    std::process::ExitCode::FAILURE
                }
                None => std::process::ExitCode::SUCCESS,
            }
        }
    };
    shutdown.cancel();
    tracker.close();
    drop(rx);
    // Tasks end promptly on cancel; don't let a stuck one hold the process.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), tracker.wait()).await;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_errors_name_the_input() {
        let cli = Cli::try_parse_from([
            "candles-tui",
            "--pairs",
            "btcusdt,eth/usdt,BTC_USDT",
            "--source",
            "kraken,composite",
        ])
        .unwrap()
        .normalized();
        assert_eq!(
            cli.pairs.iter().map(Pair::to_string).collect::<Vec<_>>(),
            ["BTC-USDT", "ETH-USDT"]
        );
        assert_eq!(
            cli.source,
            [Source::Exchange(Exchange::Kraken), Source::Composite]
        );
        assert!(cli.live);
        assert_eq!(cli.history, 120);
        assert_eq!(cli.interval, Interval::seconds(5));
        let cli = Cli::try_parse_from([
            "candles-tui",
            "--live",
            "false",
            "--embedded",
            "--exchanges",
            "kraken",
        ])
        .unwrap();
        assert!(!cli.live && cli.embedded);
        assert_eq!(cli.exchanges, [Exchange::Kraken]);
        let err = Cli::try_parse_from(["candles-tui", "--pairs", "btc"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"btc\""), "{err}");
        let err = Cli::try_parse_from(["candles-tui", "--source", "ftx"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ftx") && err.contains("composite"), "{err}");
        assert!(Cli::try_parse_from(["candles-tui", "--plain", "--json"]).is_err());
    }
}
