//! The program's modes, as the flags ([`crate::cli::Cli`]) chose: the dashboard or
//! `--plain`/`--json` lines, fed by the gRPC server or (`--embedded`) by connectors and a candle
//! engine inside this process; each until a key, a signal, or the end of the stream.

use crate::app::{App, Event};
use crate::cli::Cli;
use crate::client;
use crate::embedded;
use crate::output::{Format, LineOutput, Outcome};
use crate::settings::{self, Settings};
use candles_core::{Interval, Micros, Source};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
