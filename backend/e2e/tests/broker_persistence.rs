//! The test broker (`candles_testkit::Kafka`: Apache Kafka, data on disk) keeps what a Kafka
//! client relies on across a restart, checked with rdkafka alone before any service is involved
//! (so a full-stack failure after a broker restart is the stack's, not the harness's):
//!
//! - every record an idempotent producer got an acknowledgement for is in the topic exactly once,
//!   at the partition and offset of its acknowledgement, after a SIGTERM and after a `kill -9`;
//! - a producer that stays up while the broker restarts (records queued while it is down) gets
//!   them delivered once the broker is back, without duplicates;
//! - a fresh member of a consumer group resumes every partition exactly at the offset the group
//!   committed before the restart.
//!
//! Needs Apache Kafka's jars (scripts/install-test-deps.sh) and fails without them.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use candles_testkit::Kafka;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TOPIC: &str = "persist";
const PARTITIONS: i32 = 6;

/// An acknowledged record: partition, offset, value.
type Acked = (i32, i64, String);

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap()
}

/// Sends records `range` (key `k{i % 24}`, value `v{i}`) without waiting; the futures resolve
/// when the broker acknowledges them.
fn send(
    producer: &FutureProducer,
    range: std::ops::Range<u32>,
) -> Vec<(String, rdkafka::producer::DeliveryFuture)> {
    range
        .map(|i| {
            let (key, value) = (format!("k{}", i % 24), format!("v{i}"));
            let future = producer
                .send_result(FutureRecord::to(TOPIC).key(&key).payload(&value))
                .map_err(|(e, _)| e)
                .unwrap();
            (value, future)
        })
        .collect()
}

async fn acked(futures: Vec<(String, rdkafka::producer::DeliveryFuture)>) -> Vec<Acked> {
    let mut out = Vec::new();
    for (value, f) in futures {
        match f.await.unwrap() {
            Ok(d) => out.push((d.partition, d.offset, value)),
            Err((e, _)) => panic!("{value} was not acknowledged: {e}"),
        }
    }
    out
}

/// Drops an rdkafka client on a thread nobody joins (dropping one can hang: PITFALLS.md).
fn drop_detached<T: Send + 'static>(client: T) {
    std::thread::spawn(move || drop(client));
}

/// A member of the consumer group, with the next offset it expects per partition.
struct Member {
    consumer: BaseConsumer,
    group: String,
    next: BTreeMap<i32, i64>,
}

impl Member {
    /// Joins `group` as a fresh member that must resume each partition at `committed` (at 0
    /// where nothing was committed).
    fn join(brokers: &str, group: &str, committed: &BTreeMap<i32, i64>) -> Member {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        consumer.subscribe(&[TOPIC]).unwrap();
        Member {
            consumer,
            group: group.to_string(),
            next: committed.clone(),
        }
    }

    /// Reads `count` records; each must be the next one of its partition (no gap, no repeat).
    fn consume(&mut self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = 0;
        while got < count {
            assert!(
                Instant::now() < deadline,
                "group {}: only {got} of {count} records within 30 s (at {:?})",
                self.group,
                self.next
            );
            let Some(msg) = self.consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            // Errors while the broker restarts (e.g. "all brokers down") are transient.
            let msg = match msg {
                Ok(msg) => msg,
                Err(e) => {
                    eprintln!("group {}: {e}", self.group);
                    continue;
                }
            };
            let (p, o) = (msg.partition(), msg.offset());
            let expected = self.next.get(&p).copied().unwrap_or(0);
            assert_eq!(
                o, expected,
                "group {}, partition {p}: read offset {o}, expected {expected} (next offsets {:?})",
                self.group, self.next
            );
            self.next.insert(p, o + 1);
            got += 1;
        }
    }

    /// Commits the offsets after what it read and checks the broker's answer; returns them.
    fn commit(&self) -> BTreeMap<i32, i64> {
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in &self.next {
            tpl.add_partition_offset(TOPIC, p, Offset::Offset(o))
                .unwrap();
        }
        self.consumer.commit(&tpl, CommitMode::Sync).unwrap();
        let answer = self.consumer.committed(Duration::from_secs(10)).unwrap();
        for (&p, &o) in &self.next {
            let stored = answer
                .find_partition(TOPIC, p)
                .map(|e| e.offset())
                .unwrap_or(Offset::Invalid);
            assert_eq!(stored, Offset::Offset(o), "partition {p}: committed offset");
        }
        eprintln!("group {}: committed {:?}", self.group, self.next);
        self.next.clone()
    }

