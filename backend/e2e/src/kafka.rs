//! Reads every trade the connectors published, straight from the broker: the evidence that
//! tells a connector's loss from the service's.

use anyhow::{Context as _, Result};
use candles_core::Trade;
use candles_proto::v1;
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One record of the trades topic, decoded.
#[derive(Clone, Debug)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// The record key (the canonical pair).
    pub key: String,
    /// The decoded trade, or why it could not be decoded.
    pub trade: Result<Trade, String>,
}

/// What [`read_topic`] read.
#[derive(Clone, Debug, Default)]
pub struct Read {
    /// The records, in read order.
    pub records: Vec<Record>,
    /// Whether every partition was read to the end it had when reading started (false when the
    /// time budget ran out or `enough` said stop).
    pub complete: bool,
}

/// Reads `topic` from the beginning towards its current end, on all `partitions`, for at most
/// `budget`, stopping early when `enough(records so far)` says so.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    budget: Duration,
    enough: &dyn Fn(&[Record]) -> bool,
) -> Result<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("e2e-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("cannot create a Kafka consumer")?;
    let result = read_with(&consumer, topic, partitions, budget, enough);
    // Dropping an rdkafka consumer can hang (PITFALLS.md): drop it on a thread nobody joins.
    std::thread::spawn(move || drop(consumer));
    result
}

fn read_with(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
    budget: Duration,
    enough: &dyn Fn(&[Record]) -> bool,
) -> Result<Read> {
    let deadline = Instant::now() + budget;
    let mut high = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, h) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .with_context(|| format!("cannot read the high watermark of {topic}/{p}"))?;
        high.insert(p, h);
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut out = Vec::new();
    while high
        .iter()
        .any(|(p, h)| next.get(p).copied().unwrap_or(0) < *h)
    {
        if Instant::now() > deadline || enough(&out) {
            return Ok(Read {
                records: out,
                complete: false,
            });
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.context("Kafka read error")?;
        next.insert(msg.partition(), msg.offset() + 1);
        let trade = match msg.payload() {
            None => Err("empty value".to_string()),
            Some(bytes) => v1::Trade::decode(bytes)
                .map_err(|e| e.to_string())
                .and_then(|w| Trade::try_from(&w).map_err(|e| e.to_string())),
        };
        out.push(Record {
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            trade,
        });
    }
    Ok(Read {
        records: out,
        complete: true,
    })
}
