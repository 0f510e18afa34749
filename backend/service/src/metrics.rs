//! Metric names (Prometheus style). The library only records through the `metrics` macros; the
//! binary installs the exporter (`--metrics-addr`).

/// Counter: trades decoded from Kafka and given to the engine.
pub const TRADES_CONSUMED: &str = "candles_service_trades_consumed_total";
/// Counter: trades whose window was already finalized (counted, not applied).
pub const LATE_TRADES: &str = "candles_service_late_trades_total";
/// Counter: trades re-read after a restart or rebalance whose windows were already published.
pub const TRADES_ALREADY_PUBLISHED: &str = "candles_service_trades_already_published_total";
/// Counter, label `kind` = `final` | `live`: candles this instance published to Redis (finals
/// only when this instance was the first to publish that identity).
pub const CANDLES_PUBLISHED: &str = "candles_service_candles_published_total";
/// Counter: finals another instance had already published (the replay was harmless).
pub const CANDLES_DUPLICATE: &str = "candles_service_candles_already_published_total";
/// Histogram, seconds: from a window's end plus grace to sending its final candle to a client.
pub const FINALIZE_TO_CLIENT: &str = "candles_service_finalize_to_client_seconds";
/// Histogram, seconds: from a window's end plus grace to the service finalizing it (the high
/// watermark round trip, plus reading up to the watermark).
pub const FINALIZE_DELAY: &str = "candles_service_finalize_delay_seconds";
/// Histogram, seconds: one high-watermark query (ListOffsets) round trip to Kafka.
pub const WATERMARK_QUERY: &str = "candles_service_watermark_query_seconds";
/// Gauge: gRPC clients subscribed now.
pub const CLIENTS_CONNECTED: &str = "candles_service_clients_connected";
/// Counter: clients dropped because their queue overflowed.
pub const CLIENTS_DROPPED: &str = "candles_service_clients_dropped_total";
/// Gauge, label `partition`: high watermark − next offset to read.
pub const CONSUMER_LAG: &str = "candles_service_consumer_lag";
/// Counter: undecodable records sent to the dead-letter topic.
pub const DLQ_RECORDS: &str = "candles_service_dlq_records_total";
/// Counter, label `reason` = `key_mismatch` | `unserved_pair` | `implausible_time`: decoded
/// trades not applied ([`crate::admission`]); no per-pair label, so made-up pairs cost nothing.
pub const TRADES_REJECTED: &str = "candles_service_trades_rejected_total";
/// Counter, label `reason` = `rejected` (the broker refuses the record: too large, invalid) |
/// `gave_up` (still failing after the retries): dead letters that could not be written and were
/// skipped, so one record never stops the partition.
pub const DLQ_FAILURES: &str = "candles_service_dlq_failures_total";
/// Counter: a pair's first trade in a partition while another partition assigned here already
/// has it: the pair's trades are split across partitions (a misrouting producer, or partitions
/// added to a live topic; DESIGN.md "Adding partitions").
pub const PAIR_PARTITION_CONFLICTS: &str = "candles_service_pair_partition_conflicts_total";
/// Counter: holes in a partition's offsets passed (compacted records or transaction markers;
/// none in a plain `trades` topic).
pub const OFFSET_GAPS: &str = "candles_service_offset_gaps_total";
/// Counter, label `reason`: candles read back from Redis that were rejected (not served).
pub const REDIS_REJECTED: &str = "candles_redis_rejected_total";
/// Counter: Redis subscriber reconnects.
pub const REDIS_RECONNECTS: &str = "candles_service_redis_reconnects_total";
/// Gauge: 1 while the dependency (label `dependency` = `kafka` | `redis`) is reachable.
pub const DEPENDENCY_UP: &str = "candles_service_dependency_up";

/// Buckets for [`FINALIZE_TO_CLIENT`], seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// The histograms measured in seconds (all use [`LATENCY_BUCKETS`]).
pub const LATENCY_HISTOGRAMS: &[&str] = &[FINALIZE_TO_CLIENT, FINALIZE_DELAY, WATERMARK_QUERY];

/// Registers descriptions with whatever recorder is installed (none in tests: a no-op).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        TRADES_CONSUMED,
        "Trades decoded from Kafka and applied or rejected by the engine"
    );
    describe_counter!(
        LATE_TRADES,
        "Trades that arrived after their window was finalized (not applied)"
    );
    describe_counter!(
        TRADES_ALREADY_PUBLISHED,
        "Re-read trades whose window had already been published"
    );
    describe_counter!(
        CANDLES_PUBLISHED,
        "Candles published to Redis, by kind (final, live)"
    );
    describe_counter!(
        CANDLES_DUPLICATE,
        "Final candles another instance had already published"
    );
    describe_histogram!(
        FINALIZE_TO_CLIENT,
        Unit::Seconds,
        "Window end + grace → final candle sent to a gRPC client"
    );
    describe_histogram!(
        FINALIZE_DELAY,
        Unit::Seconds,
        "Window end + grace → window finalized by this service"
    );
    describe_histogram!(
        WATERMARK_QUERY,
        Unit::Seconds,
        "High-watermark query (ListOffsets) round trip"
    );
    describe_gauge!(CLIENTS_CONNECTED, "gRPC clients subscribed");
    describe_counter!(
        CLIENTS_DROPPED,
        "gRPC clients dropped because their queue overflowed"
    );
    describe_gauge!(
        CONSUMER_LAG,
        "Kafka consumer lag per partition (high watermark - position)"
    );
    describe_counter!(
        DLQ_RECORDS,
        "Undecodable Kafka records sent to the dead-letter topic"
    );
    describe_counter!(
        TRADES_REJECTED,
        "Decoded trades not applied, by reason (key_mismatch, unserved_pair, implausible_time)"
    );
    describe_counter!(
        DLQ_FAILURES,
        "Dead letters that could not be written and were skipped, by reason (rejected, gave_up)"
    );
    describe_counter!(
        PAIR_PARTITION_CONFLICTS,
        "A pair found in a second partition assigned here (its trades are split)"
    );
    describe_counter!(
        OFFSET_GAPS,
        "Holes in a partition's offsets passed (compacted records, transaction markers)"
    );
    describe_counter!(REDIS_RECONNECTS, "Redis subscriber reconnects");
    describe_counter!(
        REDIS_REJECTED,
        "Candles read from Redis rejected (by reason)"
    );
    describe_gauge!(
        DEPENDENCY_UP,
        "1 while a dependency (kafka, redis) is reachable"
    );
}
