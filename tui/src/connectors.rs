//! Starts one exchange connector per exchange for `--embedded` (glue to candles-connector).
//!
//! Before streaming, every exchange's own listing is read (as the connector binary does): each
//! exchange streams the pairs it lists and trades, under its own symbols; the others are named
//! in a notice (`kraken does not serve AVAX-USDT (not listed)`), and an exchange that serves
//! none of them stops with the reason as its link's [`Event::Problem`]. A pair that no
//! exchange serves (every listing read, none trades it) is a fatal error naming the pair and
//! each exchange's status. When a listing cannot be fetched (network down, a simulator without
//! the endpoint) that connector starts anyway with every pair and its reconnect loop takes
//! over; why the listing could not be fetched (DNS, refused, ...) is reported as the link's
//! [`Event::Problem`].

use crate::app::{Event, Link, LinkState};
use crate::embedded_config::{EmbeddedConfig, host};
use candles_connector::listing::{self, PairListing};
use candles_connector::rest::ListingError;
use candles_connector::{ChannelSink, ConnState, ConnectorConfig};
use candles_core::{Exchange, Pair, Trade};
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
    let configs = configs.to_vec();
    let connectors = tracker.clone();
    tracker.spawn(async move {
        for config in &configs {
            let link = Link::Exchange(config.exchange);
            let _ = events.send(Event::Conn(link, LinkState::Connecting)).await;
        }
        let listings = tokio::select! {
            _ = shutdown.cancelled() => return,
            l = futures::future::join_all(configs.iter().map(candles_connector::read_listing)) => l,
        };
        if let Some(fatal) = served_by_none(&configs, &listings) {
            let _ = events.send(Event::Fatal(fatal)).await;
            return;
        }
        for (config, listing) in configs.into_iter().zip(listings) {
            connectors.spawn(run_one(
                config,
                listing,
                trades.clone(),
                events.clone(),
                shutdown.clone(),
            ));
        }
    });
    Ok(())
}

/// The fatal error when some pair is served by no exchange although every listing was read:
/// it names each such pair and every exchange's status for it.
fn served_by_none(
    configs: &[ConnectorConfig],
    listings: &[Result<Vec<PairListing>, ListingError>],
) -> Option<String> {
    let read: Vec<(Exchange, &Vec<PairListing>)> = configs
        .iter()
        .zip(listings)
        .map(|(c, l)| l.as_ref().ok().map(|l| (c.exchange, l)))
        .collect::<Option<_>>()?;
    let pairs = configs.first()?.pairs.clone();
    let unserved: Vec<String> = pairs
        .iter()
        .filter(|&&pair| {
            read.iter()
                .all(|(_, l)| !listing::served(l).contains(&pair))
        })
        .map(|&pair| {
            let statuses: Vec<String> = read
                .iter()
                .filter_map(|(e, l)| {
                    l.iter()
                        .find(|x| x.pair == pair)
                        .map(|x| format!("{e} {}", x.status))
                })
                .collect();
            format!("{pair} ({})", statuses.join(", "))
        })
        .collect();
    (!unserved.is_empty()).then(|| {
        format!(
            "no exchange serves {}: remove it from --pairs or pick a pair an exchange lists",
            unserved.join("; ")
        )
    })
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

/// Streams one exchange: the pairs its `listings` serve (all of them when the listing could not
/// be read).
async fn run_one(
    mut config: ConnectorConfig,
    listings: Result<Vec<PairListing>, ListingError>,
    trades: mpsc::Sender<Trade>,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    let exchange = config.exchange;
    let link = Link::Exchange(exchange);
    match listings {
        Ok(listings) => {
            let served = listing::served(&listings);
            if served.is_empty() {
                let why = listing::none_served(exchange, &listings);
                tracing::warn!(%exchange, "{why}");
                let _ = events.send(Event::Problem(link, why)).await;
                let _ = events.send(Event::Conn(link, LinkState::Stopped)).await;
                return;
            }
            if let Some(notice) = not_served(exchange, &listings, &served) {
                tracing::warn!(%exchange, "{notice}");
                let _ = events.send(Event::Notice(notice)).await;
            }
            config.pairs = served;
            config.symbols = listing::symbols(&listings);
        }
        Err(e) => {
            tracing::warn!(%exchange, error = %e, "could not read the pairs' listing; connecting anyway");
            // The connector's reconnects give no reason: this one is the best there is.
            let _ = events.send(Event::Problem(link, unreachable(&e))).await;
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

/// The notice naming the pairs `exchange` does not serve and why (`None`: it serves them all).
fn not_served(exchange: Exchange, listings: &[PairListing], served: &[Pair]) -> Option<String> {
    let others: Vec<String> = listings
        .iter()
        .filter(|l| !served.contains(&l.pair))
        .map(|l| format!("{} ({})", l.pair, l.status))
        .collect();
    (!others.is_empty()).then(|| format!("{exchange} does not serve {}", others.join(", ")))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candles_connector::listing::Status;

    #[test]
    fn the_notice_names_each_pair_not_served_and_why() {
        let (btc, avax, xrp) = (
            Pair::parse("BTC-USDT").unwrap(),
            Pair::parse("AVAX-USDT").unwrap(),
            Pair::parse("XRP-USD").unwrap(),
        );
        let listings = vec![
            PairListing::listed(btc, "XBTUSDT", Status::Trading, "online"),
            PairListing::not_listed(Exchange::Kraken, avax),
            PairListing::listed(xrp, "XXRPZUSD", Status::Halted, "cancel_only"),
        ];
        let served = listing::served(&listings);
        assert_eq!(served, vec![btc]);
        assert_eq!(
            not_served(Exchange::Kraken, &listings, &served).unwrap(),
            "kraken does not serve AVAX-USDT (not listed), XRP-USD (halted)"
        );
        assert_eq!(not_served(Exchange::Kraken, &listings[..1], &served), None);
    }

    #[test]
    fn a_pair_no_exchange_serves_is_fatal_unless_a_listing_could_not_be_read() {
        let (btc, doge) = (
            Pair::parse("BTC-USDT").unwrap(),
            Pair::parse("DOGE-USDT").unwrap(),
        );
        let config = |e| ConnectorConfig::new(e, vec![btc, doge]);
        let configs = [config(Exchange::Binance), config(Exchange::Kraken)];
        let binance = vec![
            PairListing::listed(btc, "BTCUSDT", Status::Trading, "TRADING"),
            PairListing::not_listed(Exchange::Binance, doge),
        ];
        let kraken = |doge_status| {
            vec![
                PairListing::listed(btc, "XBTUSDT", Status::Trading, "online"),
                PairListing::listed(doge, "XDGUSDT", doge_status, "x"),
            ]
        };
        assert_eq!(
            served_by_none(&configs, &[Ok(binance.clone()), Ok(kraken(Status::Halted))]).unwrap(),
            "no exchange serves DOGE-USDT (binance not listed, kraken halted): remove it from \
             --pairs or pick a pair an exchange lists"
        );
        assert_eq!(
            served_by_none(
                &configs,
                &[Ok(binance.clone()), Ok(kraken(Status::Trading))]
            ),
            None,
            "kraken serves it"
        );
        let unreadable = Err(ListingError::Client("no TLS".into()));
        assert_eq!(
            served_by_none(&configs, &[Ok(binance), unreadable]),
            None,
            "kraken's listing could not be read: it may serve it"
        );
    }
}
