//! Command-line flags (each with a `CANDLES_*` environment variable) and what they choose: the
//! dashboard or `--plain`/`--json` lines, fed by the gRPC server or, with `--embedded`, by
//! connectors and a candle engine inside this process (run by [`crate::modes`]).

use crate::client::{self, ClientConfig};
use crate::embedded_config::{self, EmbeddedConfig, ExchangeUrl};
use crate::output::Format;
use crate::overlay::MA_RANGE;
use crate::settings::{self, Settings};
use candles_core::time::Duration;
use candles_core::{Exchange, Interval, Intervals, Pair, Source};
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// candles-service gRPC address: http://HOST:PORT or https://HOST:PORT.
    #[arg(
        long,
        env = "CANDLES_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_parser = server_url
    )]
    pub server: String,
    /// Pairs, comma-separated, in any spelling: btcusdt, BTC-USDT, btc/usdt, BTC_USDT.
    #[arg(long, env = "CANDLES_PAIRS", default_value = candles_core::pair::DEFAULT_PAIRS, value_delimiter = ',')]
    pub pairs: Vec<Pair>,
    /// Source(s): composite (all exchanges together) or one exchange. The dashboard starts on
    /// the first (`s` cycles); --plain/--json print every one listed.
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
    /// Verdicts on each exchange's 1-minute candles, checked against the exchange's own: the
    /// badge on each panel, `--json` objects, a `--plain` line per mismatch (`--verifications
    /// false` to leave them out).
    #[arg(long, env = "CANDLES_VERIFICATIONS", default_value_t = true, action = ArgAction::Set)]
    pub verifications: bool,
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
    /// --embedded: exchanges to connect to (default: every exchange there is a connector for).
    #[arg(
        long,
        env = "CANDLES_EXCHANGES",
        default_values_t = Exchange::ALL,
        value_delimiter = ','
    )]
    pub exchanges: Vec<Exchange>,
    /// --embedded: an exchange's WebSocket URL, as EXCHANGE=URL (repeatable, or comma-separated;
    /// default: the real endpoint), e.g. --ws-url binance=ws://127.0.0.1:9001.
    #[arg(
        long = "ws-url",
        env = "CANDLES_WS_URLS",
        value_name = "EXCHANGE=URL",
        value_delimiter = ','
    )]
    pub ws_url: Vec<ExchangeUrl>,
    /// --embedded: an exchange's REST base URL, as EXCHANGE=URL (repeatable, or comma-separated;
    /// default: the real endpoint), e.g. --rest-url binance=http://127.0.0.1:9002.
    #[arg(
        long = "rest-url",
        env = "CANDLES_REST_URLS",
        value_name = "EXCHANGE=URL",
        value_delimiter = ','
    )]
    pub rest_url: Vec<ExchangeUrl>,
    /// Candle interval shown (500ms, 5s, 1m, ...). Against a server: one it builds (default: the
    /// server's default; `<` / `>` step through the ones it builds). --embedded: one of
    /// --intervals (added to them when not listed; default 5s, else the finest).
    #[arg(long, env = "CANDLES_INTERVAL")]
    pub interval: Option<Interval>,
    /// --embedded: the intervals built in-process (the service's default set); `<` / `>` step
    /// through them, the chart refilled from the candles built since start.
    #[arg(long, env = "CANDLES_INTERVALS", default_value = Intervals::DEFAULT)]
    pub intervals: Intervals,
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
    /// Moving-average period in candles (the `m` overlay; `[` / `]` change it).
    #[arg(long, env = "CANDLES_MA", value_parser = ma_period)]
    pub ma: Option<usize>,
    /// Settings file (pairs, source, overlays, zoom; saved on change and at exit). Default:
    /// $XDG_CONFIG_HOME/candles/tui.json or ~/.config/candles/tui.json.
    #[arg(long, env = "CANDLES_CONFIG")]
    pub config: Option<PathBuf>,
    /// Neither read nor write the settings file.
    #[arg(long, env = "CANDLES_NO_CONFIG")]
    pub no_config: bool,
    /// `--pairs` / `--source` were given: they win over the settings file.
    #[arg(skip)]
    pub pairs_given: (bool, bool),
    /// Flags given that this mode does not use (e.g. `--interval` without `--embedded`).
    #[arg(skip)]
    pub ignored: Vec<&'static str>,
    /// `--history` was given (not the default), so capping it is worth a notice.
    #[arg(skip)]
    pub history_given: bool,
}

/// The `--ma` value parser: a period in [`MA_RANGE`].
fn ma_period(value: &str) -> Result<usize, String> {
    let n: usize = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number of candles"))?;
    if MA_RANGE.contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{n} is not in {}..={}",
            MA_RANGE.start(),
            MA_RANGE.end()
        ))
    }
}

/// The `--server` value parser: the value if usable, else an error naming it and the form.
fn server_url(value: &str) -> Result<String, String> {
    client::check_server(value).map(|()| value.to_string())
}

/// Flags that only `--embedded` uses, and flags that only the server mode uses (clap ids).
const EMBEDDED_ONLY: [&str; 6] = [
    "exchanges",
    "intervals",
    "ws_url",
    "rest_url",
    "grace",
    "update_interval",
];
/// See [`EMBEDDED_ONLY`].
const SERVER_ONLY: [&str; 3] = ["server", "history", "token"];

