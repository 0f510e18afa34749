//! The `candles.v1.CandleService` implementation.
//!
//! # Subscribe
//! 1. Validate: at least one pair (any accepted spelling), known sources (default composite),
//!    `history` at most what the server keeps; otherwise `INVALID_ARGUMENT` naming the input.
//! 2. Subscribe to the hub *before* reading history, so nothing published meanwhile is missed.
//! 3. Send history from Redis (oldest first, `historical: true`), then live candles. A final
//!    whose start is at or before the last one sent for its series is dropped, so the seam has
//!    no duplicate, and a live update for an already-final window is dropped as stale.
//! 4. Each client has a bounded queue ([`crate::ServiceConfig::client_queue`]). When it
//!    overflows the client receives `RESOURCE_EXHAUSTED` ("client too slow: ... dropped") ahead
//!    of anything still queued, and its stream ends; other clients are unaffected.

pub mod limits;

use crate::config::ServiceConfig;
use crate::hub::{Hub, HubCandle};
use crate::metrics as m;
use crate::ratelimit::SharedLogLimit;
use crate::store::Store;
use candles_core::time::Duration;
use candles_core::{Interval, Micros, Pair, Source};
use candles_proto::v1::candle_service_server::CandleService;
use candles_proto::v1::{
    self, ListMarketsRequest, ListMarketsResponse, Market, SubscribeRequest, SubscribeResponse,
};
use futures::Stream;
use std::collections::HashMap;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{broadcast, mpsc, oneshot};
use tonic::{Request, Response, Status};

/// Most pairs one subscription may name.
pub const MAX_PAIRS: usize = 256;

/// The gRPC service of one instance.
pub struct Candles {
    store: Store,
    hub: Hub,
    interval: Interval,
    grace: Duration,
    history_max: usize,
    client_queue: usize,
    pairs: Vec<Pair>,
    slow_client_grace: std::time::Duration,
}

static REJECTED_LOG: SharedLogLimit = SharedLogLimit::new(10, std::time::Duration::from_secs(10));
static SLOW_LOG: SharedLogLimit = SharedLogLimit::new(10, std::time::Duration::from_secs(10));
static AUTH_LOG: SharedLogLimit = SharedLogLimit::new(10, std::time::Duration::from_secs(10));

impl Candles {
    /// The service over `store` (history, markets) and `hub` (live candles).
    pub fn new(config: &ServiceConfig, store: Store, hub: Hub) -> Candles {
        Candles {
            store,
            hub,
            interval: config.engine.interval,
            grace: config.engine.grace,
            history_max: config.history_max,
            client_queue: config.client_queue,
            pairs: config.pairs.clone(),
            slow_client_grace: config.grpc.slow_client_grace,
        }
    }
}

/// A validated subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Pairs, canonical, without duplicates.
    pub pairs: Vec<Pair>,
    /// Sources, without duplicates.
    pub sources: Vec<Source>,
    /// Finalized candles per series to send first.
    pub history: usize,
    /// Whether in-progress candles are wanted.
    pub live_updates: bool,
}

