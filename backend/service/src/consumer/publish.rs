//! Where candles leave: finals (publish-once) and live updates to Redis through
//! [`crate::store::Store`]. Finals are published oldest first per partition and hold back their
//! partition's commit until Redis has them; after a Redis error publishing pauses briefly, the
//! failed candle and the rest stay pending, and live updates are skipped meanwhile.

use super::partition::Partition;
use crate::metrics as m;
use crate::store::Store;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long publishing pauses after a Redis error.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(500);

/// Publishes the partitions' candles to Redis.
pub struct Publisher {
    store: Store,
    /// When Redis last failed a publish.
    failed: Option<Instant>,
}

impl Publisher {
    /// Publishes through `store`.
    pub fn new(store: Store) -> Publisher {
        Publisher {
            store,
            failed: None,
        }
    }

    /// Forgets the last failure: the next call tries at once (shutdown).
    pub fn retry_now(&mut self) {
        self.failed = None;
    }

    /// Publishes finalized candles, oldest first per partition, one round trip per window (the
    /// commands are pipelined on one connection); stops at the first Redis error (that candle
    /// and the rest stay pending and hold back their partition's commit; publishing again what
    /// did reach Redis is harmless).
    pub async fn finals(&mut self, parts: &mut HashMap<i32, Partition>) {
        if self
            .failed
            .is_some_and(|t| t.elapsed() < PAUSE_AFTER_FAILURE)
        {
            return;
        }
        for state in parts.values_mut() {
            while !state.pending().is_empty() {
                if !self.one_window(state).await {
                    return;
                }
            }
            self.failed = None;
            state.forget_published();
        }
    }

    /// Publishes the oldest window of each series pending in `state`; `false` on a Redis error.
    async fn one_window(&mut self, state: &mut Partition) -> bool {
        // One window of each series per round: a failure then never leaves a later window of a
        // series published before an earlier one (which publish-once would refuse).
        let mut series = Vec::new();
        let batch = state
            .pending()
            .iter()
            .take_while(|c| {
                let fresh = !series.contains(&(c.pair, c.source, c.interval));
                series.push((c.pair, c.source, c.interval));
                fresh
            })
            .count();
        let store = &self.store;
        let results = futures::future::join_all(
            state
                .pending()
                .iter()
                .take(batch)
                .map(|c| store.publish_final(c)),
        )
        .await;
        for result in results {
            match result {
                Ok(true) => {
                    metrics::counter!(m::CANDLES_PUBLISHED, "kind" => "final").increment(1);
                }
                Ok(false) => metrics::counter!(m::CANDLES_DUPLICATE).increment(1),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot publish final candles; holding them (and their offsets) until Redis is back");
                    self.failed = Some(Instant::now());
                    return false;
                }
            }
            state.published_one();
        }
        true
    }

    /// Publishes the in-progress candles that changed since the last call (skipped while Redis
    /// is failing: the next round carries the latest state).
    pub async fn live(&mut self, parts: &mut HashMap<i32, Partition>) {
        if self.failed.is_some() {
            return;
        }
        let mut updates = Vec::new();
        for state in parts.values_mut() {
            state.take_updates(&mut updates);
        }
        let store = &self.store;
        let results =
            futures::future::join_all(updates.iter().map(|c| store.publish_live(c))).await;
        for result in results {
            match result {
                Ok(()) => metrics::counter!(m::CANDLES_PUBLISHED, "kind" => "live").increment(1),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot publish a live candle; skipping this update");
                    return;
                }
            }
        }
    }
}
