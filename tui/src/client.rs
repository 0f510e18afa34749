//! The gRPC client: subscribes to candles and turns the stream into [`Event`]s, reconnecting
//! with exponential backoff when the server goes away.
//!
//! Every (re)subscription asks for `history` finalized candles first, so a chart refills after a
//! server restart; the dashboard keys candles by identity, so the refill replaces rather than
//! duplicates. A candle that fails to decode is reported as [`Event::BadData`] and skipped.
//! Verdicts on the exchanges' 1-minute candles are asked for too (unless turned off) and
//! become [`Event::Verified`].
//! A request the server rejects as invalid (e.g. an unknown pair) is [`Event::Fatal`]: retrying
//! cannot help, and the server's message names what was wrong.
//!
//! The interval asked for can change while running ([`run_switchable`]: the dashboard's `<` /
//! `>`): the stream is dropped and the new interval subscribed at once, history first. An
//! interval the server does not build is [`Event::Refused`] with the server's message: the
//! dashboard shows it and waits for another interval; line modes exit 2.

use crate::app::{Event, Link, LinkState};
use crate::verification::Verification;
use candles_core::retry::Doubling;
use candles_core::{Candle, Interval, Pair, Source};
use candles_proto::v1::candle_service_client::CandleServiceClient;
use candles_proto::v1::{ListMarketsRequest, ListMarketsResponse, SubscribeRequest};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// What to subscribe to and how.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Server URL, e.g. `http://127.0.0.1:8080` (`https://` for TLS).
    pub server: String,
    /// Pairs to subscribe to.
    pub pairs: Vec<Pair>,
    /// Sources to subscribe to (the dashboard asks for all, so `s` switches instantly).
    pub sources: Vec<Source>,
    /// Finalized candles per pair and source to send first.
    pub history: u32,
    /// The user asked for `history` (not the default): capping it is then said as a notice.
    pub history_given: bool,
    /// Also stream in-progress candles.
    pub live: bool,
    /// Also stream the verdicts on the pairs' per-exchange 1-minute candles.
    pub verifications: bool,
    /// The candle interval; `None`: the server's default.
    pub interval: Option<Interval>,
    /// Bearer token, if the server wants one.
    pub token: Option<String>,
    /// End (instead of reconnecting) when the server ends the stream normally.
    pub exit_on_eof: bool,
    /// First reconnect delay; doubles per failed attempt up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
}

impl ClientConfig {
    /// A config with the usual defaults: composite only, history 120, live updates and
    /// verdicts, backoff 500 ms doubling to 30 s.
    pub fn new(server: impl Into<String>, pairs: Vec<Pair>) -> ClientConfig {
        ClientConfig {
            server: server.into(),
            pairs,
            sources: vec![Source::Composite],
            history: 120,
            history_given: false,
            live: true,
            verifications: true,
            interval: None,
            token: None,
            exit_on_eof: false,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Why the client stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL is not usable.
    #[error("invalid --server: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The server does not build the interval asked for (its message names the ones it does).
    #[error("{0}")]
    Refused(String),
    /// The server refused the request in a way retrying cannot fix.
    #[error("the server at {server} rejected the subscription ({code:?}): {message}")]
    Rejected {
        /// The server URL.
        server: String,
        /// The gRPC status code.
        code: Code,
        /// The server's message (names what was wrong, e.g. the pair).
        message: String,
    },
}

/// Checks a `--server` value: `http://HOST:PORT` or `https://HOST:PORT`. The error names the
/// value and the expected form.
pub fn check_server(url: &str) -> Result<(), String> {
    let expected = "expected http://HOST:PORT or https://HOST:PORT, e.g. http://127.0.0.1:8080";
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(format!(
            "{url:?} must start with http:// or https://; {expected}"
        ));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} names no host; {expected}"));
    }
    Endpoint::from_shared(url.to_string())
        .map(|_| ())
        .map_err(|e| format!("{url:?} is not a URL ({}); {expected}", describe(&e)))
}

/// An error and its sources on one line (`transport error: tcp connect error: Connection
/// refused (os error 111)`), each distinct text once.
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

fn fatal(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::Unimplemented
    )
}

