//! The session loop: connect, subscribe, read, keep alive, detect death, reconnect.
//!
//! One task does everything in order — read a frame, sequence it (filling gaps from REST),
//! publish it — so per-pair order needs no locks. The socket is replaced when:
//! - the server closes it or it errors;
//! - nothing at all (trade, heartbeat, pong) arrived for `stale_after`: a half-dead TCP
//!   connection can stay "open" for minutes, so silence is death;
//! - the exchange announces a shutdown (Binance `serverShutdown`): reconnect at once;
//! - it has lived `max_session` (Binance drops connections at 24 h): reconnect at once.
//!
//! Other reconnects wait an exponential backoff with full jitter ([`crate::backoff`]), reset
//! only after a healthy connection (up long enough, and trades came). Keep-alives (WebSocket pings, Kraken's
//! application ping) go out every `keepalive_every` (at most a third of `stale_after`), so a
//! quiet but healthy connection is never mistaken for a dead one.

use crate::backoff::Backoff;
use crate::exchange::{Frame, Keepalive, Venue, venue};
use crate::rest::RestFiller;
use crate::sequencer::{Admitted, Sequencer};
use crate::sink::TradeSink;
use crate::telemetry::{self, Counters, LogLimits};
use crate::{ConnState, ConnectorConfig};
use candles_core::bounds::excerpt_bytes;
use candles_core::excerpt;
use candles_core::{Interval, Micros, Pair, Trade};
use futures::{SinkExt, StreamExt};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// We were asked to stop.
    Shutdown,
    /// Could not connect or subscribe.
    ConnectFailed(String),
    /// The server closed the socket, or it failed.
    Closed(String),
    /// Nothing heard for `stale_after`.
    Stale,
    /// The exchange announced a shutdown.
    ServerShutdown,
    /// The connection reached `max_session`.
    MaxAge,
}

impl End {
    /// The `reason` label of the reconnect metric.
    fn label(&self) -> &'static str {
        match self {
            End::Shutdown => "shutdown",
            End::ConnectFailed(_) => "connect_failed",
            End::Closed(_) => "closed",
            End::Stale => "stale",
            End::ServerShutdown => "server_shutdown",
            End::MaxAge => "max_age",
        }
    }
}

/// Runs the connector until `shutdown` is cancelled or the sink fails: streams `config.pairs`
/// from `config.exchange`, publishes every trade once and in order per pair into `sink`, and
/// reports the connection's state on `status` (ending with [`ConnState::Stopped`]).
///
/// Reading and publishing overlap: the session hands ordered batches to a publisher (one
/// bounded queue), which merges whatever is waiting into one sink call, so a sink that waits for
/// acknowledgements (Kafka) costs one round trip per batch, not per trade. When the sink falls
/// behind, the queue fills and reading pauses.
///
/// Returns an error only for what reconnecting cannot fix: an unusable sink or configuration.
pub async fn run(
    config: ConnectorConfig,
    sink: impl TradeSink,
    status: watch::Sender<ConnState>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE_BATCHES);
    let publisher = publish_loop(
        sink,
        rx,
        config.counters.clone(),
        config.exchange.as_str(),
        &shutdown,
    );
    let result = match Session::new(config, tx, &status) {
        Ok(session) => {
            let shutdown = &shutdown;
            let reader = async move {
                let mut session = session;
                // The session owns the queue's sender: ending it lets the publisher drain and end.
                session.run_loop(shutdown).await
            };
            tokio::try_join!(reader, publisher).map(|_| ())
        }
        Err(e) => Err(e),
    };
    status.send_replace(ConnState::Stopped);
    result
}

/// How far back a cold pair's start-up fill reaches: to the start of the current window of
/// this interval, so that window (and its 1s and 5s windows) is complete, not partial
/// (DESIGN.md "Partial candles").
pub const COLD_FILL: Interval = Interval::seconds(60);

/// Batches in flight between the session and the publisher.
const QUEUE_BATCHES: usize = 1024;
/// The most trades merged into one sink call.
const MAX_BATCH: usize = 10_000;
/// How long the publisher may keep trying to hand over queued trades after a stop request.
const DRAIN_AFTER_STOP: Duration = Duration::from_secs(5);

