//! gRPC subscribers that record every candle they receive with its receive time.

use anyhow::{Context as _, Result};
use candles_core::Micros;
use candles_proto::v1::candle_service_client::CandleServiceClient;
use candles_proto::v1::{SubscribeRequest, SubscribeResponse};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

/// One candle as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Canonical pair.
    pub pair: String,
    /// `composite` or an exchange.
    pub source: String,
    /// Window start, µs since the epoch.
    pub start_us: i64,
    /// Window end, µs since the epoch.
    pub end_us: i64,
    /// Trade count.
    pub trades: u64,
    /// Final or live.
    pub is_final: bool,
    /// Wall-clock receive time, µs since the epoch.
    pub recv_us: i64,
    /// When the service published it (`published_at`), µs since the epoch.
    pub published_us: Option<i64>,
}

/// What one subscriber got.
#[derive(Debug, Default)]
pub struct Recording {
    /// Candles (history excluded).
    pub candles: Vec<Received>,
    /// Why the stream ended early, if it did.
    pub error: Option<String>,
}

/// Counters shared by all subscribers, for progress output.
#[derive(Debug, Default)]
pub struct Progress {
    /// Live candles received.
    pub live: AtomicU64,
    /// Final candles received.
    pub finals: AtomicU64,
    /// Subscriptions open.
    pub open: AtomicU64,
}

/// One HTTP/2 connection to `url` (`http://127.0.0.1:PORT`).
pub async fn connect(url: &str) -> Result<CandleServiceClient<Channel>> {
    let channel = Endpoint::from_shared(url.to_string())
        .with_context(|| format!("invalid gRPC URL {url:?}"))?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    Ok(CandleServiceClient::new(channel).max_decoding_message_size(16 << 20))
}

/// Opens a `Subscribe` stream for `pairs` and `sources` (empty: the composite).
pub async fn subscribe(
    client: &mut CandleServiceClient<Channel>,
    pairs: &[String],
    sources: &[String],
    live_updates: bool,
) -> Result<Streaming<SubscribeResponse>> {
    let request = SubscribeRequest {
        pairs: pairs.to_vec(),
        sources: sources.to_vec(),
        history: 0,
        live_updates,
        interval: None,
        verifications: false,
    };
    Ok(client
        .subscribe(request)
        .await
        .context("Subscribe failed")?
        .into_inner())
}

/// Records `stream` until `stop` turns true or the stream ends.
pub async fn record(
    mut stream: Streaming<SubscribeResponse>,
    mut stop: watch::Receiver<bool>,
    progress: Arc<Progress>,
) -> Recording {
    let mut rec = Recording::default();
    progress.open.fetch_add(1, Ordering::Relaxed);
    loop {
        let msg = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            msg = stream.message() => msg,
        };
        let recv_us = Micros::now().0;
        match msg {
            Ok(Some(msg)) => {
                if msg.historical {
                    continue;
                }
                let Some(c) = msg.candle else { continue };
                let counter = if c.r#final {
                    &progress.finals
                } else {
                    &progress.live
                };
                counter.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(
                    "loadgen_candles_received_total",
                    "kind" => if c.r#final { "final" } else { "live" }
                )
                .increment(1);
                rec.candles.push(Received {
                    pair: c.pair,
                    source: c.source,
                    start_us: timestamp_us(c.start),
                    end_us: timestamp_us(c.end),
                    trades: c.trades,
                    is_final: c.r#final,
                    recv_us,
                    published_us: c.published_at.map(|t| timestamp_us(Some(t))),
                });
            }
            Ok(None) => {
                rec.error = Some("stream ended by the server".into());
                break;
            }
            Err(status) => {
                rec.error = Some(format!("stream failed: {status}"));
                break;
            }
        }
    }
    progress.open.fetch_sub(1, Ordering::Relaxed);
    rec
}

fn timestamp_us(ts: Option<prost_types::Timestamp>) -> i64 {
    ts.map_or(0, |t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
}