    /// Leaves the group (serving rdkafka's callbacks until the close completes), then drops the
    /// consumer on a thread nobody joins (dropping one can hang: PITFALLS.md).
    fn leave(self) {
        self.consumer.close_queue().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.consumer.closed() && Instant::now() < deadline {
            let _ = self.consumer.poll(Duration::from_millis(100));
        }
        drop_detached(self.consumer);
    }
}

/// Reads the whole topic (assigned, from the beginning) and checks it holds exactly `acked`.
fn assert_topic_is(brokers: &str, acked: &[Acked]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "persist-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut high = BTreeMap::new();
    for p in 0..PARTITIONS {
        let (_, h) = consumer
            .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
            .unwrap();
        high.insert(p, h);
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut read: Vec<Acked> = Vec::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while high
        .iter()
        .any(|(p, h)| next.get(p).copied().unwrap_or(0) < *h)
    {
        assert!(
            Instant::now() < deadline,
            "could not read the topic to its end {high:?} within 30 s: at {next:?}"
        );
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.unwrap();
        next.insert(msg.partition(), msg.offset() + 1);
        let value = String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned();
        read.push((msg.partition(), msg.offset(), value));
    }
    drop_detached(consumer);
    read.sort();
    let mut want = acked.to_vec();
    want.sort();
    let missing: Vec<_> = want.iter().filter(|r| !read.contains(r)).collect();
    let extra: Vec<_> = read.iter().filter(|r| !want.contains(r)).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && read.len() == want.len(),
        "topic != acknowledged records: {} read, {} acknowledged; missing {missing:?}; unexpected {extra:?}",
        read.len(),
        want.len()
    );
    eprintln!(
        "topic holds exactly the {} acknowledged records (high watermarks {high:?})",
        read.len()
    );
}

/// Stops the broker (SIGTERM, or `kill -9` when `!graceful`) while the producer queues
/// `range`, restarts it and returns the acknowledged records of `range`.
fn restart_while_producing(
    broker: &mut Kafka,
    graceful: bool,
    rt: &tokio::runtime::Runtime,
    producer: &FutureProducer,
    range: std::ops::Range<u32>,
) -> Vec<Acked> {
    if graceful {
        broker.stop();
    } else {
        broker.kill();
    }
    let queued = send(producer, range);
    std::thread::sleep(Duration::from_secs(1));
    broker.restart().unwrap();
    rt.block_on(acked(queued))
}

#[test]
fn persistent_broker_keeps_records_and_group_offsets_across_sigterm_and_kill9() {
    let started = Instant::now();
    // Kept when the test fails.
    let dir = tempfile::tempdir().unwrap().keep();
    eprintln!("broker log and database in {}", dir.display());
    let mut broker = Kafka::start_in(&dir).unwrap();
    broker.create_topic(TOPIC, PARTITIONS as u32).unwrap();
    let brokers = broker.brokers();
    let group = format!("persist-{}", std::process::id());
    let rt = tokio::runtime::Runtime::new().unwrap();
    // One idempotent producer for the whole test: it lives through every broker restart.
    let producer = producer(&brokers);
    let mut all = rt.block_on(acked(send(&producer, 0..300)));

    // A member that stays in the group while the broker restarts (SIGTERM) goes on where it was.
    let mut member = Member::join(&brokers, &group, &BTreeMap::new());
    member.consume(100);
    member.commit();
    all.extend(restart_while_producing(
        &mut broker,
        true,
        &rt,
        &producer,
        300..450,
    ));
    assert_topic_is(&brokers, &all);
    member.consume(100);
    let committed = member.commit();
    member.leave();

    // kill -9 with no member; a fresh member resumes at the committed offsets.
    all.extend(restart_while_producing(
        &mut broker,
        false,
        &rt,
        &producer,
        450..600,
    ));
    assert_topic_is(&brokers, &all);
    let mut member = Member::join(&brokers, &group, &committed);
    member.consume(100);
    member.commit();

    // kill -9 with a member in the group: it goes on where it was.
    all.extend(restart_while_producing(
        &mut broker,
        false,
        &rt,
        &producer,
        600..700,
    ));
    assert_topic_is(&brokers, &all);
    member.consume(100);
    let committed = member.commit();
    member.leave();

    // And a fresh member resumes at the offsets committed after the restarts.
    let mut member = Member::join(&brokers, &group, &committed);
    member.consume(100);
    member.leave();
    broker.check_running().unwrap();
    drop_detached(producer);
    eprintln!("done in {:?}", started.elapsed());
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