fn endpoint(cfg: &ClientConfig) -> Result<Endpoint, ClientError> {
    let bad = |reason: String| ClientError::BadUrl {
        url: cfg.server.clone(),
        reason,
    };
    check_server(&cfg.server).map_err(bad)?;
    let mut ep = Endpoint::from_shared(cfg.server.clone())
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10));
    if cfg.server.starts_with("https://") {
        ep = ep
            .tls_config(ClientTlsConfig::new().with_webpki_roots())
            .map_err(|e| bad(describe(&e)))?;
    }
    Ok(ep)
}

/// How one subscription ended.
enum End {
    /// The server ended the stream normally.
    Eof,
    /// The server does not build the interval asked for; its message.
    Refused(String),
    /// Connection or stream failure: try again.
    Retry(String),
    /// The receiver of events is gone or shutdown was asked.
    Stop,
}

/// Subscribes and forwards candles into `tx` until `shutdown`, a fatal rejection, `tx` closing,
/// or (with `exit_on_eof`) the end of the stream. A failure that ends it (a bad URL, a
/// rejection) is also sent as [`Event::Fatal`]; each reason for a reconnect as
/// [`Event::Problem`].
pub async fn run(
    cfg: ClientConfig,
    tx: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) -> Result<(), ClientError> {
    let (_keep, intervals) = watch::channel(cfg.interval);
    run_switchable(cfg, tx, shutdown, intervals).await
}

/// [`run`], resubscribing at once (history first) with each interval sent on `intervals`.
/// An interval the server does not build is [`Event::Refused`]; then, with `exit_on_eof` (line
/// modes) the client stops with [`ClientError::Refused`], else it waits for another interval.
pub async fn run_switchable(
    mut cfg: ClientConfig,
    tx: mpsc::Sender<Event>,
    shutdown: CancellationToken,
    mut intervals: watch::Receiver<Option<Interval>>,
) -> Result<(), ClientError> {
    let ep = match endpoint(&cfg) {
        Ok(ep) => ep,
        Err(e) => return Err(stop_fatally(&tx, e).await),
    };
    let mut attempt = 0u32;
    let mut backoff = Doubling::new(cfg.min_backoff, cfg.max_backoff);
    let _ = tx
        .send(Event::Conn(Link::Server, LinkState::Connecting))
        .await;
    loop {
        let end = tokio::select! {
            _ = shutdown.cancelled() => End::Stop,
            Ok(()) = intervals.changed() => {
                cfg.interval = *intervals.borrow_and_update();
                continue;
            }
            end = subscribe_once(&cfg, &ep, &tx, &mut attempt, &mut backoff) => match end {
                Ok(end) => end,
                Err(e) => return Err(stop_fatally(&tx, e).await),
            },
        };
        match end {
            End::Stop => return Ok(()),
            End::Refused(message) => {
                if tx.send(Event::Refused(message.clone())).await.is_err() || cfg.exit_on_eof {
                    return Err(ClientError::Refused(message));
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    changed = intervals.changed() => match changed {
                        Ok(()) => cfg.interval = *intervals.borrow_and_update(),
                        Err(_) => return Err(ClientError::Refused(message)),
                    },
                }
                continue;
            }
            End::Eof if cfg.exit_on_eof => {
                let _ = tx.send(Event::Conn(Link::Server, LinkState::Stopped)).await;
                return Ok(());
            }
            End::Eof => {
                tracing::info!(server = %cfg.server, "the server ended the stream; reconnecting")
            }
            End::Retry(reason) => {
                tracing::warn!(server = %cfg.server, %reason, "lost the server; reconnecting");
                if tx.send(Event::Problem(Link::Server, reason)).await.is_err() {
                    return Ok(());
                }
            }
        }
        attempt += 1;
        metrics::counter!("tui_reconnects_total").increment(1);
        let delay = backoff.next_delay();
        let state = LinkState::Reconnecting {
            in_ms: delay.as_millis() as u64,
            attempt,
        };
        if tx.send(Event::Conn(Link::Server, state)).await.is_err() {
            return Ok(());
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
            Ok(()) = intervals.changed() => cfg.interval = *intervals.borrow_and_update(),
        }
    }
}

