//! One Redis subscriber per instance, fanned out to the instance's gRPC clients.
//!
//! The subscriber pattern-subscribes to every pair's channel of every served interval and pushes each
//! candle into a [`tokio::sync::broadcast`]; each client task holds a receiver. It also subscribes
//! to the connectors' verdict channel ([`crate::verdicts`]): verdicts go through a broadcast of
//! their own, received only by the clients that asked for them. When Redis goes
//! away the subscriber reconnects with backoff and resubscribes; clients stay connected. Finals
//! published while the subscription was down (the consumer holds them and publishes them when
//! Redis is back, possibly before this subscriber is back) are read from the history after the
//! resubscription and sent into the hub *before* anything the new subscription carries, so every
//! client gets them in order; a client's own filter drops any it already had.

use crate::metrics as m;
use crate::redis_input::{ReadFrom, RedisCheck, reject};
use crate::status::DependencyStatus;
use crate::store::Store;
use crate::verdicts::HubVerdict;
use candles_core::retry::Doubling;
use candles_core::{Candle, Interval, Micros, Pair, Source};
use candles_proto::v1;
use futures::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// A candle as it came from Redis: the wire form to send, and the fields clients filter on.
#[derive(Debug)]
pub struct HubCandle {
    /// Canonical pair.
    pub pair: Pair,
    /// Composite or one exchange.
    pub source: Source,
    /// Window length.
    pub interval: Interval,
    /// Window start.
    pub start: Micros,
    /// Window end.
    pub end: Micros,
    /// Final or live.
    pub is_final: bool,
    /// The message clients receive.
    pub wire: v1::Candle,
}

impl HubCandle {
    /// Decodes and validates a Pub/Sub payload ([`RedisCheck`]); `None` (counted, logged
    /// rate-limited) when it is not a plausible candle this server serves.
    pub fn decode(payload: &[u8], check: &RedisCheck) -> Option<HubCandle> {
        match check.check(payload, Micros::now(), ReadFrom::PubSub) {
            Ok((wire, candle)) => Some(HubCandle::new(wire, &candle)),
            Err(reason) => {
                reject(reason, payload);
                None
            }
        }
    }

    /// A stored candle as a hub candle (for history); `None` if invalid or of another interval.
    pub fn decode_wire(wire: v1::Candle, interval: Interval) -> Option<HubCandle> {
        let candle = Candle::try_from(&wire).ok()?;
        (candle.interval == interval).then(|| HubCandle::new(wire, &candle))
    }

    fn new(wire: v1::Candle, candle: &Candle) -> HubCandle {
        HubCandle {
            pair: candle.pair,
            source: candle.source,
            interval: candle.interval,
            start: candle.start,
            end: candle.end(),
            is_final: candle.is_final,
            wire,
        }
    }
}

/// The in-process fan-out of candles to client tasks (client streams end on the service's
/// shutdown token, not on the hub).
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<HubCandle>>,
    verdicts: broadcast::Sender<Arc<HubVerdict>>,
}

impl Hub {
    /// A hub buffering up to `capacity` candles for the slowest client task.
    pub fn new(capacity: usize) -> Hub {
        let (tx, _) = broadcast::channel(capacity.max(16));
        // A verdict per pair, exchange and minute: a small buffer is plenty.
        let (verdicts, _) = broadcast::channel(1024);
        Hub { tx, verdicts }
    }

    /// A receiver of every verdict sent from now on.
    pub fn subscribe_verdicts(&self) -> broadcast::Receiver<Arc<HubVerdict>> {
        self.verdicts.subscribe()
    }

    /// Sends a verdict to every client task that asked for verdicts.
    pub fn send_verdict(&self, verdict: HubVerdict) {
        let _ = self.verdicts.send(Arc::new(verdict));
    }

    /// A receiver of every candle sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<HubCandle>> {
        self.tx.subscribe()
    }

    /// Sends a candle to every client task.
    pub fn send(&self, candle: HubCandle) {
        let _ = self.tx.send(Arc::new(candle));
    }
}

