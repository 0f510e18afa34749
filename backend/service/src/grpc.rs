//! The `candles.v1.CandleService` implementation.
//!
//! # Subscribe
//! 1. Validate: at least one pair (any accepted spelling), known sources (default composite),
//!    `history` at most what the server keeps, an interval it builds (default: 5s when built,
//!    else the finest); otherwise `INVALID_ARGUMENT` naming the input (and the intervals built).
//!    The client then gets candles of that one interval only.
//! 2. Subscribe to the hub *before* reading history, so nothing published meanwhile is missed.
//! 3. Send history from Redis (oldest first, `historical: true`), then live candles. A final
//!    whose start is at or before the last one sent for its series is dropped, so the seam has
//!    no duplicate, and a live update for an already-final window is dropped as stale.
//! 4. With `verifications`: the hub's verdicts are subscribed to first too, then the stored ones
//!    of the client's pairs (every exchange) are sent after history, then each new one, once
//!    ([`crate::verdicts`]).
//! 5. Each client has a bounded queue ([`crate::ServiceConfig::client_queue`]). When it
//!    overflows the client receives `RESOURCE_EXHAUSTED` ("client too slow: ... dropped") ahead
//!    of anything still queued, and its stream ends; other clients are unaffected.

//!
//! Files: [`request`] validates, [`auth`] checks the bearer token, [`client`] serves one client
//! (filter, queue, slow-client drop), [`limits`] bounds connections.
//!
//! # Shutdown
//! Client tasks run on the service's task tracker and end on its shutdown token; their streams
//! end with them.

pub mod auth;
pub mod client;
pub mod limits;
pub mod request;

pub use auth::{Token, check_token};
pub use request::{MAX_PAIRS, Subscription, validate, validate_interval};

use crate::config::ServiceConfig;
use crate::hub::{Hub, HubCandle};
use crate::ratelimit::SharedLogLimit;
use crate::store::Store;
use crate::verdicts::VerdictFilter;
use candles_core::time::Duration;
use candles_core::{Interval, Intervals, Pair};
use candles_proto::v1::candle_service_server::CandleService;
use candles_proto::v1::{ListMarketsRequest, ListMarketsResponse, Market, SubscribeRequest};
use client::{Client, ClientStream, Filter, SlowClient, Verdicts};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

/// The gRPC service of one instance.
pub struct Candles {
    store: Store,
    hub: Hub,
    /// Every interval built, finest first.
    intervals: Intervals,
    /// The interval of subscriptions that name none.
    interval: Interval,
    grace: Duration,
    history_max: usize,
    client_queue: usize,
    pairs: Vec<Pair>,
    slow_client_grace: std::time::Duration,
    /// Client tasks run here and stop on `shutdown`.
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

static REJECTED_LOG: SharedLogLimit = SharedLogLimit::new(10, std::time::Duration::from_secs(10));

impl Candles {
    /// The service over `store` (history, markets) and `hub` (live candles); client tasks run
    /// on `tracker` until `shutdown`.
    pub fn new(
        config: &ServiceConfig,
        store: Store,
        hub: Hub,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Candles {
        Candles {
            store,
            hub,
            intervals: config.intervals(),
            interval: config.default_interval(),
            grace: config.engine.grace,
            history_max: config.history_max,
            client_queue: config.client_queue,
            pairs: config.pairs.clone(),
            slow_client_grace: config.grpc.slow_client_grace,
            tracker,
            shutdown,
        }
    }

    /// The finals of `interval` in history that `sub` asks for, oldest first.
    async fn history(
        &self,
        sub: &Subscription,
        interval: Interval,
    ) -> Result<Vec<HubCandle>, Status> {
        let mut history = Vec::new();
        if sub.history == 0 {
            return Ok(history);
        }
        let store = self.store.for_interval(interval);
        for &pair in &sub.pairs {
            for &source in &sub.sources {
                let candles = store
                    .history(pair, source, sub.history)
                    .await
                    .map_err(|e| {
                        Status::unavailable(format!("cannot read history: {e}; retry shortly"))
                    })?;
                history.extend(
                    candles
                        .into_iter()
                        .filter_map(|w| HubCandle::decode_wire(w, interval)),
                );
            }
        }
        history.sort_by_key(|c| (c.start, c.pair, c.source));
        Ok(history)
    }
}

impl Candles {
    /// The verdicts `sub` asks for (none unless it asked): the hub's, subscribed to first, and
    /// the stored ones of its pairs.
    async fn verdicts(&self, sub: &Subscription) -> Result<Option<Verdicts>, Status> {
        if !sub.verifications {
            return Ok(None);
        }
        let live = self.hub.subscribe_verdicts();
        let stored = self.store.verdicts(&sub.pairs).await.map_err(|e| {
            Status::unavailable(format!("cannot read verdicts: {e}; retry shortly"))
        })?;
        Ok(Some(Verdicts {
            stored,
            live,
            filter: VerdictFilter::new(&sub.pairs),
        }))
    }
}

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
        let interval = validate_interval(
            request.get_ref().interval.as_ref(),
            self.intervals.as_slice(),
            self.interval,
        )?;
        let conn = limits::ConnInfo::of(request.extensions()).map(|i| i.conn.clone());
        // Subscribe first: whatever is published while history is read is buffered here.
        let live = self.hub.subscribe();
        let verdicts = self.verdicts(&sub).await?;
        let history = self.history(&sub, interval).await?;
        tracing::debug!(pairs = ?sub.pairs, sources = ?sub.sources, %interval, history = sub.history, live = sub.live_updates, "client subscribed");
        let client = Client {
            history,
            live,
            filter: Filter::new(&sub, interval),
            grace: self.grace,
            slow: SlowClient {
                capacity: self.client_queue,
                grace: self.slow_client_grace,
                conn,
            },
            verdicts,
        };
        Ok(Response::new(
            client.start(&self.tracker, self.shutdown.clone()),
        ))
    }

    async fn list_markets(
        &self,
        _: Request<ListMarketsRequest>,
    ) -> Result<Response<ListMarketsResponse>, Status> {
        // Every series gets its finest final first.
        let markets = self.store.markets().await.map_err(|e| {
            Status::unavailable(format!("cannot read the market list: {e}; retry shortly"))
        })?;
        Ok(Response::new(ListMarketsResponse {
            markets: markets
                .into_iter()
                .map(|(pair, sources)| Market {
                    pair: pair.to_string(),
                    sources: sources.iter().map(|s| s.to_string()).collect(),
                    listings: Vec::new(),
                })
                .collect(),
            interval: Some(candles_proto::duration(self.interval)),
            intervals: self
                .intervals
                .as_slice()
                .iter()
                .map(|&i| candles_proto::duration(i))
                .collect(),
            max_history: u32::try_from(self.history_max).unwrap_or(u32::MAX),
        }))
    }
}
