//! One subscribed client: its filter (interval, pair, source, the seam between history and live), its
//! bounded queue and response stream, and how it is dropped when it falls too far behind.

use super::limits;
use super::request::Subscription;
use crate::hub::HubCandle;
use crate::metrics as m;
use crate::ratelimit::SharedLogLimit;
use crate::verdicts::{HubVerdict, VerdictFilter};
use candles_core::time::Duration;
use candles_core::{Interval, Micros, Pair, Source};
use candles_proto::v1::SubscribeResponse;
use futures::Stream;
use std::collections::HashMap;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Status;

static SLOW_LOG: SharedLogLimit = SharedLogLimit::new(10, std::time::Duration::from_secs(10));

/// Decides, per client, which hub candles to send (pair/source filter, seam and duplicate guard).
#[derive(Debug)]
pub struct Filter {
    interval: Interval,
    pairs: Vec<Pair>,
    sources: Vec<Source>,
    live_updates: bool,
    /// Start of the last final sent per series.
    last_final: HashMap<(Pair, Source), Micros>,
}

impl Filter {
    /// What `sub` asked for, candles of `interval`; nothing sent yet.
    pub fn new(sub: &Subscription, interval: Interval) -> Filter {
        Filter {
            interval,
            pairs: sub.pairs.clone(),
            sources: sub.sources.clone(),
            live_updates: sub.live_updates,
            last_final: HashMap::new(),
        }
    }

    fn accept(&mut self, c: &HubCandle) -> bool {
        if c.interval != self.interval
            || !self.pairs.contains(&c.pair)
            || !self.sources.contains(&c.source)
        {
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
/// is history, or a shared verdict. Small (two words and a flag), so an idle client's queue
/// costs little memory; the wire message is built when the client's stream takes it.
enum Queued {
    Candle(Arc<HubCandle>, bool),
    Verdict(Arc<HubVerdict>),
}

impl Queued {
    fn response(&self) -> SubscribeResponse {
        match self {
            Queued::Candle(c, historical) => SubscribeResponse {
                candle: Some(c.wire.clone()),
                historical: *historical,
                verification: None,
            },
            Queued::Verdict(v) => SubscribeResponse {
                candle: None,
                historical: false,
                verification: Some(v.wire.clone()),
            },
        }
    }
}

/// The verdicts a client asked for: the stored ones to send first, then the hub's.
pub struct Verdicts {
    /// Stored verdicts, sent first.
    pub stored: Vec<HubVerdict>,
    /// The hub's verdicts, subscribed to before the stored ones were read.
    pub live: broadcast::Receiver<Arc<HubVerdict>>,
    /// Which verdicts, each once.
    pub filter: VerdictFilter,
}

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
        self.queue
            .poll_recv(cx)
            .map(|item| item.map(|queued| Ok(queued.response())))
    }
}

/// One subscribed client, about to be served.
pub struct Client {
    /// Finals from history, oldest first, sent first (`historical: true`).
    pub history: Vec<HubCandle>,
    /// The hub, subscribed to before history was read (nothing published meanwhile is missed).
    pub live: broadcast::Receiver<Arc<HubCandle>>,
    /// What the client asked for.
    pub filter: Filter,
    /// The finalization grace (for the finalize-to-client latency metric).
    pub grace: Duration,
    /// How a client that falls behind is dropped.
    pub slow: SlowClient,
    /// The verdicts, when the client asked for them.
    pub verdicts: Option<Verdicts>,
}

impl Client {
    /// Starts the client's task on `tracker` (it ends with its stream or on `shutdown`); returns
    /// its response stream.
    pub fn start(self, tracker: &TaskTracker, shutdown: CancellationToken) -> ClientStream {
        let (tx, queue) = mpsc::channel(self.slow.capacity);
        let (abort_tx, abort) = oneshot::channel();
        tracker.spawn(self.run(tx, abort_tx, shutdown));
        ClientStream {
            queue,
            abort: Some(abort),
            done: false,
        }
    }

