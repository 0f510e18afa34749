//! The listener: one TCP port for both WebSocket and REST, and the per-connection WebSocket loop.
//!
//! Each accepted connection's request head is read first: `Upgrade: websocket` goes to the
//! WebSocket handshake (the bytes already read are replayed to it through [`Prefixed`]),
//! anything else to the small HTTP server. The WebSocket loop is the same for every exchange; the
//! [`Venue`] decides what the messages look like.

use crate::Timing;
use crate::faults::{FaultConfig, Faults};
use crate::http;
use crate::market::{Event, Market};
use crate::ratelimit::{Limiter, Verdict};
use crate::venue::{Session, Venue};
use futures::{SinkExt, StreamExt};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A client that takes longer than this to accept a write is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// A client must send its request head within this long.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection task shares.
pub(crate) struct Shared {
    /// The market.
    pub market: Arc<Market>,
    /// The exchange's protocol.
    pub venue: Box<dyn Venue>,
    /// Fault settings.
    pub faults: FaultConfig,
    /// Periods and timeouts.
    pub timing: Timing,
    /// The simulator's seed (fault RNGs derive from it).
    pub seed: u64,
    /// Cancelled on stop.
    pub cancel: CancellationToken,
    /// With `--rest-limit`, the exchange's public REST limit.
    pub limiter: Option<Arc<Limiter>>,
}

/// Accepts connections until cancelled.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tracker: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                tracker.spawn(async move {
                    if let Err(e) = handle(stream, peer.ip(), &shared).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(mut stream: TcpStream, client: IpAddr, shared: &Shared) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    let head = tokio::select! {
        _ = shared.cancel.cancelled() => return Ok(()),
        head = timeout(HEAD_TIMEOUT, http::read_head(&mut stream, &mut buf)) => head,
    };
    let Ok(Ok((request, _))) = head else {
        // Timed out, closed, or garbage: let the HTTP server answer garbage properly.
        if matches!(
            head,
            Ok(Err(
                http::HeadError::Malformed(_) | http::HeadError::TooLarge
            ))
        ) {
            http::serve(stream, buf, |_| http::Response::status(400, "{}")).await?;
        }
        return Ok(());
    };
    if request.is_websocket() {
        websocket(
            Prefixed {
                prefix: buf,
                pos: 0,
                inner: stream,
            },
            shared,
        )
        .await
    } else {
        let route = |r: &http::Request| rest_answer(shared, client, r);
        tokio::select! {
            _ = shared.cancel.cancelled() => Ok(()),
            served = http::serve(stream, buf, route) => Ok(served?),
        }
    }
}

/// The answer to one REST request: the exchange's rate-limit response when `--rest-limit` is
/// on and `client` is over the limit, else the venue's answer.
fn rest_answer(shared: &Shared, client: IpAddr, request: &http::Request) -> http::Response {
    shared.market.rest_requests.fetch_add(1, Ordering::Relaxed);
    if let Some(limiter) = &shared.limiter {
        let cost = shared.venue.rest_cost(&request.path);
        if let Verdict::Limited {
            retry_after,
            violation,
        } = limiter.check(client, std::time::Instant::now(), cost)
        {
            return shared.venue.rate_limited(retry_after, violation);
        }
    }
    shared.venue.rest(request, &shared.market)
}

/// A stream that first yields bytes already read from it.
struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.pos);
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Why a connection loop ended.
enum End {
    /// The client closed or the socket failed.
    Client,
    /// The server closes it with this code and reason.
    Close(CloseCode, &'static str),
}

/// The WebSocket stream of one client.
type Ws = tokio_tungstenite::WebSocketStream<Prefixed>;

/// Completes the WebSocket handshake on a path the venue serves: the socket and its session,
/// `None` when the path is not the exchange's (answered with 404).
async fn handshake(stream: Prefixed, shared: &Shared) -> anyhow::Result<Option<(Ws, Session)>> {
    let (market, venue) = (&shared.market, &*shared.venue);
    let mut session: Option<Session> = None;
    // The signature is tungstenite's `Callback`; its error type is what it is.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let uri = request.uri();
        match venue.open(uri.path(), uri.query().unwrap_or(""), market) {
            Some(s) => {
                session = Some(s);
                Ok(response)
            }
            None => {
                let mut error = ErrorResponse::new(Some(format!(
                    "no WebSocket endpoint at {} on this {} simulator",
                    uri.path(),
                    venue.exchange()
                )));
                *error.status_mut() = StatusCode::NOT_FOUND;
                Err(error)
            }
        }
    };
    let ws = tokio_tungstenite::accept_hdr_async(stream, callback).await?;
    Ok(session.map(|session| (ws, session)))
}

/// One client connection's state between events.
struct Conn<'a> {
    shared: &'a Shared,
    session: Session,
    faults: Faults,
    /// Messages waiting to be written.
    out: Vec<Message>,
}

