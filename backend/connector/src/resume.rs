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

use candles_core::{Exchange, Micros, Pair, Trade};
use candles_proto::v1;
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How many records at the end of each partition are read to find each pair's last trade.
pub const SCAN_PER_PARTITION: i64 = 50_000;

/// The last published trade (id, trade time) of each of `pairs` from `exchange` in `topic`.
/// An empty map when the topic does not exist yet. Blocking: call it from `spawn_blocking`.
pub fn last_published(
    brokers: &str,
    topic: &str,
    exchange: Exchange,
    pairs: &[Pair],
    timeout: Duration,
) -> anyhow::Result<HashMap<Pair, (u64, Micros)>> {
    let deadline = Instant::now() + timeout;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "candles-connector-resume")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let result = scan(&consumer, topic, exchange, pairs, deadline);
    // librdkafka's destroy can hang (PITFALLS.md): never let it block the connector's start.
    std::thread::spawn(move || drop(consumer));
    result
}

fn scan(
    consumer: &BaseConsumer,
    topic: &str,
    exchange: Exchange,
    pairs: &[Pair],
    deadline: Instant,
) -> anyhow::Result<HashMap<Pair, (u64, Micros)>> {
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let metadata = consumer.fetch_metadata(Some(topic), remaining())?;
    let Some(partitions) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
    else {
        return Ok(HashMap::new());
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
    let mut last: HashMap<Pair, (u64, Micros)> = HashMap::new();
    if pending == 0 {
        return Ok(last);
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
                let Some(trade) = msg
                    .payload()
                    .and_then(|b| v1::Trade::decode(b).ok())
                    .and_then(|w| Trade::try_from(&w).ok())
                else {
                    continue;
                };
                if trade.exchange == exchange && pairs.contains(&trade.pair) {
                    let entry = last.entry(trade.pair).or_insert((trade.id, trade.time));
                    if trade.id > entry.0 {
                        *entry = (trade.id, trade.time);
                    }
                }
            }
        }
    }
    Ok(last)
}
