//! Connection-level limits for the gRPC server: a cap on concurrent connections (a connection
//! beyond it is closed at once, not left hanging), an idle timeout (no open stream for a while),
//! and a handle to close one connection from inside (a slow client whose status cannot leave).
//!
//! [`incoming`] wraps the listener: each accepted socket becomes a [`LimitedIo`] holding a
//! permit of the cap. tonic puts its [`ConnInfo`] into every request's extensions; [`Counted`]
//! (around the routes) counts open streams per connection with it.

use crate::config::GrpcLimits;
use crate::ratelimit::SharedLogLimit;
use futures::Stream;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::StreamExt as _;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tonic::codegen::http;
use tonic::transport::server::{Connected, TcpIncoming};

/// Counter: connections closed at once because the cap was reached.
pub const CONNECTIONS_REFUSED: &str = "candles_service_grpc_connections_refused_total";
/// Counter, label `reason` (`idle`, `slow_client`): connections the server closed.
pub const CONNECTIONS_CLOSED: &str = "candles_service_grpc_connections_closed_total";
/// Gauge: open gRPC connections.
pub const CONNECTIONS_OPEN: &str = "candles_service_grpc_connections";

static REFUSED_LOG: SharedLogLimit = SharedLogLimit::new(5, Duration::from_secs(10));
static ACCEPT_ERROR_LOG: SharedLogLimit = SharedLogLimit::new(5, Duration::from_secs(10));

/// One connection's shared state: open streams and the switch that closes it.
#[derive(Debug)]
pub struct Conn {
    kill: CancellationToken,
    streams: AtomicUsize,
    /// When the last stream ended (or the connection opened).
    idle_since: Mutex<Instant>,
}

impl Conn {
    /// Closes the connection now: its socket reads and writes fail, so hyper drops every
    /// stream on it and everything queued for them.
    pub fn close(&self) {
        self.kill.cancel();
    }

    /// Whether [`Conn::close`] was called (or the connection ended).
    pub fn is_closed(&self) -> bool {
        self.kill.is_cancelled()
    }

    fn stream_started(&self) {
        self.streams.fetch_add(1, Ordering::SeqCst);
    }

    fn stream_ended(&self) {
        if let Ok(mut t) = self.idle_since.lock() {
            *t = Instant::now();
        }
        self.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What tonic puts into each request's extensions for a [`LimitedIo`] connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer's address.
    pub remote: Option<std::net::SocketAddr>,
    /// The connection's state and close switch.
    pub conn: Arc<Conn>,
}

impl ConnInfo {
    /// The connection a request arrived on (plaintext or TLS).
    pub fn of(ext: &http::Extensions) -> Option<&ConnInfo> {
        ext.get::<ConnInfo>().or_else(|| {
            ext.get::<tonic::transport::server::TlsConnectInfo<ConnInfo>>()
                .map(|t| t.get_ref())
        })
    }
}

/// An accepted socket under the limits: holds a permit of the connection cap until dropped,
/// and fails every read and write once its connection is closed.
pub struct LimitedIo {
    inner: TcpStream,
    info: ConnInfo,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for LimitedIo {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS_OPEN).decrement(1.0);
        // Ends the idle watchdog.
        self.info.conn.kill.cancel();
    }
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed by the server",
    )
}

