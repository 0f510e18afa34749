//! Metric names, their descriptions, and in-process counters.
//!
//! The library only calls the `metrics` macros; the binary installs the Prometheus exporter.
//! [`Counters`] carries the same figures for callers that run the connector in-process (tests,
//! `candles-tui --embedded`) and do not scrape Prometheus.

use std::sync::atomic::{AtomicU64, Ordering};

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
/// Kafka delivery errors (each retried), per topic.
pub const KAFKA_ERRORS: &str = "connector_kafka_errors_total";
/// 1 while the socket is live, 0 otherwise, per exchange.
pub const CONNECTED: &str = "connector_connected";

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
    describe_counter!(BACKFILLED, "Trades fetched from REST to fill gaps.");
    describe_counter!(GAP_UNFILLED, "Gaps that could not be filled completely.");
    describe_counter!(
        GAP_UNFILLED_TRADES,
        "Missing trades that could not be fetched."
    );
    describe_counter!(REJECTED, "Exchange messages that did not parse (skipped).");
    describe_counter!(KAFKA_ERRORS, "Kafka delivery errors (retried).");
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
        }
    }
}
