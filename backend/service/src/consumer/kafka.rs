//! The Kafka clients of the consume loop and their I/O: the group consumer with its rebalance
//! context, the dead-letter producer, the plain client that answers watermark queries, the
//! metadata probe behind health, and the detached drop of the consumer on shutdown.

use crate::config::ServiceConfig;
use crate::status::DependencyStatus;
use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{FutureProducer, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a rebalance did, recorded by [`RebalanceContext`] and applied by the loop.
#[derive(Debug)]
pub enum Rebalanced {
    /// These partitions of the topic were assigned to this consumer.
    Assigned(Vec<i32>),
    /// These were taken away.
    Revoked(Vec<i32>),
}

/// Records rebalances for the consume loop (the callbacks run inside `recv()` on the loop's own
/// task, so the loop sees them before the next message).
pub struct RebalanceContext {
    topic: String,
    events: Mutex<Vec<Rebalanced>>,
}

impl RebalanceContext {
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }

    fn push(&self, event: Rebalanced) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }

    /// The rebalances since the last call, in order.
    pub fn take(&self) -> Vec<Rebalanced> {
        self.events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions = self.partitions(tpl);
            tracing::info!(?partitions, "partitions revoked");
            self.push(Rebalanced::Revoked(partitions));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = self.partitions(tpl);
                tracing::info!(?partitions, "partitions assigned");
                self.push(Rebalanced::Assigned(partitions));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(error = %e, ?offsets, "offset commit failed; it is retried with the next commit");
        }
    }
}

/// The group consumer.
pub type Kafka = StreamConsumer<RebalanceContext>;

/// The three Kafka clients of one consume loop.
pub struct Clients {
    /// The group consumer, subscribed to the topic.
    pub consumer: Arc<Kafka>,
    /// Writes dead letters; also probes the brokers for health.
    pub producer: FutureProducer,
    /// Answers the watermark queries (a plain client: no group, nothing to hang on drop).
    pub querier: Arc<BaseConsumer>,
}

/// Creates the clients from `config` and subscribes the consumer to the topic.
pub fn connect(config: &ServiceConfig) -> anyhow::Result<Clients> {
    let props = &config.kafka_properties;
    let context = RebalanceContext {
        topic: config.topic.clone(),
        events: Mutex::new(Vec::new()),
    };
    let consumer: Kafka = consumer_config(config)
        .create_with_context(context)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create a Kafka consumer for brokers {:?} (--brokers / CANDLES_BROKERS, --kafka-property): {}",
                config.brokers,
                props.redact(&e.to_string())
            )
        })?;
    consumer.subscribe(&[&config.topic]).with_context(|| {
        format!(
            "cannot subscribe to topic {:?} (--topic / CANDLES_TOPIC)",
            config.topic
        )
    })?;
    let producer: FutureProducer = candles_kafka::create(
        &client_config(
            config,
            "candles-service-dlq",
            &[("message.timeout.ms", "5000"), ("linger.ms", "0")],
        ),
        props,
        "the dead-letter producer",
    )?;
    let querier: BaseConsumer = candles_kafka::create(
        &client_config(config, "candles-service-watermarks", &[]),
        props,
        "the watermark client",
    )?;
    tracing::info!(brokers = %config.brokers, topic = %config.topic, group = %config.group, "consuming trades");
    Ok(Clients {
        consumer: Arc::new(consumer),
        producer,
        querier: Arc::new(querier),
    })
}

/// A client of the brokers named `client_id` with `settings`, the user's properties applied last.
fn client_config(
    config: &ServiceConfig,
    client_id: &str,
    settings: &[(&str, &str)],
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("client.id", client_id);
    for (key, value) in settings {
        c.set(*key, *value);
    }
    config.kafka_properties.apply(&mut c);
    c
}

/// The group consumer's configuration: manual commits, from the earliest offset, short fetch
/// waits (the user's properties are applied last).
fn consumer_config(config: &ServiceConfig) -> ClientConfig {
    let mut c = candles_kafka::clients::trade_consumer(
        &config.brokers,
        &config.group,
        "candles-service",
        config.session_timeout,
    );
    config.kafka_properties.apply(&mut c);
    c
}

/// Where the consumer stands in `partition` of `topic`: the next offset it will read.
pub fn position(consumer: &Kafka, topic: &str, partition: i32) -> Option<i64> {
    let tpl = consumer.position().ok()?;
    match tpl.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// `offsets` ((partition, next offset to read) of `topic`) as a list to commit; `None` when one
/// cannot be added.
fn commit_list(topic: &str, offsets: &[(i32, i64)]) -> Option<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for &(partition, offset) in offsets {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .ok()?;
    }
    Some(tpl)
}

/// Commits `offsets` ((partition, next offset to read) of `topic`) without waiting; `false` when
/// the commit could not be sent (the caller retries with the next one).
pub fn commit(consumer: &Kafka, topic: &str, offsets: &[(i32, i64)]) -> bool {
    let sent = commit_list(topic, offsets)
        .ok_or_else(|| "invalid offset".to_string())
        .and_then(|tpl| {
            consumer
                .commit(&tpl, CommitMode::Async)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = &sent {
        tracing::debug!(error = %e, "offset commit not sent; retried with the next one");
    }
    sent.is_ok()
}

/// Commits `offsets` and waits for the broker, at most 2 s (on a blocking thread of `tracker`:
/// a commit to an unreachable broker blocks); the outcome is logged.
pub async fn commit_and_wait(
    consumer: Arc<Kafka>,
    topic: &str,
    offsets: Vec<(i32, i64)>,
    tracker: &TaskTracker,
) {
    let Some(tpl) = commit_list(topic, &offsets).filter(|tpl| tpl.count() > 0) else {
        return;
    };
    let commit = tracker.spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync));
    match tokio::time::timeout(Duration::from_secs(2), commit).await {
        Ok(Ok(Ok(()))) => tracing::info!("offsets committed"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "final offset commit failed"),
        _ => tracing::warn!("final offset commit did not finish within 2s"),
    }
}

/// Whether a consumer error says the brokers cannot be reached (not a problem with one record).
pub fn is_transport_error(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::BrokerTransportFailure | C::AllBrokersDown)
    )
}

/// Whether a produce error means the broker will never take this record (retrying is useless).
pub fn is_refused_record(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::InvalidRecord
                | C::MessageBatchTooLarge
        )
    )
}

/// Asks Kafka for metadata every second and records whether it answered, until `stop`.
pub async fn probe(
    producer: FutureProducer,
    status: Arc<DependencyStatus>,
    stop: CancellationToken,
) {
    loop {
        let p = producer.clone();
        let up = tokio::task::spawn_blocking(move || {
            p.client()
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok()
        })
        .await
        .unwrap_or(false);
        status.set_kafka(up);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Leaves the group and drops the clients where a hang cannot block anyone: librdkafka's destroy
/// can hang (see PITFALLS.md), so they are dropped on a detached thread, waited for at most a
/// second.
pub async fn close(clients: Clients) {
    let Clients {
        consumer,
        producer,
        querier,
    } = clients;
    consumer.unsubscribe();
    // Serve the revocation callback so the group learns we left.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while tokio::time::Instant::now() < deadline {
        if tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .is_err()
        {
            break;
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = tx.send(());
        drop(producer);
        drop(querier);
    });
    if tokio::time::timeout(Duration::from_secs(1), rx)
        .await
        .is_err()
    {
        tracing::debug!("the Kafka consumer is still closing; not waiting for it");
    }
}