impl AsyncRead for LimitedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.killed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.info.conn.is_closed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.info.conn.is_closed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connected for LimitedIo {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

/// The listener's connections under `limits`: at most `max_connections` at once (one more is
/// closed as soon as it is accepted), TCP keepalive and no-delay set, idle ones closed. Accept
/// errors (such as running out of file descriptors) are logged at a bounded rate and retried
/// after a short pause instead of spinning. Idle watches run on `tracker` until their connection
/// ends or `shutdown`.
pub fn incoming(
    listener: TcpListener,
    limits: &GrpcLimits,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) -> impl Stream<Item = io::Result<LimitedIo>> + Send + 'static {
    let tcp = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(limits.tcp_keepalive);
    let cap = Arc::new(Semaphore::new(limits.max_connections));
    let max = limits.max_connections;
    let idle = limits.idle_timeout;
    futures::stream::unfold((tcp, cap), move |(mut tcp, cap)| {
        let (tracker, shutdown) = (tracker.clone(), shutdown.clone());
        async move {
            loop {
                let stream = match tcp.next().await? {
                    Ok(s) => s,
                    Err(e) => {
                        if let Some(suppressed) = ACCEPT_ERROR_LOG.check() {
                            tracing::warn!(error = %e, suppressed, "cannot accept a gRPC connection; retrying in 50ms");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = cap.clone().try_acquire_owned() else {
                    metrics::counter!(CONNECTIONS_REFUSED).increment(1);
                    if let Some(suppressed) = REFUSED_LOG.check() {
                        tracing::warn!(max, peer = ?stream.peer_addr().ok(), suppressed, "gRPC connection cap reached; closing a new connection");
                    }
                    drop(stream);
                    continue;
                };
                let kill = CancellationToken::new();
                let conn = Arc::new(Conn {
                    kill: kill.clone(),
                    streams: AtomicUsize::new(0),
                    idle_since: Mutex::new(Instant::now()),
                });
                if let Some(idle) = idle {
                    tracker.spawn(watch_idle(conn.clone(), idle, shutdown.clone()));
                }
                metrics::gauge!(CONNECTIONS_OPEN).increment(1.0);
                let io = LimitedIo {
                    info: ConnInfo {
                        remote: stream.peer_addr().ok(),
                        conn,
                    },
                    inner: stream,
                    killed: Box::pin(kill.cancelled_owned()),
                    _permit: permit,
                };
                return Some((Ok(io), (tcp, cap)));
            }
        }
    })
}

/// Closes `conn` once it has had no open stream for `idle`; returns when the connection ends or
/// on `shutdown`.
async fn watch_idle(conn: Arc<Conn>, idle: Duration, shutdown: CancellationToken) {
    loop {
        let wait = if conn.streams.load(Ordering::SeqCst) > 0 {
            idle
        } else {
            let since = conn
                .idle_since
                .lock()
                .map(|t| *t)
                .unwrap_or_else(|_| Instant::now());
            match idle.checked_sub(since.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => {
                    tracing::debug!(?idle, "closing an idle gRPC connection");
                    metrics::counter!(CONNECTIONS_CLOSED, "reason" => "idle").increment(1);
                    conn.close();
                    return;
                }
            }
        };
        tokio::select! {
            _ = conn.kill.cancelled() => return,
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Counts a connection's open streams: from the request's arrival until its response body is
/// dropped.
#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
}

impl<S> Counted<S> {
    /// Counts the streams `inner` serves.
    pub fn new(inner: S) -> Counted<S> {
        Counted { inner }
    }
}

struct StreamGuard(Option<Arc<Conn>>);

impl StreamGuard {
    fn new(conn: Option<Arc<Conn>>) -> StreamGuard {
        if let Some(c) = &conn {
            c.stream_started();
        }
        StreamGuard(conn)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.stream_ended();
        }
    }
}

/// A response body that keeps its stream counted until dropped.
pub struct CountedBody<B> {
    inner: B,
    _guard: StreamGuard,
}

impl<B: HttpBody + Unpin> HttpBody for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody> tonic::codegen::Service<http::Request<ReqBody>> for Counted<S>
where
    S: tonic::codegen::Service<
            http::Request<ReqBody>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let guard = StreamGuard::new(ConnInfo::of(req.extensions()).map(|i| i.conn.clone()));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let response = fut.await?;
            Ok(response.map(|inner| {
                tonic::body::Body::new(CountedBody {
                    inner,
                    _guard: guard,
                })
            }))
        })
    }
}
