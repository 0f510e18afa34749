//! Reading a topic back, straight from the broker: every record from the beginning of every
//! partition up to the end it had when reading started ([`read`]), or everything that arrives
//! until told to stop ([`tail`]), and the records a topic holds ([`records_in`]). Records of the
//! trades topic decode into [`Record::trade`].

use anyhow::{Context as _, Result};
use candles_core::Trade;
use candles_proto::v1;
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

impl Record {
    fn decode(msg: &BorrowedMessage<'_>) -> Record {
        let trade = match msg.payload() {
            None => Err("empty value".to_string()),
            Some(bytes) => v1::Trade::decode(bytes)
                .map_err(|e| e.to_string())
                .and_then(|w| Trade::try_from(&w).map_err(|e| e.to_string())),
        };
        Record {
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            trade,
        }
    }
}

/// What [`read_until`] read.
#[derive(Clone, Debug, Default)]
pub struct Read {
    /// The records, in read order.
    pub records: Vec<Record>,
    /// Whether every partition was read to the end it had when reading started (false when the
    /// time budget ran out or `enough` said stop).
    pub complete: bool,
}

/// A consumer that commits nothing, assigned every partition of `topic` from the beginning.
fn assigned(brokers: &str, group: &str, topic: &str, partitions: i32) -> Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "52428800")
        .set("log_level", "3")
        .create()
        .context("cannot create a Kafka consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer
        .assign(&tpl)
        .with_context(|| format!("assigning the partitions of {topic}"))?;
    Ok(consumer)
}

/// Reads `topic` from the beginning towards the end every partition had when reading started,
/// for at most `budget`, handing each record to `visit` until it returns false. Returns whether
/// every partition was read to that end.
pub fn read(
    brokers: &str,
    topic: &str,
    partitions: i32,
    budget: Duration,
    visit: impl FnMut(Record) -> bool,
) -> Result<bool> {
    let group = format!("testkit-reader-{}", std::process::id());
    let consumer = assigned(brokers, &group, topic, partitions)?;
    let result = read_with(&consumer, topic, partitions, Instant::now() + budget, visit);
    crate::kafka::drop_detached(consumer);
    result
}

fn read_with(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
    deadline: Instant,
    mut visit: impl FnMut(Record) -> bool,
) -> Result<bool> {
    let high = watermarks(consumer, topic, partitions)?;
    let mut next = vec![0i64; high.len()];
    while next.iter().zip(&high).any(|(n, (_, h))| n < h) {
        if Instant::now() > deadline {
            return Ok(false);
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.context("Kafka read error")?;
        if let Some(n) = next.get_mut(msg.partition() as usize) {
            *n = (*n).max(msg.offset() + 1);
        }
        if !visit(Record::decode(&msg)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// [`read`], collecting the records, stopping early when `enough(records so far)` says so.
pub fn read_until(
    brokers: &str,
    topic: &str,
    partitions: i32,
    budget: Duration,
    enough: &dyn Fn(&[Record]) -> bool,
) -> Result<Read> {
    let mut records = Vec::new();
    let mut stopped = enough(&records);
    let complete = !stopped
        && read(brokers, topic, partitions, budget, |r| {
            records.push(r);
            stopped = enough(&records);
            !stopped
        })?;
    Ok(Read { records, complete })
}

/// Tails `topic` from the beginning on a thread of its own, handing `state` and every record to
/// `visit`, until `stop` is set; the thread returns the state.
pub fn tail<S: Send + 'static>(
    brokers: &str,
    topic: &str,
    partitions: i32,
    stop: Arc<AtomicBool>,
    mut state: S,
    visit: impl Fn(&mut S, Record) + Send + 'static,
) -> Result<std::thread::JoinHandle<S>> {
    let group = format!("testkit-tail-{}", std::process::id());
    let consumer = assigned(brokers, &group, topic, partitions)?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(msg)) = consumer.poll(Duration::from_millis(100)) {
                visit(&mut state, Record::decode(&msg));
            }
        }
        crate::kafka::drop_detached(consumer);
        state
    }))
}

/// (low, high) watermark of every partition of `topic`.
fn watermarks(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Result<Vec<(i64, i64)>> {
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .with_context(|| format!("cannot read the watermarks of {topic}/{p}"))
        })
        .collect()
}

/// Σ (high − low watermark) over the partitions of `topic`: the records the broker holds (with
/// idempotent producers and the producers stopped, the records they had acknowledged).
pub fn records_in(brokers: &str, topic: &str, partitions: i32) -> Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("log_level", "3")
        .create()
        .context("creating a Kafka client for watermark queries")?;
    let result = watermarks(&consumer, topic, partitions);
    crate::kafka::drop_detached(consumer);
    Ok(result?.iter().map(|(low, high)| high - low).sum())
}
