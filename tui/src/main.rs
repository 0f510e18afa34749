//! The `candles-tui` binary: parses flags, sets up file logging and metrics, and runs
//! [`candles_tui::modes::run`].
#![forbid(unsafe_code)]

use anyhow::Context;
use candles_tui::cli::Cli;

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse_args();
    let (_guard, log) = candles_tui::logging::init(cli.log_file.as_deref(), &cli.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let code = runtime.block_on(async {
        if let Some(addr) = cli.metrics_addr {
            candles_runtime::serve_metrics(addr)?;
        }
        tracing::info!(?cli.pairs, server = %cli.server, embedded = cli.embedded, "starting");
        candles_tui::modes::run(cli, log.display()).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
