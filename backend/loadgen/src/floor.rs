//! `candles-loadgen kafka-floor`: Apache Kafka's own produce-to-consume latency on this machine,
//! with the stack's client settings, as the floor under the stack's latencies.
//!
//! One broker (the tests' Apache Kafka, `candles_testkit::Kafka`) serves every rate; each rate
//! gets a topic of its own with `--partitions` partitions. A producer with the connector's
//! settings sends records keyed by pair (three keys, like the connectors) in 5 ms batches (like
//! the simulators) at the rate; a consumer with the service's settings, in a consumer group,
//! reads them. Each record carries its send time (µs since the epoch, the first 8 bytes); the
//! latency of a record is its receive time minus its send time, over the records sent during
//! the measured interval (after `--warmup`). Producer and consumer share this process and its
//! clock, so no clock offset enters.

use crate::stats::Summary;
use anyhow::{Context as _, Result, bail};
use candles_core::Micros;
use candles_kafka::clients;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Settings of a floor run.
#[derive(Clone, Debug)]
pub struct FloorSettings {
    /// Records per second, one run each.
    pub rates: Vec<f64>,
    /// Measured interval per rate.
    pub duration: Duration,
    /// Producing before the measured interval begins.
    pub warmup: Duration,
    /// Partitions of each rate's topic.
    pub partitions: u32,
    /// Output directory (results and the broker's data and log).
    pub out: PathBuf,
}

/// Result of one rate.
#[derive(Clone, Debug, Serialize)]
pub struct FloorResult {
    /// Requested records per second.
    pub target_rate: f64,
    /// Records sent in the measured interval.
    pub sent: u64,
    /// Of those, records the consumer received.
    pub received: u64,
    /// Produce-to-consume latency, ms.
    pub latency_ms: Summary,
}

/// The bytes of a record: about a `candles.v1.Trade` on the wire.
const RECORD_BYTES: usize = 96;

/// The keys the connectors use (the canonical pairs).
const KEYS: [&str; 3] = ["BTC-USDT", "ETH-USDT", "SOL-USDT"];

/// The connector's producer (`candles_kafka::clients::trade_producer`).
fn producer(brokers: &str) -> Result<FutureProducer> {
    clients::trade_producer(brokers, "candles-loadgen-floor")
        .create()
        .context("creating the floor's producer")
}

/// The service's consumer (`candles_kafka::clients::trade_consumer`, at the service's default
/// session timeout).
fn consumer(brokers: &str, group: &str) -> Result<StreamConsumer> {
    clients::trade_consumer(
        brokers,
        group,
        "candles-loadgen-floor",
        clients::DEFAULT_SESSION_TIMEOUT,
    )
    .create()
    .context("creating the floor's consumer")
}

/// Runs every rate on one broker and writes `kafka-floor.json` to `settings.out`.
pub fn run(rt: &tokio::runtime::Runtime, settings: &FloorSettings) -> Result<Vec<FloorResult>> {
    let dir = settings.out.join("kafka-floor");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let kafka = candles_testkit::Kafka::start_in(&dir.join("kafka"))?;
    let mut results = Vec::new();
    for &rate in &settings.rates {
        println!(
            "== kafka-floor: {rate} records/s, {} partitions, {:?} measured",
            settings.partitions, settings.duration
        );
        let topic = format!("floor-{rate}");
        kafka.create_topic(&topic, settings.partitions)?;
        let r = run_rate(rt, settings, &kafka.brokers(), &topic, rate)?;
        println!(
            "   sent {} received {}; produce to consume ms {}",
            r.sent,
            r.received,
            r.latency_ms.brief()
        );
        results.push(r);
        let path = settings.out.join("kafka-floor.json");
        std::fs::write(&path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("   results: {}", path.display());
    }
    Ok(results)
}

/// What the consumer task collects: latencies (µs) of the records sent at or after `from_us`.
struct Received {
    latencies_us: Vec<f64>,
    measured: u64,
}

fn run_rate(
    rt: &tokio::runtime::Runtime,
    s: &FloorSettings,
    brokers: &str,
    topic: &str,
    rate: f64,
) -> Result<FloorResult> {
    let _guard = rt.enter(); // rdkafka's clients need the runtime's context
    let consumer = consumer(brokers, &format!("{topic}-group"))?;
    consumer.subscribe(&[topic]).context("subscribing")?;
    let consumer = Arc::new(consumer);
    let from_us = Arc::new(AtomicU64::new(u64::MAX));
    let got = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let task = rt.spawn(consume(
        consumer.clone(),
        from_us.clone(),
        got.clone(),
        stop.clone(),
    ));
    let producer = producer(brokers)?;
    let mut sent = produce(&producer, topic, rate, s.warmup, 0)?;
    from_us.store(Micros::now().0 as u64, Ordering::Relaxed);
    let measured = produce(&producer, topic, rate, s.duration, sent)? - sent;
    sent += measured;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let received = rt.block_on(task).ok();
    // rd_kafka_destroy can hang: drop the clients on a thread, waiting up to 5 s for it.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop((producer, consumer));
        let _ = done_tx.send(());
    });
    let _ = done_rx.recv_timeout(Duration::from_secs(5));
    let r = received.unwrap_or(Received {
        latencies_us: Vec::new(),
        measured: 0,
    });
    Ok(FloorResult {
        target_rate: rate,
        sent: measured,
        received: r.measured,
        latency_ms: Summary::of(r.latencies_us.iter().map(|us| us / 1000.0).collect()),
    })
}

/// Sends records at `rate` for `length` in 5 ms batches, each carrying its send time; `sent`
/// records were sent before. Returns the total sent.
fn produce(
    producer: &FutureProducer,
    topic: &str,
    rate: f64,
    length: Duration,
    mut sent: u64,
) -> Result<u64> {
    let start = Instant::now();
    let first = sent;
    let mut payload = vec![0u8; RECORD_BYTES];
    while start.elapsed() < length {
        let due = first + (rate * start.elapsed().as_secs_f64()) as u64;
        while sent < due {
            payload[..8].copy_from_slice(&Micros::now().0.to_le_bytes());
            let key = KEYS[(sent % KEYS.len() as u64) as usize];
            let mut record = FutureRecord::to(topic).key(key).payload(&payload);
            loop {
                match producer.send_result(record) {
                    Ok(_delivery) => break,
                    Err((_, back)) if start.elapsed() < length + Duration::from_secs(5) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => bail!("cannot produce: {e}"),
                }
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(sent)
}

/// Receives records until `stop` is set, counting all in `got` and keeping the latency of
/// those sent at or after `from_us`.
async fn consume(
    consumer: Arc<StreamConsumer>,
    from_us: Arc<AtomicU64>,
    got: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Received {
    let mut out = Received {
        latencies_us: Vec::new(),
        measured: 0,
    };
    while !stop.load(Ordering::Relaxed) {
        let wait = tokio::time::timeout(Duration::from_millis(100), consumer.recv());
        let Ok(Ok(msg)) = wait.await else {
            continue;
        };
        let now = Micros::now().0;
        got.fetch_add(1, Ordering::Relaxed);
        let Some(sent) = msg
            .payload()
            .and_then(|p| p.get(..8))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(i64::from_le_bytes)
        else {
            continue;
        };
        if sent as u64 >= from_us.load(Ordering::Relaxed) {
            out.measured += 1;
            out.latencies_us.push((now - sent) as f64);
        }
    }
    out
}
