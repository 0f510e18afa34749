//! The exchange's public REST API, paced: [`RestClient`], gap fill ([`RestFiller`]), the
//! exchange's listing of the pairs ([`read_listing`], [`check_pairs`]) and the exchange's own candles
//! ([`RestClient::exchange_candle`]).
//!
//! Every request takes its cost from the exchange's [`Pacer`] first (shared through
//! [`ConnectorConfig::rest_pacer`]), so the connector never asks more often than the exchange's
//! public limit; a "too many requests" answer holds every user off (its `Retry-After`, else a
//! doubling wait) and the request is asked again.
//!
//! A gap fill pages through the exchange's trades endpoint until every missing id is found,
//! the exchange has nothing more, or the fill's time budget (waits for the pace included) or
//! trade cap is spent. Trades a page holds beyond its gap are kept, so nearby gaps (Kraken's
//! split fills: a gap every few trades) are served by one request: a Kraken `since=` page holds
//! up to 1,000 trades. A failed page is retried a few times with a short backoff; a fill never
//! blocks the stream for longer than its budget.

use crate::ConnectorConfig;
use crate::exchange::{Gap, Venue, venue};
use crate::listing::{self, PairListing, Status};
use crate::pacer::Pacer;
use crate::sequencer::GapFiller;
use crate::telemetry::{LogLimits, RATE_LIMITED};
use anyhow::Context;
use candles_core::retry::Doubling;
use candles_core::symbols::rest_symbol;
use candles_core::verify::ExchangeCandle;
use candles_core::{Exchange, Micros, Pair, Trade};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Requests per page before the page counts as failed.
const TRIES: u32 = 3;
/// Rate-limit answers in a row to one request before it counts as failed.
const MAX_REFUSALS: u32 = 8;
/// Trades kept per pair for nearby gaps.
const KEEP: usize = 20_000;

/// The largest REST body read (a full trades page is well under 1 MB); a larger one is an
/// error, not an allocation the server chooses.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// One answer: status, `Retry-After` (in seconds, if given), body text.
struct Reply {
    status: u16,
    retry_after: Option<Duration>,
    body: String,
}