/// The flags given (on the command line or in the environment) that the chosen mode ignores.
fn ignored_flags(matches: &clap::ArgMatches, embedded: bool) -> Vec<&'static str> {
    let unused: &[&'static str] = if embedded {
        &SERVER_ONLY
    } else {
        &EMBEDDED_ONLY
    };
    unused
        .iter()
        .copied()
        .filter(|id| given(matches, id))
        .collect()
}

/// Whether flag `id` was given on the command line or in the environment (not defaulted).
fn given(matches: &clap::ArgMatches, id: &str) -> bool {
    use clap::parser::ValueSource;
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// `--ws-url` for the clap id `ws_url`.
fn flag_name(id: &str) -> String {
    format!("--{}", id.replace('_', "-"))
}

impl Cli {
    /// Parses flags and the environment, dropping repeated pairs, sources and exchanges; a bad
    /// value exits with code 2 and an error naming it.
    pub fn parse_args() -> Cli {
        Cli::try_parse_with_ignored(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// [`Cli::parse_args`] over `args`, without exiting.
    pub fn try_parse_with_ignored<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?.normalized();
        cli.ignored = ignored_flags(&matches, cli.embedded);
        cli.history_given = given(&matches, "history");
        cli.pairs_given = (given(&matches, "pairs"), given(&matches, "source"));
        Ok(cli)
    }

    /// What to tell the user before starting: flags the chosen mode does not use.
    pub fn notices(&self) -> Vec<String> {
        if self.ignored.is_empty() {
            return Vec::new();
        }
        let names: Vec<String> = self.ignored.iter().map(|id| flag_name(id)).collect();
        let verb = if names.len() == 1 { "is" } else { "are" };
        let why = if self.embedded {
            "not used with --embedded (no server)"
        } else {
            "only used with --embedded (the server decides)"
        };
        vec![format!("{} {verb} {why}; ignored", names.join(", "))]
    }

    /// Where the data comes from, for the title bar.
    pub fn origin(&self) -> String {
        if self.embedded {
            embedded_config::origin(&self.embedded_feeds())
        } else {
            self.server.clone()
        }
    }

    /// The log file's path and what to check or try when a link is down.
    pub fn hint(&self, log: &str) -> String {
        let try_this = if !self.embedded {
            format!(
                "is candles-service running at {}? (--embedded needs no server)",
                self.server
            )
        } else if self.ws_url.is_empty() && self.rest_url.is_empty() {
            "no internet? scripts/demo.sh runs simulated exchanges offline".to_string()
        } else {
            "are the exchange URLs (--ws-url, --rest-url) right?".to_string()
        };
        format!("log: {log} · {try_this}")
    }

    /// The settings file, unless `--no-config` (see [`crate::settings::path`]).
    pub fn settings_path(&self) -> Option<PathBuf> {
        if self.no_config {
            return None;
        }
        let var = |name| std::env::var(name).ok();
        settings::path(
            self.config.as_deref(),
            var("XDG_CONFIG_HOME").as_deref(),
            var("HOME").as_deref(),
        )
    }

    /// Reads the remembered settings and takes their pairs and source where no flag gave
    /// them. Returns the settings (empty when there are none) and why the file was ignored.
    pub fn restore(&mut self) -> (Settings, Option<String>) {
        let Some(path) = self.settings_path() else {
            return (Settings::default(), None);
        };
        let settings = match settings::load(&path) {
            Ok(found) => found.unwrap_or_default(),
            Err(problem) => return (Settings::default(), Some(problem)),
        };
        if let (false, Some(pairs)) = (self.pairs_given.0, settings.pairs()) {
            self.pairs = pairs;
        }
        if let (false, Some(source)) = (self.pairs_given.1, settings.source()) {
            self.source = vec![source];
        }
        if !self.embedded && self.interval.is_none() {
            self.interval = settings.interval();
        }
        (settings, None)
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

    /// The exchanges `--embedded` connects to, with their URL overrides.
    fn embedded_feeds(&self) -> Vec<embedded_config::Feed> {
        embedded_config::feeds(&self.exchanges, &self.ws_url, &self.rest_url)
    }

    /// What `--embedded` runs; an error when `--interval` cannot be built with `--intervals`.
    pub fn embedded_config(&self) -> anyhow::Result<EmbeddedConfig> {
        let (intervals, interval) = embedded_config::intervals(self.intervals, self.interval)
            .map_err(anyhow::Error::msg)?;
        Ok(EmbeddedConfig {
            pairs: self.pairs.clone(),
            feeds: self.embedded_feeds(),
            intervals,
            interval,
            grace: self.grace,
            update_interval: self.update_interval,
            live: self.live,
            verify: self.verifications,
        })
    }

    /// What the gRPC client subscribes to: `sources`; with `exit_on_eof` (line modes) it ends
    /// with the stream.
    pub fn client_config(&self, sources: Vec<Source>, exit_on_eof: bool) -> ClientConfig {
        let mut cfg = ClientConfig::new(self.server.clone(), self.pairs.clone());
        cfg.sources = sources;
        cfg.history = self.history;
        cfg.history_given = self.history_given;
        cfg.live = self.live;
        cfg.verifications = self.verifications;
        cfg.interval = self.interval;
        cfg.token = self.token.clone();
        cfg.exit_on_eof = exit_on_eof;
        cfg
    }
}

#[cfg(test)]
mod tests;
