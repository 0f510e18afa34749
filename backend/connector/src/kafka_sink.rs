//! [`KafkaSink`]: publishes trades to a Kafka topic, each acknowledged by every in-sync replica
//! (feature `kafka`).

use crate::kafka::KafkaProperties;
use crate::sink::TradeSink;
use crate::{resume, telemetry};
use anyhow::Context;
use candles_core::Trade;
use candles_core::retry::Doubling;
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Publishes trades to a Kafka topic: key = canonical pair (`BTC-USDT`), value = protobuf
/// `candles.v1.Trade`, record timestamp = trade time.
///
/// The producer is idempotent (`enable.idempotence=true`, `acks=all`, at most 5 requests in
/// flight), which keeps each partition's order and drops broker-side duplicates of librdkafka's
/// own retries. `publish` enqueues the whole batch in order, then awaits every acknowledgement.
/// A delivery that still fails (after librdkafka's retries, `message.timeout.ms`) is counted
/// (`connector_kafka_errors_total`) and sent again until it succeeds — but only after the tail
/// of the topic is read back ([`crate::resume::already_published`]): a delivery can fail after
/// the broker wrote the record (the acknowledgement was lost with the connection), and those
/// trades are not sent twice. In that rare case a re-sent trade may land after later trades of
/// the same batch. A producer that delivers
/// nothing for several retry rounds in a row, or reports a fatal error, is replaced. Partitioning is
/// `murmur2_random`, the Java client's, so any Kafka client agrees on a pair's partition.
#[derive(Clone)]
pub struct KafkaSink {
    /// The producer in use; replaced when it stops delivering (see [`KafkaSink::publish`]).
    producer: Arc<RwLock<FutureProducer>>,
    /// Its settings, to build a replacement.
    config: ClientConfig,
    /// `host:port,...`, to read the topic back after a failed delivery.
    brokers: String,
    /// The user's client properties (also used to read the topic back).
    properties: KafkaProperties,
    topic: String,
    errors: Arc<AtomicU64>,
}

/// Retry rounds in a row without a single delivery after which the producer is replaced.
const STUCK_ROUNDS: u32 = 3;

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// A producer for `brokers` (`host:port,...`) writing to `topic`.
    pub fn new(brokers: &str, topic: &str) -> anyhow::Result<Self> {
        Self::with_config(brokers, topic, &[])
    }

    /// Like [`KafkaSink::new`], with extra librdkafka settings (applied last).
    pub fn with_config(brokers: &str, topic: &str, extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut properties = KafkaProperties::new();
        for (k, v) in extra {
            properties.push(*k, *v);
        }
        Self::with_properties(brokers, topic, &properties)
    }

    /// Like [`KafkaSink::new`], with the user's client properties (`--kafka-property`, applied
    /// after the connector's own settings; also used by the read-back consumers). A property
    /// librdkafka refuses is an error naming it (secret values scrubbed).
    pub fn with_properties(
        brokers: &str,
        topic: &str,
        properties: &KafkaProperties,
    ) -> anyhow::Result<Self> {
        let mut cfg = crate::kafka::clients::trade_producer(brokers, "candles-connector");
        properties.apply(&mut cfg);
        let producer: FutureProducer = crate::kafka::create(
            &cfg,
            properties,
            &format!("a Kafka producer for brokers {brokers:?}"),
        )?;
        Ok(KafkaSink {
            producer: Arc::new(RwLock::new(producer)),
            config: cfg,
            brokers: brokers.to_string(),
            properties: properties.clone(),
            topic: topic.to_string(),
            errors: Arc::default(),
        })
    }

    fn producer(&self) -> FutureProducer {
        match self.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Waits until every enqueued record is delivered (or `timeout` passes).
    pub async fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        let producer = self.producer();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .context("the flush task failed")?
            .with_context(|| format!("flushing the Kafka producer within {timeout:?}"))
    }

    /// Delivery errors so far (each was retried).
    pub fn delivery_errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// A producer that cannot deliver any more (a fatal idempotence error, or a broker that lost
    /// the producer's state and times every record out) is replaced by a fresh one. The old one
    /// is dropped on a blocking thread: librdkafka's teardown may wait.
    fn replace_producer(&self, why: &str) -> anyhow::Result<()> {
        tracing::warn!(topic = %self.topic, why, "replacing the Kafka producer");
        let fresh: FutureProducer = crate::kafka::create(
            &self.config,
            &self.properties,
            "a replacement Kafka producer",
        )?;
        let old = match self.producer.write() {
            Ok(mut p) => std::mem::replace(&mut *p, fresh),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), fresh),
        };
        std::thread::spawn(move || drop(old));
        Ok(())
    }

    /// Removes from `pending` the trades the topic already holds (see [`KafkaSink::publish`]).
    async fn drop_already_published(&self, pending: &mut Vec<Trade>) -> anyhow::Result<()> {
        let (brokers, topic, trades) = (self.brokers.clone(), self.topic.clone(), pending.clone());
        let properties = self.properties.clone();
        let present = tokio::task::spawn_blocking(move || {
            resume::already_published(
                &brokers,
                &topic,
                &properties,
                &trades,
                Duration::from_secs(30),
            )
        })
        .await
        .context("the read-back task failed")??;
        if !present.is_empty() {
            tracing::info!(topic = %self.topic, written = present.len(),
                "failed deliveries were written after all; not sending them again");
            pending.retain(|t| !present.contains(&(t.exchange, t.pair, t.id)));
        }
        Ok(())
    }

    fn count_errors(&self, failed: usize, error: &KafkaError) {
        self.errors.fetch_add(failed as u64, Ordering::Relaxed);
        metrics::counter!(telemetry::KAFKA_ERRORS, "topic" => self.topic.clone())
            .increment(failed as u64);
        tracing::warn!(topic = %self.topic, failed, %error, "Kafka deliveries failed; will retry");
    }
}