impl Conn<'_> {
    /// Answers a text message from the client.
    fn on_text(&mut self, text: &str) {
        let (venue, market) = (&*self.shared.venue, &self.shared.market);
        let was_subscribed = self.session.subscribed;
        let answers = venue.on_text(text, &mut self.session, market);
        self.out.extend(answers.into_iter().map(Message::text));
        if self.session.subscribed && !was_subscribed {
            self.faults.on_subscribed(Instant::now());
        }
    }

    /// Queues what a market event means to this client (nothing while it is `silent`), with
    /// the faults applied.
    fn on_event(&mut self, event: &Event, silent: bool) {
        let (venue, market) = (&*self.shared.venue, &self.shared.market);
        let session = &mut self.session;
        let messages = match event {
            Event::Trades(trades) => {
                let mut new = session.take_new(trades);
                // Trades the market keeps off the WebSocket (REST has them).
                new.retain(|t| !market.is_withheld(t));
                if new.is_empty() {
                    Vec::new()
                } else {
                    venue.encode(&new, session)
                }
            }
            Event::Raw { pair, line, trades } => {
                session.take_new(trades);
                if session.wants_line(*pair) {
                    vec![line.clone()]
                } else {
                    Vec::new()
                }
            }
        };
        if silent {
            return;
        }
        for message in messages {
            if let Some(garbage) = self.faults.garbage(venue, &message) {
                self.out.push(Message::text(garbage));
            }
            if self.faults.drop_next() {
                metrics::counter!("sim_messages_dropped_total").increment(1);
                continue;
            }
            let hostile = self.faults.hostile_after(venue, &self.session, &message);
            self.out.push(Message::text(message));
            self.out.extend(hostile.into_iter().map(Message::text));
        }
    }
}

/// Writes `batch` within [`WRITE_TIMEOUT`]; whether it went out.
async fn send_all(sink: &mut futures::stream::SplitSink<Ws, Message>, batch: Vec<Message>) -> bool {
    metrics::counter!("sim_messages_sent_total").increment(batch.len() as u64);
    let sent = timeout(WRITE_TIMEOUT, async {
        for message in batch {
            sink.feed(message).await?;
        }
        sink.flush().await
    })
    .await;
    matches!(sent, Ok(Ok(())))
}

async fn websocket(stream: Prefixed, shared: &Shared) -> anyhow::Result<()> {
    let conn = shared.market.connections.fetch_add(1, Ordering::Relaxed) + 1;
    // Listen before subscribing (which may happen in the handshake), so no trade falls between.
    let rx = shared.market.listen();
    let Some((ws, mut session)) = handshake(stream, shared).await? else {
        return Ok(());
    };
    session.id = conn;
    metrics::counter!("sim_ws_connections_total").increment(1);
    metrics::gauge!("sim_ws_clients").increment(1.0);
    tracing::debug!(conn, "WebSocket client connected");
    let (mut sink, mut stream) = ws.split();
    let end = serve(&mut sink, &mut stream, rx, session, shared, conn).await;
    metrics::gauge!("sim_ws_clients").decrement(1.0);
    if let End::Close(code, reason) = end {
        tracing::debug!(conn, reason, "closing WebSocket");
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = timeout(WRITE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
        // Give the client a moment to answer the close, then drop the socket either way.
        let _ = timeout(Duration::from_millis(500), async {
            while let Some(Ok(_)) = stream.next().await {}
        })
        .await;
    }
    Ok(())
}

/// The connection loop: market events, client messages, heartbeats, pings and faults, until
/// the connection ends.
async fn serve(
    sink: &mut futures::stream::SplitSink<Ws, Message>,
    stream: &mut futures::stream::SplitStream<Ws>,
    mut rx: tokio::sync::broadcast::Receiver<Arc<Event>>,
    session: Session,
    shared: &Shared,
    conn: u64,
) -> End {
    let venue = &*shared.venue;
    let opened = Instant::now();
    let mut faults = Faults::new(shared.faults, shared.seed, conn, opened);
    if session.subscribed {
        faults.on_subscribed(opened);
    }
    let timing = shared.timing;
    let mut heartbeat =
        tokio::time::interval_at(opened + timing.heartbeat_every, timing.heartbeat_every);
    let mut ping = tokio::time::interval_at(opened + timing.ws_ping_every, timing.ws_ping_every);
    // After a stall, resume the rhythm instead of firing the missed ticks in a burst.
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let subscribe_deadline = opened + timing.subscribe_timeout;
    let out = venue
        .greeting(&session)
        .into_iter()
        .map(Message::text)
        .collect();
    let mut c = Conn {
        shared,
        session,
        faults,
        out,
    };
    loop {
        if !c.out.is_empty() && !send_all(sink, std::mem::take(&mut c.out)).await {
            return End::Client;
        }
        let silent = c.faults.silent(Instant::now());
        let stall_change = c.faults.next_stall_change();
        let disconnect_at = c.faults.disconnect_at;
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return End::Close(CloseCode::Away, "exchange-sim is shutting down"),
            _ = sleep_until(disconnect_at.unwrap_or(opened)), if disconnect_at.is_some() => {
                metrics::counter!("sim_disconnects_total").increment(1);
                return End::Close(CloseCode::Away, "exchange-sim: simulated disconnect");
            }
            _ = sleep_until(subscribe_deadline), if venue.requires_early_subscribe() && !c.session.subscribed => {
                return End::Close(CloseCode::Policy, "no subscribe message within the subscribe timeout");
            }
            _ = sleep_until(stall_change.unwrap_or(opened)), if stall_change.is_some() => {}
            incoming = stream.next(), if !silent => match incoming {
                Some(Ok(Message::Text(text))) => c.on_text(&text),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return End::Client,
                // Pings are answered by tungstenite itself; pongs and binary frames are ignored.
                Some(Ok(_)) => {}
            },
            event = rx.recv() => match event {
                Ok(event) => c.on_event(&event, silent),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(conn, missed = n, "client too slow: it misses market events");
                    metrics::counter!("sim_lagged_events_total").increment(n);
                }
                Err(RecvError::Closed) => return End::Close(CloseCode::Away, "exchange-sim is shutting down"),
            },
            _ = heartbeat.tick(), if !silent => {
                c.out.extend(venue.heartbeats(&c.session, &shared.market).into_iter().map(Message::text));
            }
            _ = ping.tick(), if !silent && venue.sends_pings() => {
                c.out.push(Message::Ping(Vec::new().into()));
            }
        }
    }
}