/// GETs `url` (at most [`MAX_BODY`] bytes of body; invalid UTF-8 is replaced).
async fn get(client: &reqwest::Client, url: &str) -> Result<Reply, String> {
    let mut resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!(
                "HTTP {status}: the body is larger than {MAX_BODY} bytes; not read further"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Reply {
        status,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// One exchange's REST API at that exchange's pace (see the module docs). Clones share the
/// pace.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    venue: &'static dyn Venue,
    pacer: Arc<Pacer>,
}

impl RestClient {
    /// A client for `config`'s exchange, paced by `config.rest_pacer`.
    pub fn new(config: &ConnectorConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("candles-connector/", env!("CARGO_PKG_VERSION")))
            .timeout(config.rest_timeout)
            .build()
            .context("building the HTTP client")?;
        Ok(RestClient {
            http,
            venue: venue(config.exchange),
            pacer: config.rest_pacer.clone(),
        })
    }

    /// GETs `url` when the pace allows: the status code and the body text. A rate-limit answer
    /// holds off every user of the pace and asks again (counted in
    /// `connector_rest_rate_limited_total`), up to [`MAX_REFUSALS`] times.
    pub async fn get(&self, url: &str) -> Result<(u16, String), String> {
        let exchange = self.venue.exchange();
        for _ in 0..MAX_REFUSALS {
            self.pacer.acquire(self.venue.rest_cost(url)).await;
            let reply = get(&self.http, url).await?;
            if !self.venue.is_rate_limited(reply.status, &reply.body) {
                self.pacer.answered();
                return Ok((reply.status, reply.body));
            }
            let wait = self.pacer.refused(reply.retry_after);
            metrics::counter!(RATE_LIMITED, "exchange" => exchange.as_str()).increment(1);
            tracing::warn!(%exchange, status = reply.status, ?wait, "REST rate limit reached: holding off");
        }
        Err(format!(
            "still rate-limited after {MAX_REFUSALS} answers in a row"
        ))
    }
    /// The exchange's own final 1-minute candle of `pair` for the minute starting at `start`,
    /// from its candle endpoint under `rest_url` (Binance klines, Kraken OHLC, Coinbase
    /// candles), through this client's pace: `Ok(None)` when the exchange has no final candle
    /// for that minute (yet: ask again later), `Err` for no answer or an answer that is not one.
    pub async fn exchange_candle(
        &self,
        rest_url: &str,
        pair: Pair,
        start: Micros,
    ) -> Result<Option<ExchangeCandle>, String> {
        let url = self.venue.candle_url(rest_url, pair, start);
        let (status, body) = self.get(&url).await?;
        self.venue
            .parse_candle(&body, pair, start, Micros::now())
            .map_err(|e| format!("HTTP {status}: {e}"))
    }
}

/// Fills gaps from the exchange's REST trades endpoint.
#[derive(Debug, Clone)]
pub struct RestFiller {
    rest: RestClient,
    venue: &'static dyn Venue,
    base: String,
    budget: Duration,
    max_trades: u64,
    /// Trades fetched beyond the gap they were fetched for, per pair, for the next gaps.
    kept: HashMap<Pair, BTreeMap<u64, Trade>>,
    /// The exchange's REST symbol per pair from its listing (else its rule's).
    symbols: HashMap<Pair, String>,
    /// Failed pages are logged at most this often (a REST API that answers garbage to every
    /// request would otherwise write a line per retry).
    log_limit: Arc<Mutex<LogLimits>>,
}

impl RestFiller {
    /// A filler for `config`'s exchange and REST URL.
    pub fn new(config: &ConnectorConfig) -> anyhow::Result<Self> {
        Ok(RestFiller {
            rest: RestClient::new(config)?,
            venue: venue(config.exchange),
            base: config.rest_url(),
            budget: config.backfill_budget,
            max_trades: config.backfill_max_trades,
            kept: HashMap::new(),
            symbols: config.symbols.clone(),
            log_limit: Default::default(),
        })
    }

    /// One page, retried: `None` once the tries are used up (each failure logged).
    async fn page(&self, url: &str, gap: &Gap) -> Option<crate::exchange::Page> {
        let mut wait = Doubling::new(Duration::from_millis(200), Duration::from_secs(1));
        for attempt in 1..=TRIES {
            let result = match self.rest.get(url).await {
                Ok((status, body)) => self
                    .venue
                    .parse_backfill(&body, gap, Micros::now())
                    .map_err(|e| format!("HTTP {status}: {e}")),
                Err(e) => Err(e),
            };
            match result {
                Ok(page) => return Some(page),
                Err(e) => {
                    // The error quotes the body only as a short excerpt (see `ParseError`).
                    let allowed = match self.log_limit.lock() {
                        Ok(mut limit) => limit.allow("backfill_failed"),
                        Err(poisoned) => poisoned.into_inner().allow("backfill_failed"),
                    };
                    if allowed {
                        tracing::warn!(exchange = %self.venue.exchange(), %url, attempt, error = %e, "backfill request failed");
                    }
                }
            }
            if attempt < TRIES {
                tokio::time::sleep(wait.next_delay()).await;
            }
        }
        None
    }

    /// The kept trades of `gap`; those after it stay kept, those up to it are let go.
    fn take_kept(&mut self, gap: &Gap) -> BTreeMap<u64, Trade> {
        let kept = self.kept.entry(gap.pair).or_default();
        let after = kept.split_off(&(gap.until_id.saturating_add(1)));
        std::mem::replace(kept, after)
            .into_iter()
            .filter(|(id, _)| gap.contains(*id))
            .collect()
    }

    /// Keeps the trades of a page that lie beyond `gap`, for the next gaps.
    fn keep(&mut self, gap: &Gap, trades: &[Trade]) {
        let kept = self.kept.entry(gap.pair).or_default();
        for t in trades.iter().filter(|t| t.id > gap.until_id) {
            kept.entry(t.id).or_insert(*t);
        }
        while kept.len() > KEEP {
            kept.pop_first();
        }
    }
}

impl GapFiller for RestFiller {
    async fn fill(&mut self, gap: Gap) -> Vec<Trade> {
        let deadline = Instant::now() + self.budget;
        let want = gap.len().min(self.max_trades);
        let mut found = self.take_kept(&gap);
        let mut cursor: Option<String> = None;
        let symbol = (self.symbols.get(&gap.pair).cloned())
            .unwrap_or_else(|| rest_symbol(self.venue.exchange(), gap.pair));
        while (found.len() as u64) < want {
            let url = (self.venue).backfill_url_for(&self.base, &symbol, &gap, cursor.as_deref());
            let Ok(page) = tokio::time::timeout_at(deadline, self.page(&url, &gap)).await else {
                tracing::warn!(exchange = %self.venue.exchange(), pair = %gap.pair, budget = ?self.budget, "backfill ran out of time");
                break;
            };
            let Some(page) = page else { break };
            self.keep(&gap, &page.trades);
            for t in page.trades.into_iter().filter(|t| gap.contains(t.id)) {
                found.entry(t.id).or_insert(t);
            }
            match page.next {
                Some(next) if cursor.as_deref() != Some(next.as_str()) => cursor = Some(next),
                _ => break,
            }
        }
        found
            .into_values()
            .take(usize::try_from(want).unwrap_or(usize::MAX))
            .collect()
    }
}

/// Why the listing check failed: a pair the exchange does not list (final: the configuration is
/// wrong), or an exchange that could not be asked or whose answer could not be read (worth
/// retrying: the configuration may well be right).
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// The exchange does not list the pair.
    #[error(
        "{exchange} does not list pair {pair} ({symbol}; asked {url}); remove it from --pairs or pick a pair {exchange} lists"
    )]
    NotListed {
        /// The exchange.
        exchange: Exchange,
        /// The pair.
        pair: Pair,
        /// What the listing says (its symbol and status, or that it is absent).
        symbol: String,
        /// The URL asked.
        url: String,
    },
    /// The exchange could not be asked: no connection, a timeout, a body cut off.
    #[error(
        "could not check whether {exchange} lists {pair} ({url}): {reason}; check the REST URL and the network"
    )]
    Unreachable {
        /// The exchange.
        exchange: Exchange,
        /// The pair.
        pair: Pair,
        /// The URL asked.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The exchange answered, but not with a listing we can read (an error page, say).
    #[error(
        "could not read {exchange}'s answer about {pair} ({url}): {reason}; check the REST URL"
    )]
    Protocol {
        /// The exchange.
        exchange: Exchange,
        /// The pair.
        pair: Pair,
        /// The URL asked.
        url: String,
        /// The HTTP status and what was wrong with the body.
        reason: String,
    },
    /// The exchange lists none of the configured pairs as trading.
    #[error(
        "{exchange} serves none of the pairs asked for: {reasons}; pick pairs {exchange} lists and trades"
    )]
    NoneServed {
        /// The exchange.
        exchange: Exchange,
        /// Each pair and why it is not served.
        reasons: String,
    },
    /// The HTTP client could not be built (no TLS roots, say).
    #[error("cannot build the HTTP client for the listing check: {0}")]
    Client(String),
}