/// The first and longest wait between two delivery rounds (and read-back attempts).
const RETRY_WAIT: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

impl KafkaSink {
    /// Enqueues every trade of `pending` in order (waiting while librdkafka's queue is full).
    async fn enqueue(
        &self,
        producer: &FutureProducer,
        pending: &[Trade],
    ) -> anyhow::Result<Vec<(Trade, DeliveryFuture)>> {
        let mut deliveries = Vec::with_capacity(pending.len());
        for t in pending {
            let key = t.pair.to_string();
            let value = candles_proto::v1::Trade::from(t).encode_to_vec();
            let mut record = FutureRecord::to(&self.topic)
                .key(&key)
                .payload(&value)
                .timestamp(t.time.as_millis());
            let delivery = loop {
                match producer.send_result(record) {
                    Ok(delivery) => break delivery,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((e, _)) => {
                        return Err(e)
                            .context(format!("enqueueing a trade for topic {:?}", self.topic));
                    }
                }
            };
            deliveries.push((*t, delivery));
        }
        Ok(deliveries)
    }

    /// Awaits every acknowledgement: the trades that failed, and the last error.
    async fn acknowledged(
        deliveries: Vec<(Trade, DeliveryFuture)>,
    ) -> (Vec<Trade>, Option<KafkaError>) {
        let mut failed = Vec::new();
        let mut last_error = None;
        for (t, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    last_error = Some(e);
                    failed.push(t);
                }
                Err(_) => {
                    last_error = Some(KafkaError::Canceled);
                    failed.push(t);
                }
            }
        }
        (failed, last_error)
    }

    /// After a failed round: counts it and replaces a producer that reports a fatal error or
    /// has delivered nothing for [`STUCK_ROUNDS`] rounds (`stuck` counts those rounds).
    fn after_failure(
        &self,
        producer: &FutureProducer,
        failed: usize,
        pending: usize,
        error: &KafkaError,
        stuck: &mut u32,
    ) -> anyhow::Result<()> {
        self.count_errors(failed, error);
        *stuck = if failed == pending { *stuck + 1 } else { 0 };
        if let Some((code, reason)) = producer.client().fatal_error() {
            self.replace_producer(&format!("fatal error {code:?}: {reason}"))?;
            *stuck = 0;
        } else if *stuck >= STUCK_ROUNDS {
            self.replace_producer(&format!("{stuck} retry rounds without a delivery"))?;
            *stuck = 0;
        }
        Ok(())
    }
}

impl TradeSink for KafkaSink {
    async fn publish(&mut self, trades: &[Trade]) -> anyhow::Result<()> {
        let mut pending: Vec<Trade> = trades.to_vec();
        let mut wait = Doubling::new(RETRY_WAIT.0, RETRY_WAIT.1);
        let mut stuck = 0;
        // Set after a failed round: what failed may have been written anyway.
        let mut unverified = false;
        while !pending.is_empty() {
            if unverified {
                if let Err(e) = self.drop_already_published(&mut pending).await {
                    tracing::warn!(topic = %self.topic, error = %format!("{e:#}"),
                        "cannot read the topic back yet; will retry before sending again");
                    tokio::time::sleep(wait.next_delay()).await;
                    continue;
                }
                unverified = false;
                if pending.is_empty() {
                    break;
                }
            }
            let producer = self.producer();
            let deliveries = self.enqueue(&producer, &pending).await?;
            let (failed, last_error) = Self::acknowledged(deliveries).await;
            if let Some(error) = last_error {
                self.after_failure(&producer, failed.len(), pending.len(), &error, &mut stuck)?;
                tokio::time::sleep(wait.next_delay()).await;
                unverified = true;
            }
            pending = failed;
        }
        Ok(())
    }
}