/// Checks a request; the error names the bad input and what is accepted.
pub fn validate(
    req: &SubscribeRequest,
    history_max: usize,
    served: &[Pair],
) -> Result<Subscription, Status> {
    if req.pairs.iter().all(|p| p.trim().is_empty()) {
        return Err(Status::invalid_argument(
            "pairs is required: name at least one pair, e.g. BTC-USDT",
        ));
    }
    if req.pairs.len() > MAX_PAIRS {
        return Err(Status::invalid_argument(format!(
            "too many pairs ({}): at most {MAX_PAIRS} per subscription",
            req.pairs.len()
        )));
    }
    let mut pairs = Vec::new();
    for p in req.pairs.iter().filter(|p| !p.trim().is_empty()) {
        let pair = Pair::parse(p).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !served.contains(&pair) {
            let list: Vec<String> = served.iter().map(Pair::to_string).collect();
            return Err(Status::invalid_argument(format!(
                "unknown pair {} ({pair}): this server serves {}; ask for one of those (or start the server with --pairs)",
                candles_core::excerpt(p),
                list.join(", ")
            )));
        }
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    let mut sources = Vec::new();
    for s in &req.sources {
        let source = Source::from_str(s).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !sources.contains(&source) {
            sources.push(source);
        }
    }
    if sources.is_empty() {
        sources.push(Source::Composite);
    }
    let history = req.history as usize;
    if history > history_max {
        return Err(Status::invalid_argument(format!(
            "history {history} is more than this server keeps ({history_max} candles per pair and source); ask for at most {history_max}"
        )));
    }
    Ok(Subscription {
        pairs,
        sources,
        history,
        live_updates: req.live_updates,
    })
}

/// The configured bearer token, kept only as its SHA-256 digest: [`check_token`] compares
/// digests in constant time, so neither the token's bytes nor its length leak through timing.
#[derive(Clone)]
pub struct Token([u8; 32]);

impl Token {
    /// The token `text`.
    pub fn new(text: &str) -> Token {
        Token(digest(text.as_bytes()))
    }

    /// Whether `given` is this token (constant time in the token).
    pub fn matches(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(digest(given.as_bytes()).ct_eq(&self.0))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The token of an `authorization` value `<scheme> <token>` whose scheme is `Bearer` in any case.
fn bearer(value: &str) -> Option<&str> {
    let value = value.trim_start();
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_matches([' ', '\t']))
}

/// Checks `authorization: Bearer <token>` (scheme in any case) when a token is configured.
#[allow(clippy::result_large_err)]
pub fn check_token(token: Option<&Token>, req: Request<()>) -> Result<Request<()>, Status> {
    let Some(token) = token else { return Ok(req) };
    let value = req.metadata().get("authorization");
    let given = value.and_then(|v| v.to_str().ok()).and_then(bearer);
    match given {
        Some(given) if token.matches(given) => Ok(req),
        Some(_) => {
            if let Some(suppressed) = AUTH_LOG.check() {
                tracing::info!(suppressed, "gRPC call with an invalid bearer token refused");
            }
            Err(Status::unauthenticated("invalid bearer token"))
        }
        None => {
            if let Some(suppressed) = AUTH_LOG.check() {
                tracing::info!(
                    suppressed,
                    present = value.is_some(),
                    "gRPC call without a bearer token refused"
                );
            }
            Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>` metadata; this server requires a token",
            ))
        }
    }
}

/// Decides, per client, which hub candles to send (pair/source filter, seam and duplicate guard).
#[derive(Debug)]
struct Filter {
    pairs: Vec<Pair>,
    sources: Vec<Source>,
    live_updates: bool,
    /// Start of the last final sent per series.
    last_final: HashMap<(Pair, Source), Micros>,
}

impl Filter {
    fn accept(&mut self, c: &HubCandle) -> bool {
        if !self.pairs.contains(&c.pair) || !self.sources.contains(&c.source) {
            return false;
        }
        let last = self.last_final.get(&(c.pair, c.source)).copied();
        if c.is_final {
            if last.is_some_and(|l| c.start <= l) {
                return false;
            }
            self.last_final.insert((c.pair, c.source), c.start);
            true
        } else {
            self.live_updates && last.is_none_or(|l| c.start > l)
        }
    }
}

/// Keeps the connected-clients gauge right however a client task ends.
struct ClientGuard;

impl ClientGuard {
    fn new() -> ClientGuard {
        metrics::gauge!(m::CLIENTS_CONNECTED).increment(1.0);
        ClientGuard
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        metrics::gauge!(m::CLIENTS_CONNECTED).decrement(1.0);
    }
}

type Item = Result<SubscribeResponse, Status>;

/// What a client's queue holds: a shared candle (the hub's own `Arc`, not a copy) and whether it
/// is history. Small (two words and a flag), so an idle client's queue costs little memory; the
/// wire message is built when the client's stream takes it.
type Queued = (Arc<HubCandle>, bool);

/// A client's response stream: an abort status (overflow) first, else the bounded queue.
pub struct ClientStream {
    queue: mpsc::Receiver<Queued>,
    abort: Option<oneshot::Receiver<Status>>,
    done: bool,
}

impl Stream for ClientStream {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(abort) = self.abort.as_mut() {
            match Pin::new(abort).poll(cx) {
                Poll::Ready(Ok(status)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Err(_)) => self.abort = None,
                Poll::Pending => {}
            }
        }
        self.queue.poll_recv(cx).map(|item| {
            item.map(|(c, historical)| {
                Ok(SubscribeResponse {
                    candle: Some(c.wire.clone()),
                    historical,
                })
            })
        })
    }
}

use std::future::Future as _;

#[tonic::async_trait]
impl CandleService for Candles {
    type SubscribeStream = ClientStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<ClientStream>, Status> {
        let sub = match validate(request.get_ref(), self.history_max, &self.pairs) {
            Ok(sub) => sub,
            Err(status) => {
                if let Some(suppressed) = REJECTED_LOG.check() {
                    // The message holds excerpts only, never the whole input.
                    tracing::info!(
                        suppressed,
                        reason = status.message(),
                        "subscription refused"
                    );
                }
                return Err(status);
            }
        };
        let conn = limits::ConnInfo::of(request.extensions()).map(|i| i.conn.clone());
        // Subscribe first: whatever is published while history is read is buffered here.
        let mut live = self.hub.subscribe();
        let mut history = Vec::new();
        if sub.history > 0 {
            for &pair in &sub.pairs {
                for &source in &sub.sources {
                    let candles = self
                        .store
                        .history(pair, source, sub.history)
                        .await
                        .map_err(|e| {
                            Status::unavailable(format!("cannot read history: {e}; retry shortly"))
                        })?;
                    history.extend(
                        candles
                            .into_iter()
                            .filter_map(|w| HubCandle::decode_wire(w, self.interval)),
                    );
                }
            }
            history.sort_by_key(|c| (c.start, c.pair, c.source));
        }
        let mut filter = Filter {
            pairs: sub.pairs.clone(),
            sources: sub.sources.clone(),
            live_updates: sub.live_updates,
            last_final: HashMap::new(),
        };
        let (tx, queue) = mpsc::channel(self.client_queue);
        let (abort_tx, abort) = oneshot::channel();
        let capacity = self.client_queue;
        let grace = self.grace;
        let closed = self.hub.closed().clone();
        let slow = SlowClient {
            capacity,
            grace: self.slow_client_grace,
            conn,
        };
        tracing::debug!(pairs = ?sub.pairs, sources = ?sub.sources, history = sub.history, live = sub.live_updates, "client subscribed");
        tokio::spawn(async move {
            let _guard = ClientGuard::new();
            for c in history {
                if !filter.accept(&c) {
                    continue;
                }
                let item = (Arc::new(c), true);
                match tokio::time::timeout(std::time::Duration::from_secs(10), tx.send(item)).await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => return slow.drop_client(abort_tx, tx).await,
                }
            }
            loop {
                let c = tokio::select! {
                    _ = closed.cancelled() => return,
                    _ = tx.closed() => return,
                    r = live.recv() => match r {
                        Ok(c) => c,
                        Err(broadcast::error::RecvError::Lagged(_)) => return slow.drop_client(abort_tx, tx).await,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                if !filter.accept(&c) {
                    continue;
                }
                let (is_final, end) = (c.is_final, c.end);
                match tx.try_send((c, false)) {
                    Ok(()) => {
                        if is_final {
                            let due = end.plus(grace);
                            let late = (Micros::now().0 - due.0) as f64 / 1e6;
                            metrics::histogram!(m::FINALIZE_TO_CLIENT).record(late.max(0.0));
                        }
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        return slow.drop_client(abort_tx, tx).await;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        });
        Ok(Response::new(ClientStream {
            queue,
            abort: Some(abort),
            done: false,
        }))
    }

    async fn list_markets(
        &self,
        _: Request<ListMarketsRequest>,
    ) -> Result<Response<ListMarketsResponse>, Status> {
        let markets = self.store.markets().await.map_err(|e| {
            Status::unavailable(format!("cannot read the market list: {e}; retry shortly"))
        })?;
        Ok(Response::new(ListMarketsResponse {
            markets: markets
                .into_iter()
                .map(|(pair, sources)| Market {
                    pair: pair.to_string(),
                    sources: sources.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            interval: Some(candles_proto::duration(self.interval)),
            max_history: u32::try_from(self.history_max).unwrap_or(u32::MAX),
        }))
    }
}

/// How a client that fell too far behind is dropped.
struct SlowClient {
    capacity: usize,
    grace: std::time::Duration,
    conn: Option<Arc<limits::Conn>>,
}

impl SlowClient {
    /// Queues `RESOURCE_EXHAUSTED` ahead of everything else; if the client's stream has not
    /// taken it and ended within the grace (it reads nothing, so HTTP/2 flow control holds the
    /// stream), closes its connection: hyper then drops the stream, its queue and its send
    /// buffer.
    async fn drop_client(self, abort: oneshot::Sender<Status>, tx: mpsc::Sender<Queued>) {
        metrics::counter!(m::CLIENTS_DROPPED).increment(1);
        let capacity = self.capacity;
        if let Some(suppressed) = SLOW_LOG.check() {
            tracing::info!(capacity, suppressed, "dropping a slow gRPC client");
        }
        let _ = abort.send(Status::resource_exhausted(format!(
            "client too slow: more than {capacity} candles were waiting to be read; dropped. Read the stream faster, then subscribe again (with history to refill)"
        )));
        if tokio::time::timeout(self.grace, tx.closed()).await.is_err()
            && let Some(conn) = self.conn
        {
            if let Some(suppressed) = SLOW_LOG.check() {
                tracing::info!(grace = ?self.grace, suppressed, "a dropped gRPC client did not take its status; closing its connection");
            }
            metrics::counter!(limits::CONNECTIONS_CLOSED, "reason" => "slow_client").increment(1);
            conn.close();
        }
    }
}

impl HubCandle {
    /// A stored candle as a hub candle (for history); `None` if invalid or of another interval.
    pub fn decode_wire(wire: v1::Candle, interval: Interval) -> Option<HubCandle> {
        let candle = candles_core::Candle::try_from(&wire).ok()?;
        if candle.interval != interval {
            return None;
        }
        Some(HubCandle {
            pair: candle.pair,
            source: candle.source,
            start: candle.start,
            end: candle.end(),
            is_final: candle.is_final,
            wire,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn served() -> Vec<Pair> {
        Pair::defaults()
    }

    fn req(pairs: &[&str], sources: &[&str], history: u32) -> SubscribeRequest {
        SubscribeRequest {
            pairs: pairs.iter().map(|s| s.to_string()).collect(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            history,
            live_updates: false,
        }
    }

    #[test]
    fn validation_names_the_bad_input() {
        let ok = validate(
            &req(&["btcusdt", "BTC-USDT", "eth/usdt"], &[], 5),
            10,
            &served(),
        )
        .unwrap();
        assert_eq!(ok.pairs.len(), 2);
        assert_eq!(ok.sources, vec![Source::Composite]);
        let e = validate(&req(&[], &[], 0), 10, &served()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("pairs"), "{}", e.message());
        let e = validate(&req(&["dogeusdt"], &[], 0), 10, &served()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("\"dogeusdt\"")
                && e.message().contains("BTC-USDT, ETH-USDT, SOL-USDT"),
            "{}",
            e.message()
        );
        let e = validate(&req(&["nonsense!"], &[], 0), 10, &served()).unwrap_err();
        assert!(e.message().contains("\"nonsense!\""), "{}", e.message());
        let e = validate(&req(&["btcusdt"], &["ftx"], 0), 10, &served()).unwrap_err();
        assert!(
            e.message().contains("\"ftx\"") && e.message().contains("composite"),
            "{}",
            e.message()
        );
        let e = validate(&req(&["btcusdt"], &[], 11), 10, &served()).unwrap_err();
        assert!(
            e.message().contains("11") && e.message().contains("10"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn bearer_token_is_checked() {
        let mut r = Request::new(());
        let t = Token::new("s3cret");
        let token = Some(&t);
        assert!(check_token(None, Request::new(())).is_ok());
        assert_eq!(
            check_token(token, Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        r.metadata_mut()
            .insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(check_token(token, r).is_ok());
        for ok in ["bearer s3cret", "BEARER  s3cret", "Bearer\ts3cret "] {
            let mut r = Request::new(());
            r.metadata_mut()
                .insert("authorization", ok.parse().unwrap());
            assert!(check_token(token, r).is_ok(), "{ok}");
        }
        for bad in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Basic s3cret",
            "s3cret",
            "Bearer",
        ] {
            let mut r = Request::new(());
            r.metadata_mut()
                .insert("authorization", bad.parse().unwrap());
            assert!(check_token(token, r).is_err(), "{bad}");
        }
        let mut r = Request::new(());
        r.metadata_mut()
            .insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(
            check_token(token, r).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    fn hc(start: i64, is_final: bool) -> HubCandle {
        let pair = Pair::parse("BTC-USDT").unwrap();
        let c = candles_core::Candle::flat(
            pair,
            Source::Composite,
            Interval::seconds(1),
            Micros(start),
            1.into(),
        );
        HubCandle {
            pair,
            source: Source::Composite,
            start: Micros(start),
            end: Micros(start + 1_000_000),
            is_final,
            wire: v1::Candle::from(&c),
        }
    }

    #[test]
    fn filter_drops_duplicates_at_the_seam_and_stale_live_updates() {
        let mut f = Filter {
            pairs: vec![Pair::parse("BTC-USDT").unwrap()],
            sources: vec![Source::Composite],
            live_updates: true,
            last_final: HashMap::new(),
        };
        assert!(f.accept(&hc(1_000_000, true)));
        assert!(!f.accept(&hc(1_000_000, true)), "the same final twice");
        assert!(!f.accept(&hc(0, true)), "an older final");
        assert!(
            !f.accept(&hc(1_000_000, false)),
            "a live update of a final window"
        );
        assert!(f.accept(&hc(2_000_000, false)));
        assert!(f.accept(&hc(2_000_000, true)));
        f.live_updates = false;
        assert!(!f.accept(&hc(3_000_000, false)));
    }
}