/// Sends into `hub` the finals in `store`'s history (of its interval) whose window ended at or
/// after `since`, oldest first per series (what clients may have missed while the subscription
/// was down).
async fn replay_history(store: &Store, hub: &Hub, since: Micros, max: usize) {
    let markets = match store.markets().await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the market list to replay missed candles");
            return;
        }
    };
    let mut replayed = 0usize;
    for (pair, sources) in markets {
        for source in sources {
            let Ok(candles) = store.history(pair, source, max).await else {
                continue;
            };
            // `history` returns only finals that passed the check.
            for wire in candles {
                let Ok(candle) = Candle::try_from(&wire) else {
                    continue;
                };
                if candle.end() >= since {
                    hub.send(HubCandle::new(wire, &candle));
                    replayed += 1;
                }
            }
        }
    }
    tracing::info!(
        replayed,
        "replayed finals published while the Redis subscription was down"
    );
}

/// Replays the finals of every served interval published since a subscription was lost at
/// `lost` (wall clock, monotonic), with a margin of a few windows before the loss: it covers
/// finals published just before it that the old subscription may not have delivered.
async fn replay_missed(store: &Store, hub: &Hub, (at, since): (Micros, std::time::Instant)) {
    for &interval in store.check().intervals().as_slice() {
        let margin = (3 * interval.micros()).max(10_000_000);
        let windows = since.elapsed().as_micros() as usize / interval.micros().max(1) as usize;
        let max = windows.saturating_add(8).min(10_000);
        let store = store.for_interval(interval);
        replay_history(&store, hub, Micros(at.0 - margin), max).await;
    }
}

/// Sends the subscription's candles into `hub` until it is lost (`false`) or `stop` (`true`).
async fn forward(
    mut pubsub: redis::aio::PubSub,
    store: &Store,
    hub: &Hub,
    stop: &CancellationToken,
) -> bool {
    let verdicts = store.reports().verifications();
    let mut messages = pubsub.on_message();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return true,
            msg = messages.next() => match msg {
                Some(msg) if msg.get_channel_name() == verdicts => {
                    let bytes = msg.get_payload_bytes();
                    match HubVerdict::decode(bytes, store.check()) {
                        Ok(v) => hub.send_verdict(v),
                        Err(_) => reject("verification", bytes),
                    }
                }
                Some(msg) => {
                    if let Some(c) = HubCandle::decode(msg.get_payload_bytes(), store.check()) {
                        hub.send(c);
                    }
                }
                None => return false,
            }
        }
    }
}

/// Subscribes to Redis (the channels of every interval `store` checks for) until `stop`,
/// feeding `hub`; reconnects with backoff when Redis is gone.
pub async fn run_subscriber(
    url: String,
    store: Store,
    hub: Hub,
    status: Arc<DependencyStatus>,
    stop: CancellationToken,
) {
    let client = match redis::Client::open(url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(url = %crate::redis_input::redact(&url), error = %e, "invalid Redis URL; the Redis subscriber does not run");
            return;
        }
    };
    let patterns: Vec<String> = store
        .check()
        .intervals()
        .as_slice()
        .iter()
        .map(|&i| store.for_interval(i).keys().pattern())
        .collect();
    let mut backoff = Doubling::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut first = true;
    // When the last subscription was lost (wall clock), to replay what was missed since.
    let mut lost_at: Option<(Micros, std::time::Instant)> = None;
    while !stop.is_cancelled() {
        if !first {
            metrics::counter!(m::REDIS_RECONNECTS).increment(1);
        }
        first = false;
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(&patterns).await?;
            pubsub.subscribe(store.reports().verifications()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(2), connect) => r,
        };
        match pubsub {
            Ok(Ok(pubsub)) => {
                tracing::info!(patterns = ?patterns, "subscribed to Redis");
                status.set_subscriber(true);
                backoff.reset();
                if let Some(lost) = lost_at.take() {
                    replay_missed(&store, &hub, lost).await;
                }
                if forward(pubsub, &store, &hub, &stop).await {
                    return;
                }
                status.set_subscriber(false);
                lost_at.get_or_insert((Micros::now(), std::time::Instant::now()));
                tracing::warn!("lost the Redis subscription; reconnecting");
            }
            Ok(Err(e)) => {
                status.set_subscriber(false);
                tracing::warn!(error = %e, retry_in = ?backoff.peek(), "cannot subscribe to Redis; retrying");
            }
            Err(_) => {
                status.set_subscriber(false);
                tracing::warn!(retry_in = ?backoff.peek(), "Redis subscription timed out; retrying");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}