/// Reports `e` as fatal (and the link as stopped); returns it.
async fn stop_fatally(tx: &mpsc::Sender<Event>, e: ClientError) -> ClientError {
    let _ = tx.send(Event::Fatal(e.to_string())).await;
    let _ = tx.send(Event::Conn(Link::Server, LinkState::Stopped)).await;
    e
}

/// A request carrying the bearer token, if one is configured.
fn authorized<T>(cfg: &ClientConfig, message: T) -> Result<tonic::Request<T>, ClientError> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = &cfg.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::Rejected {
                server: cfg.server.clone(),
                code: Code::InvalidArgument,
                message: "the --token is not valid header text".into(),
            })?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

type Client = CandleServiceClient<Channel>;

/// The intervals a server builds, finest first, and its default: its `intervals`, or
/// `[interval]` from an old server that sends no list; `None` when it says neither.
pub fn served_intervals(markets: &ListMarketsResponse) -> Option<(Vec<Interval>, Interval)> {
    let default = candles_proto::interval_from(markets.interval.as_ref()).ok()?;
    let mut served: Vec<Interval> = markets
        .intervals
        .iter()
        .filter_map(|d| candles_proto::interval_from(Some(d)).ok())
        .collect();
    if served.is_empty() {
        served.push(default);
    }
    Some((served, default))
}

/// The intervals a server builds, as its `ListMarkets` said.
#[derive(Clone, Debug, Default)]
struct Served {
    /// Finest first; empty when unknown.
    intervals: Vec<Interval>,
    /// The server listed them (an older server only names its one interval, and ignores the
    /// interval asked for).
    listed: bool,
}

impl Served {
    /// Why `asked` cannot be had from an older server that builds one other interval.
    fn unlisted_refusal(&self, asked: Option<Interval>, server: &str) -> Option<String> {
        let (asked, only) = (asked?, self.intervals.first()?);
        (!self.listed && asked != *only).then(|| {
            format!("the server at {server} builds only {only} (an older server: it lists no intervals), not {asked}")
        })
    }
}

/// Asks the server which pairs it has (to name a pair it knows nothing about), which intervals
/// it builds (sent as [`Event::Intervals`]; returned to tell a refused interval) and how much
/// history it keeps (asking for more is an invalid request); returns the history to ask for,
/// or `None` when `tx` is closed. A capped `--history` the user asked for is said as a notice.
async fn markets(
    cfg: &ClientConfig,
    client: &mut Client,
    tx: &mpsc::Sender<Event>,
) -> Result<Option<(u32, Served)>, ClientError> {
    let history = cfg.history;
    let Ok(markets) = client
        .list_markets(authorized(cfg, ListMarketsRequest {})?)
        .await
    else {
        return Ok(Some((history, Served::default())));
    };
    let markets = markets.into_inner();
    let served = match served_intervals(&markets) {
        Some((intervals, default)) => {
            let event = Event::Intervals(intervals.clone(), default);
            if tx.send(event).await.is_err() {
                return Ok(None);
            }
            let listed = !markets.intervals.is_empty();
            Served { intervals, listed }
        }
        None => Served::default(),
    };
    Ok(capped_history(cfg, &markets, tx)
        .await
        .map(|history| (history, served)))
}

/// The history to ask for (at most what the server keeps; a capped `--history` the user asked
/// for is said as a notice), after sending the server's pairs; `None` when `tx` is closed.
async fn capped_history(
    cfg: &ClientConfig,
    markets: &ListMarketsResponse,
    tx: &mpsc::Sender<Event>,
) -> Option<u32> {
    let mut history = cfg.history;
    if markets.max_history > 0 && history > markets.max_history {
        history = markets.max_history;
        if !cfg.history_given {
            tracing::info!(
                history,
                "the server keeps less history; asking for its maximum"
            );
            return tx.send(known_pairs(markets)).await.ok().map(|()| history);
        }
        let notice = format!(
            "--history {} is more than the server keeps; asking for its maximum, {history}",
            cfg.history
        );
        tracing::info!(%notice);
        tx.send(Event::Notice(notice)).await.ok()?;
    }
    tx.send(known_pairs(markets)).await.ok().map(|()| history)
}