impl ListingError {
    /// Whether the check is worth repeating: the exchange could not be asked or understood, as
    /// opposed to a pair it does not list.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ListingError::Unreachable { .. } | ListingError::Protocol { .. }
        )
    }
}

/// One listing request and its answer: the listings it gives, or `None` when the exchange
/// refused the list as a whole (ask each pair alone).
async fn ask_listing(
    client: &RestClient,
    config: &ConnectorConfig,
    pairs: &[Pair],
) -> Result<Option<Vec<PairListing>>, ListingError> {
    let venue = venue(config.exchange);
    let url = venue.listing_url(&config.rest_url(), pairs);
    let (exchange, pair) = (config.exchange, pairs[0]);
    let (status, body) = client
        .get(&url)
        .await
        .map_err(|reason| ListingError::Unreachable {
            exchange,
            pair,
            url: url.clone(),
            reason,
        })?;
    venue
        .parse_listing(status, &body, pairs)
        .map_err(|e| ListingError::Protocol {
            exchange,
            pair,
            url,
            reason: format!("HTTP {status}: {e}"),
        })
}

/// The exchange's listing of every configured pair, in `config.pairs` order: one request for
/// all of them (Binance names them, Kraken and Coinbase answer with their whole listing);
/// should Binance refuse the list because of one symbol it does not know, each pair is asked
/// alone. Through the exchange's pace.
pub async fn read_listing(config: &ConnectorConfig) -> Result<Vec<PairListing>, ListingError> {
    let client = RestClient::new(config).map_err(|e| ListingError::Client(format!("{e:#}")))?;
    if config.pairs.is_empty() {
        return Ok(Vec::new());
    }
    let found = match ask_listing(&client, config, &config.pairs).await? {
        Some(found) => found,
        None => {
            let mut found = Vec::new();
            for &pair in &config.pairs {
                found.extend(
                    ask_listing(&client, config, &[pair])
                        .await?
                        .unwrap_or_default(),
                );
            }
            found
        }
    };
    Ok(listing::complete(config.exchange, &config.pairs, found))
}

