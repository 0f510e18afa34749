//! What every binary of the candles system sets up the same way:
//!
//! - [`init_logs`]: log lines on stderr, text or JSON ([`LogFormat`], a `clap` value), filtered
//!   by `RUST_LOG` or a default; the `log` crate's records (librdkafka's) go the same way.
//!   [`init_logs_to`]: the same into another writer (a log file) with a given filter.
//! - [`serve_metrics`] / [`serve_metrics_from`]: the Prometheus scrape endpoint.
//! - [`shutdown_signal`] / [`cancel_on_shutdown`]: SIGINT or SIGTERM, once, as a future or as a
//!   cancelled token.
#![forbid(unsafe_code)]

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusBuilder;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured when stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs to stderr in `format`, at the levels `RUST_LOG` sets, else at `default_filter` (e.g.
/// `info`); coloured when stderr is a terminal. Records of the `log` crate (librdkafka's, for
/// one) are logged too. Call it once, at the start; a second call changes nothing.
pub fn init_logs(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    install(
        format,
        filter,
        std::io::stderr,
        std::io::stderr().is_terminal(),
    );
}

/// Logs to `writer` (a file, say: a dashboard cannot log to the terminal it draws on) in
/// `format`, at the levels of `filter` (`info`, `candles_tui=debug`), without colours. An
/// invalid filter is an error naming it.
pub fn init_logs_to<W>(format: LogFormat, filter: &str, writer: W) -> anyhow::Result<()>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log filter {filter:?}; expected e.g. info or debug"))?;
    install(format, filter, writer, false);
    Ok(())
}

fn install<W>(format: LogFormat, filter: EnvFilter, writer: W, ansi: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Already set when tracing-subscriber routes `log` itself; then this is a no-op.
    let _ = tracing_log::LogTracer::init();
}

/// Serves Prometheus metrics on `addr` (`GET /metrics`) and installs the recorder every
/// `metrics::counter!` of the process reports to. Call it once, inside a Tokio runtime.
pub fn serve_metrics(addr: SocketAddr) -> anyhow::Result<()> {
    serve_metrics_from(PrometheusBuilder::new(), addr)
}

/// [`serve_metrics`] with a builder the caller has set up (histogram buckets, say).
pub fn serve_metrics_from(builder: PrometheusBuilder, addr: SocketAddr) -> anyhow::Result<()> {
    builder.with_http_listener(addr).install().with_context(|| {
        format!("cannot serve metrics on {addr} (--metrics-addr): is the port in use?")
    })
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM and says which it was.
pub async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

/// Cancels `token` on the first SIGINT or SIGTERM (logging which), from a task of its own.
/// Call it inside a Tokio runtime.
pub fn cancel_on_shutdown(token: CancellationToken) {
    tokio::spawn(async move {
        let signal = shutdown_signal().await;
        tracing::info!(signal, "stop requested; finishing");
        token.cancel();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum as _;

    #[test]
    fn log_formats_parse_as_flags() {
        assert_eq!(LogFormat::from_str("json", true), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("text", true), Ok(LogFormat::Text));
        assert!(LogFormat::from_str("xml", true).is_err());
        assert_eq!(LogFormat::default(), LogFormat::Text);
    }

    #[test]
    fn an_invalid_filter_is_an_error_naming_it() {
        let err = init_logs_to(LogFormat::Text, "candles=loud", std::io::sink).unwrap_err();
        assert!(format!("{err:#}").contains("\"candles=loud\""), "{err:#}");
    }
}
