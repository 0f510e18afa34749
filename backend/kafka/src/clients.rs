//! The stack's Kafka client settings, one copy: the connector's trade producer and the
//! service's group consumer. `candles-connector` (`KafkaSink`), `candles-service` (its consume
//! loop) and `candles-loadgen kafka-floor` (Kafka's own latency with these very settings) all
//! build their clients here, then apply the user's `--kafka-property` values on top
//! ([`crate::KafkaProperties::apply`]).

use rdkafka::ClientConfig;
use std::time::Duration;

/// The service's default Kafka session timeout (`--session-timeout`): how soon the partitions
/// of a dead instance move to the others.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// The connector's trade producer for `brokers` (`host:port,...`), named `client_id`.
///
/// Idempotent (`enable.idempotence`, `acks=all`, at most 5 requests in flight), so each
/// partition keeps its order and librdkafka's own retries leave no duplicates; batches of up to
/// 5 ms; `murmur2_random` partitioning, the Java client's, so any Kafka client agrees on a
/// pair's partition.
pub fn trade_producer(brokers: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        // Back within a second of a broker restart: the trades buffered meanwhile are late
        // for their windows by however long this takes (see candles-service's outage rule).
        .set("reconnect.backoff.max.ms", "1000")
        .set("partitioner", "murmur2_random")
        .set("client.id", client_id);
    c
}

/// The service's group consumer of the trades topic for `brokers`, in consumer group `group`,
/// named `client_id`: manual offset stores and commits, from the earliest offset when the group
/// has none, short fetch waits (50 ms), heartbeats at a quarter of `session_timeout`.
pub fn trade_consumer(
    brokers: &str,
    group: &str,
    client_id: &str,
    session_timeout: Duration,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (session_timeout.as_millis() / 4).max(100).to_string(),
        )
        .set("fetch.wait.max.ms", "50")
        .set("topic.metadata.refresh.interval.ms", "5000");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consumer_heartbeats_at_a_quarter_of_the_session_timeout() {
        let c = trade_consumer("b:9092", "g", "id", DEFAULT_SESSION_TIMEOUT);
        assert_eq!(c.get("session.timeout.ms"), Some("6000"));
        assert_eq!(c.get("heartbeat.interval.ms"), Some("1500"));
        assert_eq!(c.get("group.id"), Some("g"));
        let c = trade_consumer("b:9092", "g", "id", Duration::from_millis(200));
        assert_eq!(c.get("heartbeat.interval.ms"), Some("100"));
    }

    #[test]
    fn the_producer_is_idempotent_and_partitions_like_the_java_client() {
        let c = trade_producer("b:9092", "candles-connector");
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
        assert_eq!(c.get("client.id"), Some("candles-connector"));
    }
}
