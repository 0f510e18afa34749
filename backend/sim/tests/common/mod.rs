//! Helpers shared by the integration tests: start a simulator, a real WebSocket client, a tiny
//! HTTP client, and ground-truth comparison.
#![allow(dead_code)]

use candles_core::{Exchange, Pair, Side, Trade};
use exchange_sim::{SimConfig, SimHandle};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A connected WebSocket client.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Starts a simulator of `exchange` with the test's changes to the default config.
pub async fn sim(exchange: Exchange, change: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut config = SimConfig {
        exchange,
        source: exchange_sim::TradeSource::Synthetic { rate: 300.0 },
        ..SimConfig::default()
    };
    change(&mut config);
    exchange_sim::start(config).await.expect("simulator starts")
}

/// Connects a WebSocket client.
pub async fn connect(url: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket connects");
    ws
}

/// Sends a text message.
pub async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_string()))
        .await
        .expect("send");
}

/// What the client saw next.
#[derive(Debug)]
pub enum Seen {
    /// A text message.
    Text(String),
    /// A ping frame.
    Ping,
    /// A close frame or the end of the stream.
    Closed,
    /// Nothing within the timeout.
    Silence,
}

/// The next frame within `wait` (pongs and binary frames are skipped).
pub async fn next(ws: &mut Ws, wait: Duration) -> Seen {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Seen::Silence,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return Seen::Closed,
            Ok(Some(Ok(Message::Text(t)))) => return Seen::Text(t.to_string()),
            Ok(Some(Ok(Message::Ping(_)))) => return Seen::Ping,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// The next text message within `wait`, or a panic naming `what`.
pub async fn next_text(ws: &mut Ws, wait: Duration, what: &str) -> String {
    loop {
        match next(ws, wait).await {
            Seen::Text(t) => return t,
            Seen::Ping => continue,
            other => panic!("expected {what}, got {other:?}"),
        }
    }
}

/// Parses JSON (panics with the text on failure).
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Collects text messages until `enough` says stop or `wait` passes in total.
pub async fn collect(
    ws: &mut Ws,
    wait: Duration,
    mut enough: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    while !enough(&out) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(ws, left).await {
            Seen::Text(t) => out.push(t),
            Seen::Ping => {}
            Seen::Closed | Seen::Silence => break,
        }
    }
    out
}

/// A trade as text, for exact comparison: (pair, id, price, quantity, side, time µs).
pub type Row = (String, u64, String, String, Side, i64);

/// The comparable form of a ground-truth trade.
pub fn row(t: &Trade) -> Row {
    (
        t.pair.to_string(),
        t.id,
        t.price.to_string(),
        t.quantity.to_string(),
        t.side,
        t.time.0,
    )
}

/// The ground truth trade with this pair and id.
pub fn truth(sim: &SimHandle, pair: &str, id: u64) -> Trade {
    let pair = Pair::parse(pair).expect("pair");
    sim.trades()
        .into_iter()
        .find(|t| t.pair == pair && t.id == id)
        .unwrap_or_else(|| panic!("no trade {pair} #{id} in the ground truth"))
}

/// An HTTP response: status, headers (lower-case names), body.
pub struct Http {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Http {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        json(&self.body)
    }
}

/// `GET path` (with query) from the simulator, with `Connection: close`.
pub async fn get(sim: &SimHandle, path: &str) -> Http {
    let mut stream = TcpStream::connect(sim.addr()).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        sim.addr()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Http {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Waits until the simulator has generated at least `n` trades.
pub async fn wait_generated(sim: &SimHandle, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sim.generated() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} trades generated",
            sim.generated()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The sample files shared by the project.
pub fn shared_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/exchanges")
        .join(name)
}
