//! Where normalized trades go: any [`TradeSink`]; [`ChannelSink`] for the embedded mode
//! (`candles-tui --embedded`); `KafkaSink` (feature `kafka`, module `kafka_sink`) for the backend.
//!
//! A sink's `publish` returns only when the trades are safely handed over (Kafka: acknowledged
//! by every in-sync replica), so a trade counted as published is never lost.

use anyhow::anyhow;
use candles_core::Trade;
use std::future::Future;

/// Receives published trades, in order per pair.
pub trait TradeSink: Send {
    /// Hands `trades` over; returns once they are safe (or the sink is unusable: an error ends
    /// [`crate::run`]).
    fn publish(&mut self, trades: &[Trade]) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Sends trades into a Tokio channel (the embedded mode's engine reads the other end). Waits
/// when the channel is full; fails when the receiver is gone.
#[derive(Debug, Clone)]
pub struct ChannelSink(pub tokio::sync::mpsc::Sender<Trade>);

impl TradeSink for ChannelSink {
    async fn publish(&mut self, trades: &[Trade]) -> anyhow::Result<()> {
        for t in trades {
            self.0
                .send(*t)
                .await
                .map_err(|_| anyhow!("the trade channel's receiver is gone"))?;
        }
        Ok(())
    }
}
