//! Command-line flags (each with a `CANDLES_*` environment variable) and the program's modes:
//! the dashboard, `--plain`/`--json` lines, fed by the gRPC server or, with `--embedded`, by
//! connectors and a candle engine inside this process.

use crate::app::{App, Event};
use crate::client::{self, ClientConfig};
use crate::embedded;
use crate::embedded_config::{self, EmbeddedConfig, ExchangeUrl};
use crate::output::{Format, LineOutput, Outcome};
use crate::overlay::MA_RANGE;
use crate::settings::{self, Settings};
use candles_core::time::Duration;
use candles_core::{Exchange, Interval, Intervals, Micros, Pair, Source};
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::sync::{mpsc, watch};
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
    fn embedded_config(&self) -> anyhow::Result<EmbeddedConfig> {
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
        })
    }

    fn client_config(&self, sources: Vec<Source>, exit_on_eof: bool) -> ClientConfig {
        let mut cfg = ClientConfig::new(self.server.clone(), self.pairs.clone());
        cfg.sources = sources;
        cfg.history = self.history;
        cfg.history_given = self.history_given;
        cfg.live = self.live;
        cfg.interval = self.interval;
        cfg.token = self.token.clone();
        cfg.exit_on_eof = exit_on_eof;
        cfg
    }
}

