//! The gRPC client against a scripted gRPC server on 127.0.0.1 (a real tonic server and real
//! HTTP/2, with behaviour the real service only shows under failure): a candle that fails to
//! decode is counted and skipped, a dropped stream is retried with backoff and the history
//! refill does not duplicate candles, and a rejected request is fatal with the server's message.
#![allow(clippy::unwrap_used)]

use candles_core::{Candle, Decimal, Interval, Micros, Pair, Source};
use candles_proto::v1::candle_service_server::{CandleService, CandleServiceServer};
use candles_proto::v1::{
    self, ListMarketsRequest, ListMarketsResponse, Market, SubscribeRequest, SubscribeResponse,
};
use candles_tui::app::{App, Event, Link, LinkState};
use candles_tui::client::{self, ClientConfig};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

fn candle(i: i64, close: i64) -> v1::Candle {
    let c = Candle::flat(
        Pair::parse("BTC-USDT").unwrap(),
        Source::Composite,
        Interval::seconds(5),
        Micros(1_795_675_200_000_000 + i * 5_000_000),
        Decimal::from(close),
    );
    v1::Candle::from(&c)
}

/// First connection: 3 history candles (one undecodable), then the stream breaks.
/// Later connections: the same history again, then stays open.
#[derive(Default)]
struct Scripted {
    connections: Arc<AtomicUsize>,
}

type Stream_ = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl CandleService for Scripted {
    type SubscribeStream = Stream_;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Stream_>, Status> {
        let req = request.into_inner();
        if req.pairs.iter().any(|p| p == "XRP-USDT") {
            return Err(Status::invalid_argument(
                "unknown pair \"XRP-USDT\": this server has BTC-USDT",
            ));
        }
        if req.pairs.iter().any(|p| p == "ETH-USDT") {
            // A finite stream: one candle, then a normal end.
            let c = v1::Candle {
                pair: "ETH-USDT".into(),
                ..candle(0, 100)
            };
            return Ok(Response::new(Box::pin(tokio_stream::iter(vec![Ok(
                SubscribeResponse {
                    candle: Some(c),
                    historical: true,
                    verification: None,
                },
            )]))));
        }
        assert_eq!(req.history, 7);
        let n = self.connections.fetch_add(1, Ordering::SeqCst);
        let mut bad = candle(1, 0);
        bad.open = "not a number".into();
        let mut items: Vec<Result<SubscribeResponse, Status>> =
            [candle(0, 100), bad, candle(2, 102)]
                .into_iter()
                .map(|c| {
                    Ok(SubscribeResponse {
                        candle: Some(c),
                        historical: true,
                        verification: None,
                    })
                })
                .collect();
        if n == 0 {
            items.push(Err(Status::unavailable("server going away")));
            Ok(Response::new(Box::pin(tokio_stream::iter(items))))
        } else {
            let pending = tokio_stream::pending();
            Ok(Response::new(Box::pin(tokio_stream::StreamExt::chain(
                tokio_stream::iter(items),
                pending,
            ))))
        }
    }

    async fn list_markets(
        &self,
        _: Request<ListMarketsRequest>,
    ) -> Result<Response<ListMarketsResponse>, Status> {
        Ok(Response::new(ListMarketsResponse {
            markets: vec![Market {
                pair: "BTC-USDT".into(),
                sources: vec!["composite".into()],
                listings: Vec::new(),
            }],
            interval: Some(candles_proto::duration(Interval::seconds(5))),
            max_history: 100,
            intervals: vec![candles_proto::duration(Interval::seconds(5))],
        }))
    }
}

async fn serve() -> (String, Arc<AtomicUsize>, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let scripted = Scripted::default();
    let connections = scripted.connections.clone();
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CandleServiceServer::new(scripted))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                token.cancelled_owned(),
            ),
    );
    (format!("http://{addr}"), connections, stop)
}

