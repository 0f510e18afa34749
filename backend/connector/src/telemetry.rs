//! Metric names, their descriptions, and in-process counters.
//!
//! The library only calls the `metrics` macros; the binary installs the Prometheus exporter.
//! [`Counters`] carries the same figures for callers that run the connector in-process (tests,
//! `candles-tui --embedded`) and do not scrape Prometheus. [`LogLimits`] is the one rate limiter
//! of log lines fed from outside (rejected frames and trades, REST bodies, exchange errors).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Trades parsed from the WebSocket, per exchange and pair.
pub const TRADES_RECEIVED: &str = "connector_trades_received_total";
/// Trades handed to the sink and accepted by it, per exchange and pair.
pub const TRADES_PUBLISHED: &str = "connector_trades_published_total";
/// Trades dropped because their id was already published, per exchange and pair.
pub const DUPLICATES: &str = "connector_duplicate_trades_total";
/// Reconnects, per exchange and reason.
pub const RECONNECTS: &str = "connector_reconnects_total";
/// Gaps found in trade ids, per exchange and pair.
pub const GAPS: &str = "connector_gaps_total";
/// Trades fetched from REST to fill gaps and published, per exchange and pair.
pub const BACKFILLED: &str = "connector_trades_backfilled_total";
/// Gaps that could not be filled completely, per exchange and pair.
pub const GAP_UNFILLED: &str = "connector_gap_unfilled_total";
/// Trades known missing that could not be fetched, per exchange and pair.
pub const GAP_UNFILLED_TRADES: &str = "connector_gap_unfilled_trades_total";
/// Frames that did not parse, per exchange.
pub const REJECTED: &str = "connector_rejected_messages_total";
/// Trades refused before the sequencer, per exchange and `reason` (`unsubscribed`: a pair the
/// connector did not subscribe to; `implausible_time`: a trade time outside
/// [`candles_core::TimeBounds`]). No pair label: the pair is chosen by whoever sent the frame.
pub const REJECTED_TRADES: &str = "connector_rejected_total";
/// The `reason` of [`REJECTED_TRADES`] for a pair the connector did not subscribe to.
pub const REASON_UNSUBSCRIBED: &str = "unsubscribed";
/// The `reason` of [`REJECTED_TRADES`] for a trade time outside the accepted window.
pub const REASON_IMPLAUSIBLE_TIME: &str = "implausible_time";
/// REST answers saying "too many requests" (each held off and asked again), per exchange.
pub const RATE_LIMITED: &str = "connector_rest_rate_limited_total";
/// Kafka delivery errors (each retried), per topic.
pub const KAFKA_ERRORS: &str = "connector_kafka_errors_total";
/// Verdicts on our final 1-minute candles against the exchange's own, per exchange, pair and
/// `outcome` (`match`, `mismatch`, `unavailable`, `partial`).
pub const VERIFICATIONS: &str = "connector_verifications_total";
/// Candles not verified because too many were waiting, per exchange.
pub const VERIFICATIONS_DROPPED: &str = "connector_verifications_dropped_total";
/// Failures of the Redis side channel (reports written, candles read for verification), per
/// exchange and `kind` (`connect`, `seed`, `subscribe`, `report`); the trades stream on
/// regardless.
pub const REPORT_ERRORS: &str = "connector_report_errors_total";
/// 1 while the socket is live, 0 otherwise, per exchange.
pub const CONNECTED: &str = "connector_connected";

/// Counts a failure of the Redis side channel (`kind`: `connect`, `seed`, `subscribe`,
/// `report`) and logs it: the trades stream on regardless.
pub fn side_channel_failed(
    exchange: candles_core::Exchange,
    kind: &'static str,
    error: &dyn std::fmt::Display,
) {
    metrics::counter!(REPORT_ERRORS, "exchange" => exchange.as_str(), "kind" => kind).increment(1);
    tracing::warn!(%exchange, kind, %error, "Redis side channel failed; trades stream on");
}

/// Registers the descriptions of every metric (call once, after installing a recorder).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        TRADES_RECEIVED,
        "Trades parsed from the exchange's WebSocket."
    );
    describe_counter!(
        TRADES_PUBLISHED,
        "Trades accepted by the sink (Kafka: acknowledged)."
    );
    describe_counter!(
        DUPLICATES,
        "Trades dropped because their id was already published."
    );
    describe_counter!(RECONNECTS, "WebSocket reconnects, by reason.");
    describe_counter!(GAPS, "Gaps found in trade ids.");
    describe_counter!(
        RATE_LIMITED,
        "REST answers saying too many requests (held off, asked again)."
    );
    describe_counter!(BACKFILLED, "Trades fetched from REST to fill gaps.");
    describe_counter!(GAP_UNFILLED, "Gaps that could not be filled completely.");
    describe_counter!(
        GAP_UNFILLED_TRADES,
        "Missing trades that could not be fetched."
    );
    describe_counter!(REJECTED, "Exchange messages that did not parse (skipped).");
    describe_counter!(
        REJECTED_TRADES,
        "Trades refused (not published), by reason: unsubscribed, implausible_time."
    );
    describe_counter!(KAFKA_ERRORS, "Kafka delivery errors (retried).");
    describe_counter!(
        VERIFICATIONS,
        "Verdicts on our final 1m candles against the exchange's own, by outcome."
    );
    describe_counter!(
        VERIFICATIONS_DROPPED,
        "Candles not verified because too many were waiting."
    );
    describe_counter!(
        REPORT_ERRORS,
        "Redis side-channel failures (reports, candle subscription); trades go on."
    );
    describe_gauge!(CONNECTED, "1 while the WebSocket is live.");
}