/// Asks the exchange's listing whether it lists every configured pair: the first pair it does
/// not list (or lists as delisted) is an error naming it ([`ListingError::NotListed`]); a
/// listed pair that is not trading is logged as a warning. (The connector binary serves the
/// pairs that are listed instead, see [`read_listing`].)
pub async fn check_pairs(config: &ConnectorConfig) -> Result<(), ListingError> {
    let url = venue(config.exchange).listing_url(&config.rest_url(), &config.pairs);
    for l in read_listing(config).await? {
        match l.status {
            Status::Trading => {
                tracing::debug!(pair = %l.pair, symbol = %l.detail, "listed and trading")
            }
            Status::Halted => {
                tracing::warn!(exchange = %config.exchange, pair = %l.pair, status = %l.detail, "pair is listed but not trading now");
            }
            Status::Delisted | Status::NotListed => {
                let symbol = match l.symbol {
                    Some(_) => l.detail,
                    None => "not in its listing".to_string(),
                };
                return Err(ListingError::NotListed {
                    exchange: config.exchange,
                    pair: l.pair,
                    symbol,
                    url,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candles_core::Side;

    #[test]
    fn trades_beyond_a_gap_serve_the_next_gaps_without_a_request() {
        let pair = Pair::parse("BTC-USDT").unwrap();
        let config = ConnectorConfig::new(Exchange::Kraken, vec![pair]);
        let mut filler = RestFiller::new(&config).unwrap();
        let trade =
            |id| Trade::new(Exchange::Kraken, pair, id, "1", "1", Side::Buy, Micros(1)).unwrap();
        let gap = |after_id, until_id| Gap {
            pair,
            after_id,
            after_time: Micros(1),
            until_id,
        };
        let page: Vec<Trade> = (2..=20).map(trade).collect();
        filler.keep(&gap(1, 4), &page);
        let ids = |found: BTreeMap<u64, Trade>| found.into_keys().collect::<Vec<_>>();
        assert_eq!(ids(filler.take_kept(&gap(6, 9))), [7, 8, 9]);
        // What was before the gap is let go; what is after stays.
        assert_eq!(ids(filler.take_kept(&gap(4, 8))), Vec::<u64>::new());
        assert_eq!(
            ids(filler.take_kept(&gap(15, 30))),
            (16..=20).collect::<Vec<_>>()
        );
    }
}