#[tokio::test]
async fn bad_candles_are_skipped_and_a_reconnect_refills_without_duplicates() {
    let (url, connections, stop) = serve().await;
    let mut cfg = ClientConfig::new(url, vec![Pair::parse("btcusdt").unwrap()]);
    cfg.history = 7;
    cfg.min_backoff = Duration::from_millis(50);
    let (tx, mut rx) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(client::run(cfg, tx, shutdown.clone()));

    let mut app = App::new(
        vec![Pair::parse("BTC-USDT").unwrap()],
        Source::Composite,
        "test",
    );
    let mut events = Vec::new();
    while connections.load(Ordering::SeqCst) < 2
        || events
            .iter()
            .filter(|e| matches!(e, Event::Candle(_)))
            .count()
            < 4
    {
        let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("events keep coming")
            .unwrap();
        app.handle(e.clone(), Micros(0));
        events.push(e);
    }
    let states: Vec<LinkState> = events
        .iter()
        .filter_map(|e| {
            if let Event::Conn(Link::Server, s) = e {
                Some(*s)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(states[0], LinkState::Connecting);
    assert!(states.contains(&LinkState::Live));
    assert!(
        states.contains(&LinkState::Reconnecting {
            in_ms: 50,
            attempt: 1
        }),
        "{states:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Markets(m) if m == &[Pair::parse("BTC-USDT").unwrap()]))
    );
    let bad: Vec<&String> = events
        .iter()
        .filter_map(|e| {
            if let Event::BadData(r) = e {
                Some(r)
            } else {
                None
            }
        })
        .collect();
    assert!(!bad.is_empty() && bad[0].contains("open"), "{bad:?}");
    assert!(app.bad_data >= 1);
    // Two connections delivered the same two good candles: the dashboard holds each once.
    let series = app.series_for(Pair::parse("BTC-USDT").unwrap()).unwrap();
    assert_eq!(series.candles.len(), 2);
    shutdown.cancel();
    assert!(task.await.unwrap().is_ok());
    stop.cancel();
}

#[tokio::test]
async fn a_rejected_subscription_is_fatal_with_the_servers_message() {
    let (url, _, stop) = serve().await;
    let cfg = ClientConfig::new(url, vec![Pair::parse("xrpusdt").unwrap()]);
    let (tx, mut rx) = mpsc::channel(64);
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        client::run(cfg, tx, CancellationToken::new()),
    )
    .await
    .unwrap();
    let err = result.unwrap_err().to_string();
    assert!(err.contains("XRP-USDT"), "{err}");
    let mut fatal = None;
    while let Ok(e) = rx.try_recv() {
        if let Event::Fatal(m) = e {
            fatal = Some(m);
        }
    }
    assert!(fatal.unwrap().contains("unknown pair \"XRP-USDT\""));
    stop.cancel();
}

type ClientTask = tokio::task::JoinHandle<Result<(), client::ClientError>>;

/// A client of a port nobody listens on, retrying from 20 ms: its events, its stop, its task.
fn unreachable_client() -> (mpsc::Receiver<Event>, CancellationToken, ClientTask) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = ClientConfig::new(format!("http://127.0.0.1:{port}"), Pair::defaults());
    cfg.min_backoff = Duration::from_millis(20);
    let (tx, rx) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(client::run(cfg, tx, shutdown.clone()));
    (rx, shutdown, task)
}

#[tokio::test]
async fn an_unreachable_server_is_retried_with_growing_delays() {
    let (mut rx, shutdown, task) = unreachable_client();
    let mut delays = Vec::new();
    while delays.len() < 4 {
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let Event::Conn(_, LinkState::Reconnecting { in_ms, .. }) = event {
            delays.push(in_ms);
        }
    }
    assert_eq!(delays, [20, 40, 80, 160]);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// Runs a client for ETH-USDT (a finite stream) with `exit_on_eof` until it ends; its result
/// and every event it sent.
async fn eth_until_the_end(
    url: String,
    history: u32,
) -> (Result<(), client::ClientError>, Vec<Event>) {
    let mut cfg = ClientConfig::new(url, vec![Pair::parse("ethusdt").unwrap()]);
    cfg.exit_on_eof = true;
    cfg.history = history;
    cfg.history_given = true;
    let (tx, mut rx) = mpsc::channel(64);
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        client::run(cfg, tx, CancellationToken::new()),
    )
    .await
    .unwrap();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (result, events)
}

#[tokio::test]
async fn with_exit_on_eof_a_normal_end_of_stream_ends_the_client() {
    let (url, _, stop) = serve().await;
    let (result, events) = eth_until_the_end(url, 120).await;
    assert!(result.is_ok());
    let mut candles = 0;
    let mut last = None;
    for e in events {
        match e {
            Event::Candle(_) => candles += 1,
            Event::Conn(_, s) => last = Some(s),
            _ => {}
        }
    }
    assert_eq!(candles, 1);
    assert_eq!(last, Some(LinkState::Stopped));
    stop.cancel();
}

#[tokio::test]
async fn a_history_the_server_does_not_keep_is_capped_with_a_notice() {
    let (url, _, stop) = serve().await;
    let (result, events) = eth_until_the_end(url, 999_999).await;
    assert!(result.is_ok());
    let mut notices = Vec::new();
    for e in events {
        if let Event::Notice(n) = e {
            notices.push(n);
        }
    }
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].contains("--history 999999") && notices[0].contains("100"),
        "{notices:?}"
    );
    stop.cancel();
}

#[tokio::test]
async fn an_unreachable_server_says_why() {
    let (mut rx, shutdown, task) = unreachable_client();
    let reason = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let Event::Problem(Link::Server, reason) = event {
            break reason;
        }
    };
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