/// Running totals of one connector (all pairs).
#[derive(Debug, Default)]
pub struct Counters {
    /// Trades parsed from the WebSocket.
    pub received: AtomicU64,
    /// Trades accepted by the sink.
    pub published: AtomicU64,
    /// Duplicates dropped.
    pub duplicates: AtomicU64,
    /// Reconnects.
    pub reconnects: AtomicU64,
    /// Gaps found.
    pub gaps: AtomicU64,
    /// Trades backfilled from REST.
    pub backfilled: AtomicU64,
    /// Trades known missing that could not be fetched.
    pub unfilled: AtomicU64,
    /// Frames rejected.
    pub rejected: AtomicU64,
    /// Sockets declared dead for silence.
    pub stale: AtomicU64,
    /// Trades of pairs the connector did not subscribe to (dropped).
    pub unsubscribed: AtomicU64,
    /// Trades whose time is outside the accepted window (dropped), WebSocket and REST.
    pub implausible: AtomicU64,
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// See [`Counters::received`].
    pub received: u64,
    /// See [`Counters::published`].
    pub published: u64,
    /// See [`Counters::duplicates`].
    pub duplicates: u64,
    /// See [`Counters::reconnects`].
    pub reconnects: u64,
    /// See [`Counters::gaps`].
    pub gaps: u64,
    /// See [`Counters::backfilled`].
    pub backfilled: u64,
    /// See [`Counters::unfilled`].
    pub unfilled: u64,
    /// See [`Counters::rejected`].
    pub rejected: u64,
    /// See [`Counters::stale`].
    pub stale: u64,
    /// See [`Counters::unsubscribed`].
    pub unsubscribed: u64,
    /// See [`Counters::implausible`].
    pub implausible: u64,
}

impl Counters {
    /// Adds `n` to one counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            received: get(&self.received),
            published: get(&self.published),
            duplicates: get(&self.duplicates),
            reconnects: get(&self.reconnects),
            gaps: get(&self.gaps),
            backfilled: get(&self.backfilled),
            unfilled: get(&self.unfilled),
            rejected: get(&self.rejected),
            stale: get(&self.stale),
            unsubscribed: get(&self.unsubscribed),
            implausible: get(&self.implausible),
        }
    }
}

/// Limits log lines about input from outside, per reason: at most `per_window` lines per
/// `window` for each ([`candles_core::bounds::LogLimit`]); past that, lines are counted, and the
/// first line of a later window says how many of that reason were not logged. A flood of bad
/// frames costs a counter increment each, not a log line each.
#[derive(Debug)]
pub struct LogLimits {
    per_window: u32,
    window: Duration,
    reasons: HashMap<&'static str, candles_core::bounds::LogLimit>,
}

impl Default for LogLimits {
    /// 20 lines a minute per reason.
    fn default() -> Self {
        LogLimits::new(20, Duration::from_secs(60))
    }
}

impl LogLimits {
    /// At most `per_window` lines per `window` for each reason.
    pub fn new(per_window: u32, window: Duration) -> Self {
        LogLimits {
            per_window,
            window,
            reasons: HashMap::new(),
        }
    }

    /// Whether a line about `reason` may be logged now. When a new window starts after lines
    /// were held back, this first logs one line with their count (`suppressed`).
    pub fn allow(&mut self, reason: &'static str) -> bool {
        let (per_window, window) = (self.per_window, self.window);
        let limit = self
            .reasons
            .entry(reason)
            .or_insert_with(|| candles_core::bounds::LogLimit::new(per_window, window));
        match limit.allow(Instant::now().into_std()) {
            Some(0) => true,
            Some(suppressed) => {
                tracing::warn!(
                    reason,
                    suppressed,
                    window = ?window,
                    "more lines of this kind were not logged (rate limit)"
                );
                true
            }
            None => false,
        }
    }

    /// How many lines about `reason` were held back since the last one let through.
    pub fn suppressed(&self, reason: &str) -> u64 {
        self.reasons.get(reason).map_or(0, |l| l.held())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_reason_gets_its_own_budget_per_window() {
        let mut limit = LogLimits::new(3, Duration::from_millis(200));
        let allowed = (0..100).filter(|_| limit.allow("a")).count();
        assert_eq!(allowed, 3);
        assert_eq!(limit.suppressed("a"), 97);
        assert!(limit.allow("b"), "another reason is not held back");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(limit.allow("a"), "a new window allows lines again");
        assert_eq!(limit.suppressed("a"), 0);
    }
}