/// Takes batches off the queue, merges what is waiting, publishes, counts.
async fn publish_loop(
    mut sink: impl TradeSink,
    mut rx: tokio::sync::mpsc::Receiver<Vec<Trade>>,
    counters: Arc<Counters>,
    exchange: &'static str,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let give_up = async {
        shutdown.cancelled().await;
        tokio::time::sleep(DRAIN_AFTER_STOP).await;
    };
    tokio::pin!(give_up);
    while let Some(mut batch) = rx.recv().await {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        tokio::select! {
            r = sink.publish(&batch) => r?,
            _ = &mut give_up => {
                tracing::warn!(exchange, unpublished = batch.len() + rx.len(), "stopping with trades the sink did not take");
                return Ok(());
            }
        }
        Counters::add(&counters.published, batch.len() as u64);
        for (pair, n) in per_pair(&batch) {
            metrics::counter!(telemetry::TRADES_PUBLISHED, "exchange" => exchange, "pair" => pair.to_string())
                .increment(n);
        }
    }
    Ok(())
}

struct Session<'a> {
    config: ConnectorConfig,
    venue: &'static dyn Venue,
    exchange: &'static str,
    queue: tokio::sync::mpsc::Sender<Vec<Trade>>,
    status: &'a watch::Sender<ConnState>,
    sequencer: Sequencer,
    filler: RestFiller,
    counters: Arc<Counters>,
    /// The rate limit of every log line about what the exchange sent.
    log_limit: LogLimits,
    keepalive_seq: u64,
}

/// A WebSocket connection to the exchange.
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Whether a trades frame is live or replayed history.
enum Kind {
    Live,
    Snapshot,
}

/// Counts per pair, for labelled metrics without one call per trade.
fn per_pair(trades: &[Trade]) -> Vec<(Pair, u64)> {
    let mut out: Vec<(Pair, u64)> = Vec::new();
    for t in trades {
        match out.iter_mut().find(|(p, _)| *p == t.pair) {
            Some((_, n)) => *n += 1,
            None => out.push((t.pair, 1)),
        }
    }
    out
}

impl<'a> Session<'a> {
    fn new(
        config: ConnectorConfig,
        queue: tokio::sync::mpsc::Sender<Vec<Trade>>,
        status: &'a watch::Sender<ConnState>,
    ) -> anyhow::Result<Self> {
        if config.pairs.is_empty() {
            anyhow::bail!("no pairs to stream: give at least one pair (e.g. --pairs btcusdt)");
        }
        let venue = venue(config.exchange);
        // With `cold_fill_minute`, a cold pair's start-up fill reaches back to the start of the
        // current minute (one request per pair, through the shared pace), so its first minute
        // is complete.
        let start = config.start.unwrap_or_else(Micros::now);
        let start = if config.cold_fill_minute {
            COLD_FILL.window_start(start)
        } else {
            start
        };
        let sequencer = Sequencer::starting_at(start)
            .resuming(&config.resume)
            .with_time_bounds(config.time_bounds, Micros::now);
        Ok(Session {
            filler: RestFiller::new(&config)?,
            exchange: config.exchange.as_str(),
            counters: config.counters.clone(),
            config,
            venue,
            queue,
            status,
            sequencer,
            log_limit: LogLimits::default(),
            keepalive_seq: 0,
        })
    }

