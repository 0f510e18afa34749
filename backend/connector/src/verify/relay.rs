//! Verification inside the connector binary: our final 1-minute candles of this exchange come
//! from the services' Redis Pub/Sub ([`candles_reports::candle_channel`] of each pair, interval
//! 1m), go to the [`Verifier`], and every verdict is reported with
//! [`Reporter::verification`] (the latest, the latest mismatch, and Pub/Sub for every service
//! instance to relay to its gRPC clients).
//!
//! Redis never stops trades: this runs beside the trade stream; while Redis is down it
//! reconnects after doubling waits (logged, counted in `connector_report_errors_total`), and a
//! verdict it cannot write is logged and counted, not retried. Candles published while the
//! subscription was down are not verified. Each pair's tally is seeded once from the latest
//! verdict stored in Redis, before the first candle is taken, so it survives a restart.

use super::{Settings, Tally, Verifier};
use crate::ConnectorConfig;
use crate::telemetry::side_channel_failed as failed;
use candles_core::retry::Doubling;
use candles_core::verify::MINUTE;
use candles_core::{Candle, Exchange, Pair, Source};
use candles_proto::v1;
use candles_reports::Reporter;
use futures::StreamExt as _;
use prost::Message as _;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The largest candle read from Pub/Sub (the services' own bound on a candle read back).
const MAX_CANDLE_BYTES: usize = 4096;
/// Waits between two attempts to (re)subscribe or seed.
const RETRY: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// Starts verifying `config`'s exchange from the candles on `redis_url`, reporting through
/// `reporter` (whose prefix names the channels), until `shutdown`. Returns at once; only a
/// `redis_url` that does not parse is an error.
pub fn spawn(
    config: &ConnectorConfig,
    redis_url: &str,
    reporter: Reporter,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url)?;
    let (verifier, verdicts) = Verifier::spawn(config, settings, shutdown.clone())?;
    let exchange = config.exchange;
    tokio::spawn(report(verdicts, reporter.clone(), exchange));
    let feed = Feed {
        client,
        reporter,
        verifier,
        exchange,
        pairs: config.pairs.clone(),
    };
    tokio::spawn(async move {
        tokio::select! {
            () = feed.run() => {}
            () = shutdown.cancelled() => {}
        }
    });
    Ok(())
}

/// Writes every verdict to Redis; one that cannot be written is counted and dropped.
async fn report(
    mut verdicts: mpsc::Receiver<v1::Verification>,
    mut reporter: Reporter,
    exchange: Exchange,
) {
    while let Some(v) = verdicts.recv().await {
        if let Err(e) = reporter.verification(&v).await {
            failed(exchange, "report", &e);
        }
    }
}

/// Subscribes to the pairs' 1m candle channels and feeds the verifier.
struct Feed {
    client: redis::Client,
    reporter: Reporter,
    verifier: Verifier,
    exchange: Exchange,
    pairs: Vec<Pair>,
}

impl Feed {
    async fn run(self) {
        let mut wait = Doubling::new(RETRY.0, RETRY.1);
        let mut seeded = false;
        loop {
            if !seeded {
                match self.seed().await {
                    Ok(()) => seeded = true,
                    Err(e) => failed(self.exchange, "seed", &e),
                }
            }
            if seeded {
                match self.subscribe().await {
                    Ok(pubsub) => {
                        wait.reset();
                        self.forward(pubsub).await;
                        failed(self.exchange, "subscribe", &"the subscription ended");
                    }
                    Err(e) => failed(self.exchange, "subscribe", &e),
                }
            }
            tokio::time::sleep(wait.next_delay()).await;
        }
    }

    /// Starts each pair's tally from the latest verdict stored in Redis.
    async fn seed(&self) -> redis::RedisResult<()> {
        let source = Source::Exchange(self.exchange);
        for &pair in &self.pairs {
            let (latest, _) = self.reporter.read_latest(pair, source).await?;
            if let Some(tally) = latest.as_ref().and_then(|v| v.tally.as_ref()) {
                self.verifier.seed(pair, Tally::from(tally));
            }
        }
        Ok(())
    }

    async fn subscribe(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let channels: Vec<String> = self
            .pairs
            .iter()
            .map(|&p| self.reporter.keys().candles(MINUTE, p))
            .collect();
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(&channels).await?;
        tracing::info!(exchange = %self.exchange, channels = channels.len(), "verifying our 1m candles against the exchange's");
        Ok(pubsub)
    }

    /// Feeds every final 1m candle of this exchange until the subscription ends.
    async fn forward(&self, mut pubsub: redis::aio::PubSub) {
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            if let Some((candle, partial)) = decode(msg.get_payload_bytes(), self.exchange) {
                self.verifier.check(&candle, partial);
            }
        }
    }
}

/// A final candle of `exchange` from Pub/Sub and its partial mark; `None` for a live update,
/// another source, or anything too large or not a candle (the channel carries every source's
/// finals and live updates).
pub fn decode(bytes: &[u8], exchange: Exchange) -> Option<(Candle, bool)> {
    if bytes.len() > MAX_CANDLE_BYTES {
        return None;
    }
    let wire = v1::Candle::decode(bytes).ok()?;
    if !wire.r#final || wire.source != exchange.as_str() {
        return None;
    }
    let candle = Candle::try_from(&wire).ok()?;
    Some((candle, wire.partial))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candles_core::{Decimal, Micros};

    #[test]
    fn candles_decode_with_their_partial_mark_and_garbage_is_skipped() {
        let candle = Candle {
            pair: Pair::parse("BTC-USDT").unwrap(),
            source: Source::Exchange(Exchange::Kraken),
            interval: MINUTE,
            start: Micros(1_700_000_040_000_000),
            open: Decimal::ONE,
            high: Decimal::TWO,
            low: Decimal::ONE,
            close: Decimal::TWO,
            volume: Decimal::TWO,
            quote_volume: Decimal::from(3),
            buy_volume: Decimal::ONE,
            sell_volume: Decimal::ONE,
            trades: 2,
            is_final: true,
        };
        let mut wire = v1::Candle::from(&candle);
        wire.partial = true;
        let kraken = Exchange::Kraken;
        assert_eq!(decode(&wire.encode_to_vec(), kraken), Some((candle, true)));
        assert_eq!(decode(&wire.encode_to_vec(), Exchange::Binance), None);
        wire.r#final = false;
        assert_eq!(decode(&wire.encode_to_vec(), kraken), None);
        assert_eq!(decode(&[0xff, 0xff], kraken), None);
        assert_eq!(decode(&vec![0u8; MAX_CANDLE_BYTES + 1], kraken), None);
    }
}
