//! Starts one exchange connector per exchange for `--embedded` (glue to candles-connector).
//!
//! Before streaming, each exchange's REST API is asked whether it lists every pair: a pair it
//! does not list is a fatal error naming the pair and the exchange. When the listing cannot be
//! fetched (network down, a simulator without the endpoint) the connector starts anyway and its
//! reconnect loop takes over; why the listing could not be fetched (DNS, refused, ...) is
//! reported as the link's [`Event::Problem`].

use crate::app::{Event, Link, LinkState};
use crate::embedded_config::{EmbeddedConfig, host};
use candles_connector::rest::ListingError;
use candles_connector::{ChannelSink, ConnState, ConnectorConfig};
use candles_core::{Exchange, Trade};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Spawns a connector per configuration (see [`configs`]); trades go to `trades`, their
/// states to `events`.
pub fn spawn(
    configs: &[ConnectorConfig],
    trades: mpsc::Sender<Trade>,
    events: mpsc::Sender<Event>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    for config in configs {
        tracker.spawn(run_one(
            config.exchange,
            config.clone(),
            trades.clone(),
            events.clone(),
            shutdown.clone(),
        ));
    }
    Ok(())
}

/// One connector configuration per exchange of `cfg` (its URL overrides, `cfg`'s pairs). Clones
/// share the exchange's REST pace: the connector's gap fill and listing check and the
/// verifier ([`crate::embedded_verify`]) together stay within the exchange's limit.
pub fn configs(cfg: &EmbeddedConfig) -> Vec<ConnectorConfig> {
    cfg.feeds
        .iter()
        .map(|feed| {
            let mut config = ConnectorConfig::new(feed.exchange, cfg.pairs.clone());
            config.ws_url = feed.ws_url.clone();
            config.rest_url = feed.rest_url.clone();
            config
        })
        .collect()
}

async fn run_one(
    exchange: Exchange,
    config: ConnectorConfig,
    trades: mpsc::Sender<Trade>,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    let link = Link::Exchange(exchange);
    let _ = events.send(Event::Conn(link, LinkState::Connecting)).await;
    let check = tokio::select! {
        _ = shutdown.cancelled() => return,
        check = candles_connector::check_pairs(&config) => check,
    };
    if let Err(e) = check {
        match e {
            ListingError::NotListed { .. } => {
                let _ = events.send(Event::Fatal(e.to_string())).await;
                return;
            }
            _ => {
                tracing::warn!(%exchange, error = %e, "could not check the pairs' listing; connecting anyway");
                // The connector's reconnects give no reason: this one is the best there is.
                let _ = events.send(Event::Problem(link, unreachable(&e))).await;
            }
        }
    }
    let (status_tx, mut status_rx) = watch::channel(ConnState::Connecting);
    let forward = {
        let events = events.clone();
        async move {
            while status_rx.changed().await.is_ok() {
                let state = *status_rx.borrow_and_update();
                tracing::info!(%exchange, %state, "connector state");
                if events.send(Event::Conn(link, state)).await.is_err() {
                    return;
                }
            }
        }
    };
    let run = candles_connector::run(config, ChannelSink(trades), status_tx, shutdown);
    let (result, ()) = tokio::join!(run, forward);
    if let Err(e) = result {
        tracing::error!(%exchange, error = %e, "connector stopped");
        let _ = events.send(Event::Conn(link, LinkState::Stopped)).await;
    }
}

/// Why an exchange's listing could not be fetched, short: `api.binance.com unreachable: error
/// sending request` (the full message, with the URL, is in the log).
fn unreachable(e: &ListingError) -> String {
    match e {
        ListingError::Unreachable { url, reason, .. } => {
            let reason = reason.split(" for url (").next().unwrap_or(reason);
            format!("{} unreachable: {reason}", host(url))
        }
        _ => format!("{e:#}"),
    }
}