    async fn run_loop(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let url = self.config.ws_url();
        let mut backoff = Backoff::new(self.config.backoff);
        let mut rng = StdRng::from_os_rng();
        tracing::info!(exchange = self.exchange, %url, pairs = ?self.config.pairs, "connector starting");
        loop {
            self.status.send_replace(ConnState::Connecting);
            let received_before = self
                .counters
                .received
                .load(std::sync::atomic::Ordering::Relaxed);
            let (end, uptime) = self.connection(&url, shutdown).await?;
            let delivered = self
                .counters
                .received
                .load(std::sync::atomic::Ordering::Relaxed)
                > received_before;
            metrics::gauge!(telemetry::CONNECTED, "exchange" => self.exchange).set(0.0);
            if end == End::Shutdown {
                break;
            }
            let delay = match &end {
                End::ServerShutdown | End::MaxAge => {
                    tracing::info!(
                        exchange = self.exchange,
                        reason = end.label(),
                        ?uptime,
                        "reconnecting now"
                    );
                    Duration::ZERO
                }
                other => {
                    backoff.connection_ended(uptime, delivered);
                    let delay = backoff.next_delay(&mut rng);
                    tracing::warn!(exchange = self.exchange, reason = ?other, ?uptime, ?delay, attempt = backoff.attempt(), "connection lost; reconnecting");
                    delay
                }
            };
            Counters::add(&self.counters.reconnects, 1);
            metrics::counter!(telemetry::RECONNECTS, "exchange" => self.exchange, "reason" => end.label())
                .increment(1);
            self.status.send_replace(ConnState::Reconnecting {
                in_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                attempt: backoff.attempt().max(1),
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        tracing::info!(exchange = self.exchange, "connector stopped");
        Ok(())
    }

    /// Connects to `url`: the socket, or how the attempt ended.
    async fn connect(&self, url: &str, shutdown: &CancellationToken) -> Result<Ws, End> {
        let connect = tokio::time::timeout(
            self.config.connect_timeout,
            tokio_tungstenite::connect_async_with_config(url, None, true),
        );
        let ws = tokio::select! {
            r = connect => match r {
                Ok(Ok((ws, _response))) => ws,
                Ok(Err(e)) => return Err(End::ConnectFailed(format!("connecting to {url}: {e}"))),
                Err(_) => return Err(End::ConnectFailed(format!("connecting to {url}: timed out after {:?}", self.config.connect_timeout))),
            },
            _ = shutdown.cancelled() => return Err(End::Shutdown),
        };
        Ok(ws)
    }

    /// One connection, from connect to its end. `Err` only when the publisher is gone.
    async fn connection(
        &mut self,
        url: &str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<(End, Duration)> {
        let mut ws = match self.connect(url, shutdown).await {
            Ok(ws) => ws,
            Err(end) => return Ok((end, Duration::ZERO)),
        };
        let connected = Instant::now();
        for msg in self.venue.subscribe_messages(&self.config.pairs) {
            if let Err(e) = ws.send(Message::text(msg)).await {
                let end = End::ConnectFailed(format!("subscribing: {e}"));
                return Ok((end, connected.elapsed()));
            }
        }
        tracing::info!(exchange = self.exchange, %url, "connected and subscribed");
        // Whatever happened while we were away (nothing to do on the first connection).
        let caught_up = self.sequencer.catch_up(&mut self.filler).await;
        self.publish(caught_up).await?;
        let end = self.read_until_end(&mut ws, connected, shutdown).await?;
        Ok((end, connected.elapsed()))
    }

    /// Reads the socket until the connection ends, keeping it alive and watching for silence.
    async fn read_until_end(
        &mut self,
        ws: &mut Ws,
        connected: Instant,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<End> {
        let stale_after = self.config.stale_after.max(Duration::from_millis(10));
        let every = self
            .config
            .keepalive_every
            .min(stale_after / 3)
            .max(Duration::from_millis(10));
        let mut keepalive = tokio::time::interval_at(connected + every, every);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max_age = connected + self.config.max_session;
        let mut last_heard = connected;
        let (mut live, mut stale_shown) = (false, false);
        loop {
            let half = last_heard + stale_after / 2;
            let dead = last_heard + stale_after;
            let heard = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    return Ok(End::Shutdown);
                }
                msg = ws.next() => match self.on_message(msg, ws).await? {
                    Ok(()) => true,
                    Err(end) => return Ok(end),
                },
                _ = keepalive.tick() => {
                    if let Err(e) = self.send_keepalive(ws).await {
                        return Ok(End::Closed(format!("sending a keep-alive: {e}")));
                    }
                    false
                }
                _ = sleep_until(half), if !stale_shown => {
                    stale_shown = true;
                    self.status.send_replace(ConnState::Stale);
                    tracing::info!(exchange = self.exchange, silent = ?(stale_after / 2), "connection quiet");
                    false
                }
                _ = sleep_until(dead) => {
                    Counters::add(&self.counters.stale, 1);
                    tracing::warn!(exchange = self.exchange, silent = ?stale_after, "nothing heard; replacing the connection");
                    return Ok(End::Stale);
                }
                _ = sleep_until(max_age) => return Ok(End::MaxAge),
            };
            if heard {
                // Processing time (a gap fill) is not silence: count from now.
                last_heard = Instant::now();
                if !live || stale_shown {
                    (live, stale_shown) = (true, false);
                    self.status.send_replace(ConnState::Live);
                    metrics::gauge!(telemetry::CONNECTED, "exchange" => self.exchange).set(1.0);
                }
            }
        }
    }

    /// Handles one message from the socket (`None`: it ended). `Ok(Err(end))` ends the
    /// connection; `Err` only when the publisher is gone.
    async fn on_message(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        ws: &mut Ws,
    ) -> anyhow::Result<Result<(), End>> {
        match msg {
            Some(Ok(Message::Text(text))) => {
                if let Some(end) = self.on_text(text.as_str()).await? {
                    return Ok(Err(end));
                }
            }
            Some(Ok(Message::Binary(bytes))) => {
                self.reject(
                    &"a binary frame; the exchange sends JSON text",
                    &excerpt_bytes(&bytes),
                );
            }
            Some(Ok(Message::Ping(_))) => {
                // tungstenite queued the pong; make sure it leaves now.
                if let Err(e) = ws.flush().await {
                    return Ok(Err(End::Closed(format!("answering a ping: {e}"))));
                }
            }
            Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(frame))) => {
                let why = frame.map_or_else(
                    || "no reason".to_string(),
                    |f| format!("{} {}", f.code, f.reason),
                );
                let why = format!("the server closed the connection: {why}");
                return Ok(Err(End::Closed(why)));
            }
            Some(Err(e)) => return Ok(Err(End::Closed(e.to_string()))),
            None => return Ok(Err(End::Closed("the connection ended".into()))),
        }
        Ok(Ok(()))
    }

    /// Sends the exchange's keep-alive.
    async fn send_keepalive(
        &mut self,
        ws: &mut Ws,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.keepalive_seq += 1;
        let msg = match self.venue.keepalive(self.keepalive_seq) {
            Keepalive::Ping => Message::Ping(Vec::new().into()),
            Keepalive::Text(text) => Message::text(text),
        };
        ws.send(msg).await
    }

    /// Counts and (rate-limited) logs a frame that could not be used; `shown` is already an
    /// excerpt.
    fn reject(&mut self, error: &dyn std::fmt::Display, shown: &str) {
        Counters::add(&self.counters.rejected, 1);
        metrics::counter!(telemetry::REJECTED, "exchange" => self.exchange).increment(1);
        if self.log_limit.allow("unparseable") {
            tracing::warn!(exchange = self.exchange, %error, message = %shown,
                "rejected a message from the exchange; skipped");
        }
    }

    /// Drops the trades of pairs the connector did not subscribe to (a misrouted or hostile
    /// frame): counted without a pair label, logged rate-limited, never sequenced or published.
    fn subscribed_only(&mut self, mut trades: Vec<Trade>, text: &str) -> Vec<Trade> {
        let before = trades.len();
        let pairs = &self.config.pairs;
        let mut foreign = None;
        trades.retain(|t| {
            let ok = pairs.contains(&t.pair);
            if !ok {
                foreign.get_or_insert(t.pair);
            }
            ok
        });
        let dropped = (before - trades.len()) as u64;
        if let Some(pair) = foreign {
            Counters::add(&self.counters.unsubscribed, dropped);
            metrics::counter!(telemetry::REJECTED_TRADES, "exchange" => self.exchange,
                "reason" => telemetry::REASON_UNSUBSCRIBED)
            .increment(dropped);
            if self.log_limit.allow(telemetry::REASON_UNSUBSCRIBED) {
                tracing::warn!(exchange = self.exchange, %pair, dropped, message = %excerpt(text),
                    "trades of a pair the connector did not subscribe to; dropped");
            }
        }
        trades
    }

    /// Counts and (rate-limited) logs trades the sequencer refused for their time.
    fn count_implausible(&mut self, admitted: &Admitted) {
        let Some((first, why)) = admitted.rejected.first() else {
            return;
        };
        let n = admitted.rejected.len() as u64;
        Counters::add(&self.counters.implausible, n);
        metrics::counter!(telemetry::REJECTED_TRADES, "exchange" => self.exchange,
            "reason" => telemetry::REASON_IMPLAUSIBLE_TIME)
        .increment(n);
        if self.log_limit.allow(telemetry::REASON_IMPLAUSIBLE_TIME) {
            tracing::warn!(exchange = self.exchange, pair = %first.pair, id = first.id, refused = n,
                error = %why, "trades with an implausible time; not published");
        }
    }

    /// Handles one text frame; `Some` ends the connection.
    async fn on_text(&mut self, text: &str) -> anyhow::Result<Option<End>> {
        let frame = match self.venue.parse_frame(text, Micros::now()) {
            Ok(frame) => frame,
            Err(e) => {
                self.reject(&e, &excerpt(text));
                return Ok(None);
            }
        };
        let frame_kind = match &frame {
            Frame::Snapshot(_) => Kind::Snapshot,
            _ => Kind::Live,
        };
        let admitted = match frame {
            Frame::Trades(trades) | Frame::Snapshot(trades) if trades.is_empty() => {
                return Ok(None);
            }
            Frame::Trades(trades) | Frame::Snapshot(trades) => {
                let snapshot = matches!(frame_kind, Kind::Snapshot);
                let trades = self.subscribed_only(trades, text);
                if trades.is_empty() {
                    return Ok(None);
                }
                self.count_received(&trades);
                self.sequencer
                    .admit(trades, snapshot, &mut self.filler)
                    .await
            }
            Frame::Heartbeat(mut latest) => {
                // Another pair's latest id is none of our business (and never chased).
                latest.retain(|(p, _)| self.config.pairs.contains(p));
                if latest.is_empty() {
                    return Ok(None);
                }
                self.sequencer.admit_latest(&latest, &mut self.filler).await
            }
            Frame::Ack => {
                tracing::debug!(exchange = self.exchange, "subscription confirmed");
                return Ok(None);
            }
            Frame::Pong | Frame::Ignore => return Ok(None),
            Frame::ServerShutdown => {
                tracing::info!(
                    exchange = self.exchange,
                    "the exchange announced a shutdown"
                );
                return Ok(Some(End::ServerShutdown));
            }
            Frame::ExchangeError(msg) => {
                if self.log_limit.allow("exchange_error") {
                    tracing::error!(exchange = self.exchange, error = %excerpt(&msg), "the exchange reported an error");
                }
                return Ok(None);
            }
        };
        self.publish(admitted).await?;
        Ok(None)
    }

    fn count_received(&self, trades: &[Trade]) {
        Counters::add(&self.counters.received, trades.len() as u64);
        for (pair, n) in per_pair(trades) {
            metrics::counter!(telemetry::TRADES_RECEIVED, "exchange" => self.exchange, "pair" => pair.to_string())
                .increment(n);
        }
    }

    async fn publish(&mut self, admitted: Admitted) -> anyhow::Result<()> {
        self.count_implausible(&admitted);
        let ex = self.exchange;
        Counters::add(&self.counters.duplicates, admitted.duplicates);
        for report in &admitted.gaps {
            let pair = report.gap.pair.to_string();
            Counters::add(&self.counters.gaps, 1);
            Counters::add(&self.counters.backfilled, report.filled);
            Counters::add(&self.counters.unfilled, report.unfilled);
            metrics::counter!(telemetry::GAPS, "exchange" => ex, "pair" => pair.clone())
                .increment(1);
            metrics::counter!(telemetry::BACKFILLED, "exchange" => ex, "pair" => pair.clone())
                .increment(report.filled);
            if report.unfilled > 0 {
                metrics::counter!(telemetry::GAP_UNFILLED, "exchange" => ex, "pair" => pair.clone()).increment(1);
                metrics::counter!(telemetry::GAP_UNFILLED_TRADES, "exchange" => ex, "pair" => pair.clone())
                    .increment(report.unfilled);
                // Ids come from outside: a sender that makes a gap per frame gets counted, and
                // only a few lines a minute.
                if self.log_limit.allow("gap_unfilled") {
                    tracing::warn!(exchange = ex, %pair, after = report.gap.after_id, until = report.gap.until_id,
                        filled = report.filled, unfilled = report.unfilled, "gap could not be filled completely; moving on");
                }
            } else if self.log_limit.allow("gap_filled") {
                tracing::info!(exchange = ex, %pair, after = report.gap.after_id, until = report.gap.until_id,
                    filled = report.filled, "gap filled from REST");
            }
        }
        if admitted.duplicates > 0 {
            metrics::counter!(telemetry::DUPLICATES, "exchange" => ex)
                .increment(admitted.duplicates);
        }
        if admitted.publish.is_empty() {
            return Ok(());
        }
        self.queue
            .send(admitted.publish)
            .await
            .map_err(|_| anyhow::anyhow!("the publisher stopped"))?;
        Ok(())
    }
}