    /// Sends history, then live candles, through the filter into the queue `tx`.
    async fn run(
        mut self,
        tx: mpsc::Sender<Queued>,
        abort_tx: oneshot::Sender<Status>,
        shutdown: CancellationToken,
    ) {
        let _guard = ClientGuard::new();
        for c in std::mem::take(&mut self.history) {
            if !self.filter.accept(&c) {
                continue;
            }
            match send_first(&tx, Queued::Candle(Arc::new(c), true)).await {
                Ok(()) => {}
                Err(Stop::Gone) => return,
                Err(Stop::Slow) => return self.slow.drop_client(abort_tx, tx).await,
            }
        }
        if let Some(verdicts) = self.verdicts.as_mut() {
            for v in std::mem::take(&mut verdicts.stored) {
                if !verdicts.filter.accept(&v) {
                    continue;
                }
                match send_first(&tx, Queued::Verdict(Arc::new(v))).await {
                    Ok(()) => {}
                    Err(Stop::Gone) => return,
                    Err(Stop::Slow) => return self.slow.drop_client(abort_tx, tx).await,
                }
            }
        }
        loop {
            let c = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                v = next_verdict(&mut self.verdicts) => match v {
                    Ok(v) => {
                        if tx.try_send(Queued::Verdict(v)).is_err() {
                            return self.slow.drop_client(abort_tx, tx).await;
                        }
                        continue;
                    }
                    Err(()) => return self.slow.drop_client(abort_tx, tx).await,
                },
                r = self.live.recv() => match r {
                    Ok(c) => c,
                    Err(broadcast::error::RecvError::Lagged(_)) => return self.slow.drop_client(abort_tx, tx).await,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if !self.filter.accept(&c) {
                continue;
            }
            let (is_final, end) = (c.is_final, c.end);
            match tx.try_send(Queued::Candle(c, false)) {
                Ok(()) => {
                    if is_final {
                        let due = end.plus(self.grace);
                        let late = (Micros::now().0 - due.0) as f64 / 1e6;
                        metrics::histogram!(m::FINALIZE_TO_CLIENT).record(late.max(0.0));
                    }
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return self.slow.drop_client(abort_tx, tx).await;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}

/// Why a client's task stops sending.
enum Stop {
    /// The client went away.
    Gone,
    /// The client reads too slowly.
    Slow,
}

/// Queues what a client gets first (history, stored verdicts), waiting up to 10 s for room.
async fn send_first(tx: &mpsc::Sender<Queued>, item: Queued) -> Result<(), Stop> {
    match tokio::time::timeout(std::time::Duration::from_secs(10), tx.send(item)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stop::Gone),
        Err(_) => Err(Stop::Slow),
    }
}

/// The next verdict for this client (never, when it asked for none); `Err` when it fell so far
/// behind that verdicts were lost.
async fn next_verdict(verdicts: &mut Option<Verdicts>) -> Result<Arc<HubVerdict>, ()> {
    let Some(verdicts) = verdicts else {
        return std::future::pending().await;
    };
    loop {
        match verdicts.live.recv().await {
            Ok(v) if verdicts.filter.accept(&v) => return Ok(v),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return Err(()),
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        }
    }
}

/// How a client that fell too far behind is dropped.
pub struct SlowClient {
    /// Its queue's capacity.
    pub capacity: usize,
    /// How long it has to take its status before its connection is closed.
    pub grace: std::time::Duration,
    /// Its connection.
    pub conn: Option<Arc<limits::Conn>>,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candles_core::Interval;
    use candles_proto::v1;

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
            interval: Interval::seconds(1),
            start: Micros(start),
            end: Micros(start + 1_000_000),
            is_final,
            wire: v1::Candle::from(&c),
        }
    }

    #[test]
    fn filter_drops_duplicates_at_the_seam_and_stale_live_updates() {
        let mut f = Filter {
            interval: Interval::seconds(1),
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

    #[test]
    fn filter_drops_candles_of_other_intervals() {
        let mut f = Filter {
            interval: Interval::seconds(5),
            pairs: vec![Pair::parse("BTC-USDT").unwrap()],
            sources: vec![Source::Composite],
            live_updates: true,
            last_final: HashMap::new(),
        };
        assert!(!f.accept(&hc(1_000_000, true)), "a 1s final on a 5s stream");
        assert!(
            !f.accept(&hc(2_000_000, false)),
            "a 1s update on a 5s stream"
        );
    }
}
