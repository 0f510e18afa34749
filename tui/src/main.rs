//! The `candles-tui` binary: parses flags, sets up file logging and metrics, and runs
//! [`candles_tui::cli::run`].
#![forbid(unsafe_code)]

use anyhow::Context;
use candles_tui::cli::Cli;
use std::path::{Path, PathBuf};

/// Where logs go by default: `~/.cache/candles/logs`, else `$TMPDIR/candles-logs`.
fn default_log_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Path::new(&home).join(".cache/candles/logs"),
        _ => std::env::temp_dir().join("candles-logs"),
    }
}

/// File logging (daily rotation, 7 files kept); never the screen. The guard must live until exit.
fn init_logging(cli: &Cli) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    let (dir, prefix) = match &cli.log_file {
        Some(path) => (
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            path.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "candles-tui.log".into()),
        ),
        None => (default_log_dir(), "candles-tui.log".to_string()),
    };
    let dir = match std::fs::create_dir_all(&dir) {
        Ok(()) => dir,
        // The default place is unusable (e.g. a read-only home): fall back to the temp dir.
        Err(_) if cli.log_file.is_none() => {
            let tmp = std::env::temp_dir().join("candles-logs");
            std::fs::create_dir_all(&tmp)
                .with_context(|| format!("creating the log directory {}", tmp.display()))?;
            tmp
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("creating the log directory {} (--log-file)", dir.display())
            });
        }
    };
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(prefix)
        .max_log_files(7)
        .build(&dir)
        .with_context(|| format!("opening a log file in {} (set --log-file)", dir.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).with_context(|| {
        format!(
            "invalid --log filter {:?}; expected e.g. info or candles_tui=debug",
            cli.log
        )
    })?;
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter)
        .init();
    Ok(guard)
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse_args();
    let _guard = init_logging(&cli)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let code = runtime.block_on(async {
        if let Some(addr) = cli.metrics_addr {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .install()
                .with_context(|| format!("serving metrics on --metrics-addr {addr}"))?;
        }
        tracing::info!(?cli.pairs, server = %cli.server, embedded = cli.embedded, "starting");
        candles_tui::cli::run(cli).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
