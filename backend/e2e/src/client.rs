//! A gRPC client that records every candle it receives, reconnecting (with history, to the next
//! instance in its list) when its stream ends — what a dashboard does.

use candles_proto::v1;
use candles_proto::v1::candle_service_client::CandleServiceClient;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;

/// One received final candle.
#[derive(Clone, Debug)]
pub struct Got {
    /// The candle as received.
    pub candle: v1::Candle,
    /// Sent as history.
    pub historical: bool,
    /// Which stream (0, 1, …: one per (re)subscription) it came on.
    pub stream: u32,
}

/// What a [`Collector`] has seen so far.
#[derive(Clone, Debug, Default)]
pub struct Received {
    /// Final candles in arrival order.
    pub finals: Vec<Got>,
    /// In-progress (live) updates received.
    pub live_updates: u64,
    /// Verdicts received (when asked for), in arrival order.
    pub verdicts: Vec<v1::Verification>,
    /// Streams opened successfully.
    pub streams: u32,
    /// Why streams ended or could not open, in order.
    pub events: Vec<String>,
}

/// A subscribing client running on a tokio runtime; stops when dropped.
pub struct Collector {
    /// A name for reports.
    pub name: String,
    state: Arc<Mutex<Received>>,
    task: JoinHandle<()>,
}

/// What to subscribe to.
#[derive(Clone, Debug)]
pub struct Subscription {
    /// Pairs.
    pub pairs: Vec<String>,
    /// Sources.
    pub sources: Vec<String>,
    /// History depth asked on every (re)subscription.
    pub history: u32,
    /// Ask for live updates too.
    pub live_updates: bool,
    /// The interval; `None`: the server's default.
    pub interval: Option<candles_core::Interval>,
    /// Ask for the verdicts on the pairs' candles too.
    pub verifications: bool,
}

impl Subscription {
    /// The three default pairs, all four sources, full history, live updates on, the server's
    /// default interval.
    pub fn all() -> Subscription {
        Subscription {
            pairs: ["btcusdt", "ethusdt", "solusdt"].map(String::from).to_vec(),
            sources: ["composite", "binance", "kraken", "coinbase"]
                .map(String::from)
                .to_vec(),
            history: 1000,
            live_updates: true,
            interval: None,
            verifications: false,
        }
    }
}

impl Collector {
    /// Starts on `rt`: subscribes to `urls[0]`; when a stream ends, subscribes again to the next
    /// URL of the list (cyclically), asking for history to fill the gap.
    pub fn start(
        rt: &tokio::runtime::Handle,
        name: &str,
        urls: Vec<String>,
        sub: Subscription,
    ) -> Collector {
        let state = Arc::new(Mutex::new(Received::default()));
        let task = rt.spawn(run(urls, sub, state.clone()));
        Collector {
            name: name.to_string(),
            state,
            task,
        }
    }

    /// A copy of what it has received so far.
    pub fn received(&self) -> Received {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn note(state: &Mutex<Received>, event: String) {
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .events
        .push(event);
}

async fn run(urls: Vec<String>, sub: Subscription, state: Arc<Mutex<Received>>) {
    let mut at = 0usize;
    let mut stream_no = 0u32;
    loop {
        let url = urls[at % urls.len()].clone();
        match subscribe(&url, &sub).await {
            Err(e) => {
                note(&state, format!("{url}: cannot subscribe: {e}"));
                at += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(mut stream) => {
                {
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    s.streams += 1;
                    s.events.push(format!("{url}: stream {stream_no} open"));
                }
                let end = loop {
                    match stream.next().await {
                        None => break "stream ended".to_string(),
                        Some(Err(status)) => break format!("stream failed: {status}"),
                        Some(Ok(msg)) => {
                            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                            s.verdicts.extend(msg.verification);
                            let Some(candle) = msg.candle else { continue };
                            if candle.r#final {
                                s.finals.push(Got {
                                    candle,
                                    historical: msg.historical,
                                    stream: stream_no,
                                });
                            } else {
                                s.live_updates += 1;
                            }
                        }
                    }
                };
                note(&state, format!("{url}: stream {stream_no}: {end}"));
                stream_no += 1;
                at += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn subscribe(
    url: &str,
    sub: &Subscription,
) -> anyhow::Result<tonic::Streaming<v1::SubscribeResponse>> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let mut client = CandleServiceClient::new(channel);
    let request = v1::SubscribeRequest {
        pairs: sub.pairs.clone(),
        sources: sub.sources.clone(),
        history: sub.history,
        live_updates: sub.live_updates,
        interval: sub.interval.map(candles_proto::duration),
        verifications: sub.verifications,
    };
    Ok(client.subscribe(request).await?.into_inner())
}