/// Starts the data source (server client or embedded pipeline) feeding `tx`; the client
/// resubscribes with each interval sent on `intervals`.
fn start_source(
    cli: &Cli,
    sources: Vec<Source>,
    exit_on_eof: bool,
    tx: mpsc::Sender<Event>,
    intervals: watch::Receiver<Option<Interval>>,
    tasks: (&TaskTracker, &CancellationToken),
) -> anyhow::Result<()> {
    let (tracker, shutdown) = tasks;
    if cli.embedded {
        embedded::start(
            cli.embedded_config()?,
            intervals,
            tx,
            tracker,
            shutdown.clone(),
        )?;
    } else {
        let cfg = cli.client_config(sources, exit_on_eof);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            if let Err(e) = client::run_switchable(cfg, tx, shutdown, intervals).await {
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

/// Runs the program; returns the process exit code. `log` is the log file's path, shown with
/// any problem.
pub async fn run(mut cli: Cli, log: String) -> anyhow::Result<std::process::ExitCode> {
    let (settings, problem) = cli.restore();
    if let Some(problem) = &problem {
        tracing::warn!(%problem, "settings");
    }
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (tx, mut rx) = mpsc::channel::<Event>(4_096);
    let code = match cli.format() {
        Some(format) => {
            if let Some(problem) = problem {
                eprintln!("candles-tui: {problem}");
            }
            line_mode(&cli, format, &log, tx, &mut rx, &tracker, &shutdown).await?
        }
        None => {
            let view = View {
                settings,
                problem,
                log,
            };
            dashboard(&cli, view, tx, &mut rx, &tracker, &shutdown).await?
        }
    };
    shutdown.cancel();
    tracker.close();
    drop(rx);
    // Tasks end promptly on cancel; don't let a stuck one hold the process.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), tracker.wait()).await;
    Ok(code)
}

/// `--plain` / `--json`: lines on stdout, problems and notices on stderr.
async fn line_mode(
    cli: &Cli,
    format: Format,
    log: &str,
    tx: mpsc::Sender<Event>,
    rx: &mut mpsc::Receiver<Event>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<std::process::ExitCode> {
    for notice in cli.notices() {
        eprintln!("candles-tui: {notice}");
    }
    let (_keep, intervals) = watch::channel(cli.interval);
    let tasks = (tracker, shutdown);
    start_source(cli, cli.source.clone(), true, tx, intervals, tasks)?;
    let lines = LineOutput {
        format,
        pairs: &cli.pairs,
        sources: &cli.source,
        hint: cli.hint(log),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut err = std::io::stderr();
    let outcome = tokio::select! {
        outcome = lines.print(rx, &mut out, &mut err) => outcome?,
        _ = tokio::signal::ctrl_c() => Outcome::Done,
    };
    Ok(match outcome {
        Outcome::Done => std::process::ExitCode::SUCCESS,
        Outcome::Failed(message) => {
            eprintln!("candles-tui: {message}");
            std::process::ExitCode::FAILURE
        }
        Outcome::Refused(message) => {
            eprintln!("candles-tui: {message} (--interval)");
            std::process::ExitCode::from(2)
        }
    })
}

/// What the dashboard starts from besides the flags.
struct View {
    /// The remembered settings.
    settings: Settings,
    /// Why the settings file was ignored, if it was.
    problem: Option<String>,
    /// The log file's path.
    log: String,
}

/// The dashboard's state at start: flags, then the remembered view (flags win).
fn start_app(cli: &Cli, settings: &Settings) -> App {
    let mut app = App::new(
        cli.pairs.clone(),
        cli.source.first().copied().unwrap_or(Source::Composite),
        cli.origin(),
    );
    settings.apply_view(&mut app, cli.ma.is_some());
    app.embedded = cli.embedded;
    app.interval = match cli.embedded {
        true => cli.embedded_config().ok().map(|c| c.interval),
        false => cli.interval,
    };
    if let Some(period) = cli.ma {
        app.overlays.ma_period = period;
    }
    app
}

/// Saves the settings shown by `app` to `path` when they differ from `last`.
fn save_if_changed(path: Option<&std::path::Path>, app: &App, last: &mut Settings) {
    let now = Settings::of(app).keeping(last);
    if now == *last {
        return;
    }
    if let Some(path) = path
        && let Err(e) = settings::save(path, &now)
    {
        tracing::warn!(error = %e, path = %path.display(), "saving settings failed");
    }
    *last = now;
}

/// The dashboard, until a key quits, a fatal event, or a signal.
async fn dashboard(
    cli: &Cli,
    view: View,
    tx: mpsc::Sender<Event>,
    rx: &mut mpsc::Receiver<Event>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<std::process::ExitCode> {
    for notice in cli.notices().into_iter().chain(view.problem.clone()) {
        let _ = tx.send(Event::Notice(notice)).await;
    }
    // The dashboard subscribes to every source so `s` switches without a round trip; `<` / `>`
    // send the interval to resubscribe with.
    let (interval_tx, intervals) = watch::channel(cli.interval);
    let all = Source::ALL.to_vec();
    start_source(cli, all, false, tx.clone(), intervals, (tracker, shutdown))?;
    tracker.spawn(crate::event::forward_terminal_events(
        tx.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(crate::event::tick(
        tx,
        std::time::Duration::from_secs(1),
        shutdown.clone(),
    ));
    let mut app = start_app(cli, &view.settings);
    app.hint = Some(cli.hint(&view.log));
    // A file that could not be read is left for the user to fix, not written over.
    let path = cli.settings_path().filter(|_| view.problem.is_none());
    let mut saved = Settings::of(&app).keeping(&view.settings);
    let mut switches = app.interval_switches;
    let save = |app: &App| {
        if app.interval_switches != switches {
            switches = app.interval_switches;
            interval_tx.send_replace(app.interval);
        }
        save_if_changed(path.as_deref(), app, &mut saved)
    };
    let mut terminal = ratatui::init();
    // Clicks inspect a candle (where the terminal reports the mouse).
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture);
    let result = tokio::select! {
        result = crate::event::run_with(&mut terminal, &mut app, rx, Micros::now, save) => result,
        signal = terminated() => {
            tracing::info!(signal, "terminated by a signal");
            Ok(())
        }
    };
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
    ratatui::restore();
    save_if_changed(path.as_deref(), &app, &mut saved);
    result?;
    Ok(match app.fatal {
        Some(message) => {
            eprintln!("candles-tui: {message}");
            std::process::ExitCode::FAILURE
        }
        None => std::process::ExitCode::SUCCESS,
    })
}

#[cfg(test)]
mod tests;