/// The pairs the server has, as an event.
fn known_pairs(markets: &ListMarketsResponse) -> Event {
    Event::Markets(
        markets
            .markets
            .iter()
            .filter_map(|m| Pair::parse(&m.pair).ok())
            .collect(),
    )
}

async fn subscribe_once(
    cfg: &ClientConfig,
    ep: &Endpoint,
    tx: &mpsc::Sender<Event>,
    attempt: &mut u32,
    backoff: &mut Doubling,
) -> Result<End, ClientError> {
    let channel: Channel = match ep.connect().await {
        Ok(c) => c,
        Err(e) => return Ok(End::Retry(format!("cannot connect: {}", describe(&e)))),
    };
    let mut client = CandleServiceClient::new(channel).max_decoding_message_size(4 << 20);
    let Some((history, served)) = markets(cfg, &mut client, tx).await? else {
        return Ok(End::Stop);
    };
    if let Some(message) = served.unlisted_refusal(cfg.interval, &cfg.server) {
        return Ok(End::Refused(message));
    }
    let request = authorized(
        cfg,
        SubscribeRequest {
            pairs: cfg.pairs.iter().map(Pair::to_string).collect(),
            sources: cfg.sources.iter().map(|s| s.as_str().to_string()).collect(),
            history,
            live_updates: cfg.live,
            interval: cfg.interval.map(candles_proto::duration),
            verifications: cfg.verifications,
        },
    )?;
    let rejected = |s: tonic::Status| ClientError::Rejected {
        server: cfg.server.clone(),
        code: s.code(),
        message: s.message().to_string(),
    };
    let mut stream = match client.subscribe(request).await {
        Ok(r) => r.into_inner(),
        Err(s) if refused_interval(cfg.interval, &served.intervals, &s) => {
            return Ok(End::Refused(format!(
                "the server at {} does not build that interval: {}",
                cfg.server,
                s.message()
            )));
        }
        Err(s) if fatal(s.code()) => return Err(rejected(s)),
        Err(s) => return Ok(End::Retry(format!("subscribe: {}", describe(&s)))),
    };
    if tx
        .send(Event::Conn(Link::Server, LinkState::Live))
        .await
        .is_err()
    {
        return Ok(End::Stop);
    }
    loop {
        let message = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(End::Eof),
            Err(s) if fatal(s.code()) => return Err(rejected(s)),
            Err(s) => return Ok(End::Retry(format!("stream: {}", describe(&s)))),
        };
        *attempt = 0;
        backoff.reset();
        if tx.send(decode(message)).await.is_err() {
            return Ok(End::Stop);
        }
    }
}

/// Whether `status` refuses the interval asked for: invalid, and the interval is not among
/// the `served` ones (or the server did not list them and names an interval).
fn refused_interval(asked: Option<Interval>, served: &[Interval], status: &tonic::Status) -> bool {
    let Some(asked) = asked else {
        return false;
    };
    status.code() == Code::InvalidArgument
        && if served.is_empty() {
            status.message().contains("interval")
        } else {
            !served.contains(&asked)
        }
}

/// A stream message as an event: the candle or the verdict, or what was wrong with it.
fn decode(message: candles_proto::v1::SubscribeResponse) -> Event {
    if let Some(v) = &message.verification {
        return match Verification::try_from(v) {
            Ok(v) => Event::Verified(v),
            Err(e) => Event::BadData(e),
        };
    }
    match message.candle.as_ref().map(Candle::try_from) {
        Some(Ok(candle)) => {
            metrics::counter!("tui_candles_received_total").increment(1);
            Event::Candle(candle)
        }
        Some(Err(e)) => {
            metrics::counter!("tui_bad_candles_total").increment(1);
            tracing::warn!(error = %e, "skipping a candle that failed to decode");
            Event::BadData(e.to_string())
        }
        None => {
            metrics::counter!("tui_bad_candles_total").increment(1);
            Event::BadData("a stream message without a candle".into())
        }
    }
}

#[cfg(test)]
mod tests;
