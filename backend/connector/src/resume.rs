//! Resuming after a restart: the last trade this exchange published per pair, read back from
//! the tail of the Kafka topic.
//!
//! Kafka is the record of what was published, so a connector that was killed (even `kill -9`,
//! with deliveries in flight) and started again learns exactly where it stopped: the sequencer
//! starts with those ids as its references, the first trade after the restart reveals the gap,
//! and the missed trades are fetched from REST and published once — nothing lost, nothing twice.
//!
//! Each partition is read from `high watermark − SCAN_PER_PARTITION` to its high watermark with a
//! group-less consumer (no offsets are committed). A pair whose last trade is further back than
//! that (a pair that was quiet while others were busy) gets no reference and follows the normal
//! start rule.
//!
//! The consumers get the same client properties as the producer (`--kafka-property`), so a
//! secured cluster can be read back too.

use crate::kafka::KafkaProperties;
use candles_core::{Exchange, Micros, Pair, Trade};
use candles_proto::v1;
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How many records at the end of each partition are read to find each pair's last trade.
pub const SCAN_PER_PARTITION: i64 = 50_000;

/// The last published trade (id, trade time) of each of `pairs` from `exchange` in `topic`,
/// read with the user's client properties (`--kafka-property`, e.g. SASL/TLS). An empty map
/// when the topic does not exist yet. Blocking: call it from `spawn_blocking`.
pub fn last_published(
    brokers: &str,
    topic: &str,
    properties: &KafkaProperties,
    exchange: Exchange,
    pairs: &[Pair],
    timeout: Duration,
) -> anyhow::Result<HashMap<Pair, (u64, Micros)>> {
    let mut last: HashMap<Pair, (u64, Micros)> = HashMap::new();
    scan_tail(brokers, topic, properties, timeout, |trade| {
        if trade.exchange == exchange && pairs.contains(&trade.pair) {
            let entry = last.entry(trade.pair).or_insert((trade.id, trade.time));
            if trade.id > entry.0 {
                *entry = (trade.id, trade.time);
            }
        }
    })?;
    Ok(last)
}

/// Which of `trades` are already in the tail of `topic` (same exchange, pair and id). The sink
/// asks this before it sends again a trade whose delivery failed: a delivery can fail after the
/// broker wrote the record (the acknowledgement was lost with the connection), and sending it
/// again would publish it twice. Read with the user's client properties (`--kafka-property`).
/// Blocking: call it from `spawn_blocking`.
pub fn already_published(
    brokers: &str,
    topic: &str,
    properties: &KafkaProperties,
    trades: &[Trade],
    timeout: Duration,
) -> anyhow::Result<HashSet<(Exchange, Pair, u64)>> {
    let wanted: HashSet<(Exchange, Pair, u64)> =
        trades.iter().map(|t| (t.exchange, t.pair, t.id)).collect();
    let mut found = HashSet::new();
    scan_tail(brokers, topic, properties, timeout, |trade| {
        let key = (trade.exchange, trade.pair, trade.id);
        if wanted.contains(&key) {
            found.insert(key);
        }
    })?;
    Ok(found)
}

/// Calls `visit` for every trade in the last [`SCAN_PER_PARTITION`] records of each partition
/// of `topic` (nothing when the topic does not exist). Undecodable records are passed over.
fn scan_tail(
    brokers: &str,
    topic: &str,
    properties: &KafkaProperties,
    timeout: Duration,
    visit: impl FnMut(&Trade),
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "candles-connector-resume")
        .set("enable.auto.commit", "false");
    properties.apply(&mut config);
    // The scan counts partition ends: this one is not the user's to turn off.
    config.set("enable.partition.eof", "true");
    let consumer: BaseConsumer = crate::kafka::create(
        &config,
        properties,
        "a Kafka consumer to read the topic back",
    )?;
    let result = scan(&consumer, topic, deadline, visit);
    // librdkafka's destroy can hang (PITFALLS.md): never let it block the connector.
    std::thread::spawn(move || drop(consumer));
    result
}

fn scan(
    consumer: &BaseConsumer,
    topic: &str,
    deadline: Instant,
    mut visit: impl FnMut(&Trade),
) -> anyhow::Result<()> {
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let metadata = consumer.fetch_metadata(Some(topic), remaining())?;
    let Some(partitions) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
    else {
        return Ok(());
    };
    let mut tpl = TopicPartitionList::new();
    let mut pending = 0;
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, remaining())?;
        if high > low {
            tpl.add_partition_offset(
                topic,
                p,
                Offset::Offset((high - SCAN_PER_PARTITION).max(low)),
            )?;
            pending += 1;
        }
    }
    if pending == 0 {
        return Ok(());
    }
    consumer.assign(&tpl)?;
    while pending > 0 {
        if Instant::now() >= deadline {
            anyhow::bail!(
                "reading back the last published trades from {topic} timed out; is the broker healthy?"
            );
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => pending -= 1,
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(msg)) => {
                if let Some(trade) = msg
                    .payload()
                    .and_then(|b| v1::Trade::decode(b).ok())
                    .and_then(|w| Trade::try_from(&w).ok())
                {
                    visit(&trade);
                }
            }
        }
    }
    Ok(())
}
