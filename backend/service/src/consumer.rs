//! The Kafka side: trades in, one candle engine per assigned partition, finals and live updates
//! out to Redis, offsets committed only behind published candles.
//!
//! # Offsets (DESIGN.md "Scaling and failure")
//! Auto-commit is off. For each partition the pipeline remembers, per open window, the first
//! offset of a trade applied to it. After the partition's finalized candles are published, it
//! commits the smallest such offset among windows not yet finalized and published (or the next
//! offset to read when none is open). Whatever dies — this process with `kill -9`, or a
//! partition lost in a rebalance — the next owner re-reads every trade of every window that was
//! not published, and publish-once in Redis ([`crate::store`]) makes the replay harmless.
//!
//! # Rebalances
//! A [`ConsumerContext`] records assignments and revocations; the loop applies them before the
//! next message. A revoked partition's engine is dropped *without* publishing its open windows
//! (the next owner re-reads and publishes them). An assigned partition starts with an empty
//! engine; the first trade of each pair seeds the engine from the pair's last final candles in
//! Redis ([`Engine::seed`]), so flat candles continue and published windows are not rebuilt.
//!
//! # The wall clock only runs as far as the consumer has read
//! With the wall clock, a window may only be finalized once every trade produced before its end
//! plus grace has been read, whatever the consumer was doing meanwhile (catching up after an
//! assignment, starved of CPU, or cut off from a broker). So the pipeline asks the broker for the
//! assigned partitions' high watermarks (one ListOffsets request): once the consumer has read up
//! to the watermark a query returned, everything produced before that query started has been
//! read, and the partition's clock may move to that instant (never beyond the wall clock). When
//! Kafka is unreachable the clock stops instead of closing windows as empty, and resumes with the
//! right trades when Kafka is back. The event clock needs no such guard.
//!
//! A query starts at each window's end plus grace (and every 100 ms besides, for catch-up and the
//! lag gauge); the windows are finalized and published the moment its answer is confirmed, in the
//! answer's handler or at the message that reads up to the watermark, so a final candle leaves a
//! few milliseconds after it may.
//!
//! # Live updates
//! A trade that changes an in-progress candle makes live updates due: at once when none were
//! published for `--update-interval`, else when that interval has passed since the last ones
//! (leading and trailing edge). Every in-progress candle that changed meanwhile goes out then.
//!
//! # Dead letters and rejected trades
//! A record that is not a valid `candles.v1.Trade`, or whose trade [`crate::admission`] refuses
//! as misrouted (key ≠ pair) or implausibly dated, goes to the dead-letter topic with its key and
//! value and a header `error` saying why (plus `source.topic`, `source.partition`,
//! `source.offset`); it is counted, and the partition carries on past it. A trade of a pair this
//! server does not serve is counted and skipped. Nothing from outside is echoed whole: errors are
//! excerpts, a value over [`DLQ_MAX_VALUE`] is dead-lettered cut (header `value.bytes` gives
//! its length), and a dead letter the broker refuses (too large, invalid) or that still fails
//! after [`DLQ_ATTEMPTS`] tries is counted and skipped: one record never stops the partition.
//! Log lines about such records are rate-limited.
//!
//! # Shutdown
//! On cancel the loop stops consuming, finalizes nothing new, publishes the finals it already
//! holds, commits, unsubscribes, and drops the consumer on a detached thread (librdkafka's
//! destroy can hang: see PITFALLS.md), all within a few seconds.

use crate::admission;
use crate::config::ServiceConfig;
use crate::metrics as m;
use crate::status::DependencyStatus;
use crate::store::Store;
use anyhow::Context as _;
use candles_core::bounds::LogLimit;
use candles_core::{Candle, ClockMode, Engine, EngineConfig, Micros, Outcome, Pair, Source, Trade};
use candles_proto::v1;
use prost::Message as _;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What a rebalance did, recorded by [`RebalanceContext`] and applied by the loop.
#[derive(Debug)]
enum Rebalanced {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Records rebalances for the consume loop (the callbacks run inside `recv()` on the loop's own
/// task, so the loop sees them before the next message).
struct RebalanceContext {
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

    fn take(&self) -> Vec<Rebalanced> {
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

type Kafka = StreamConsumer<RebalanceContext>;

/// Watermark answers kept per partition while the consumer reads up to them.
const MAX_PENDING_ANSWERS: usize = 8;

/// How often high watermarks are asked for between finalization instants: catch-up progress after
/// an assignment, and the lag gauge.
const WATERMARK_EVERY: Duration = Duration::from_millis(100);

/// What to do with a record at `offset` when `expected` is the next offset to read.
#[derive(Debug, PartialEq, Eq)]
enum Continuity {
    /// The next record, or one after a hole: process it.
    Next,
    /// Already read (delivered again after a seek or a rebalance): skip it.
    Seen,
}

/// Decides how a record fits its partition's offsets. Kafka serves a partition's records in
/// offset order; a hole is legitimate (a compacted record, a transaction marker) and is passed
/// at once (DESIGN.md "Holes in a partition's offsets").
fn continuity(expected: Option<i64>, offset: i64) -> Continuity {
    match expected {
        Some(expected) if offset < expected => Continuity::Seen,
        _ => Continuity::Next,
    }
}

/// Kafka was unreachable. Trades that were on their way meanwhile (buffered in the connectors'
/// producers) reach the topic only after it is back, later than the grace allows for normal
/// transit; so the time Kafka was away does not count: partitions' clocks stay where they were
/// until Kafka has answered for a whole grace period again, which gives the delayed trades the
/// same grace as any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// No answer yet.
    Away,
    /// Answering again since then.
    BackSince(Instant),
}

impl Outage {
    /// The state after a watermark round that did (`answered`) or did not reach Kafka; `None`
    /// when the outage is over and answers confirm again.
    fn after_round(
        this: Option<Outage>,
        answered: bool,
        now: Instant,
        grace: Duration,
    ) -> Option<Outage> {
        match (this, answered) {
            (_, false) => Some(Outage::Away),
            (None, true) => None,
            (Some(Outage::Away), true) => Some(Outage::BackSince(now)),
            (Some(Outage::BackSince(since)), true) if now.duration_since(since) < grace => {
                Some(Outage::BackSince(since))
            }
            (Some(Outage::BackSince(_)), true) => None,
        }
    }
}

/// A dead-lettered record's value is cut to this many bytes (the broker's default record limit is
/// 1 MB; the cut keeps the evidence without echoing a huge record).
pub const DLQ_MAX_VALUE: usize = 64 * 1024;

/// Tries to write one dead letter before it is counted and skipped (about 10 s with the backoff).
pub const DLQ_ATTEMPTS: u32 = 8;

/// Log lines about bad records: at most this many per [`LOG_PERIOD`] per kind.
const LOG_LINES: u32 = 5;
const LOG_PERIOD: Duration = Duration::from_secs(10);

/// Housekeeping: rebalances, retries of held finals, commits.
const TICK: Duration = Duration::from_millis(50);

/// The first instant after `now` at which a window becomes final (its end plus the grace).
fn next_finalization(engine: &EngineConfig, now: Micros) -> Micros {
    let start = engine.interval.window_start(Micros(now.0 - engine.grace.0));
    Micros(engine.interval.window_end(start).0 + engine.grace.0)
}

/// The tokio instant of the wall-clock instant `at` (the query it triggers waits out any
/// remainder: it must start at or after `at`).
fn instant_of(at: Micros) -> tokio::time::Instant {
    let wait = (at.0 - Micros::now().0).max(0);
    tokio::time::Instant::now() + Duration::from_micros(wait.unsigned_abs())
}

/// One assigned partition: its engine and the bookkeeping that decides its committed offset.
struct PartitionState {
    partition: i32,
    engine: Engine,
    /// Window start → first offset of a trade applied to it, for windows not yet published.
    open: BTreeMap<Micros, i64>,
    /// Next offset to read (last seen + 1).
    next_offset: Option<i64>,
    /// Last offset committed by this owner.
    committed: Option<i64>,
    /// Finalized candles not yet published, in order.
    pending: VecDeque<Candle>,
    /// Pairs already seeded from Redis → the composite's last published window start.
    seeded: HashMap<Pair, Option<Micros>>,
    /// Everything produced to the partition before this instant has been read: the partition's
    /// wall clock may not run past it. `None` until first confirmed.
    confirmed_at: Option<Micros>,
    /// Watermark answers (asked at, high watermark) awaiting `next_offset >= high`, oldest first.
    confirming: VecDeque<(Micros, i64)>,
    /// The event clock needs no confirmation.
    event_clock: bool,
    /// Distinguishes this assignment's watermark answers from stale ones.
    generation: u64,
}

impl PartitionState {
    fn new(config: &ServiceConfig, partition: i32, generation: u64) -> PartitionState {
        PartitionState {
            partition,
            engine: Engine::new(config.engine),
            open: BTreeMap::new(),
            next_offset: None,
            committed: None,
            pending: VecDeque::new(),
            seeded: HashMap::new(),
            confirmed_at: None,
            confirming: VecDeque::new(),
            // The event clock finalizes by trade time: replaying old trades is what it is for.
            event_clock: config.engine.clock == ClockMode::Event,
            generation,
        }
    }

    /// Whether the engine may finalize at all (it has read everything up to some recent instant).
    fn caught_up(&self) -> bool {
        self.event_clock || self.confirmed_at.is_some()
    }

    /// The clock to finalize by: the wall clock, held back to what has been read.
    fn clock(&self, now: Micros) -> Option<Micros> {
        if self.event_clock {
            return Some(now);
        }
        self.confirmed_at.map(|c| c.min(now))
    }

    /// Records a watermark answer `(asked_at, high)` given the consumer's `position`; `true`
    /// when the partition's clock moved.
    fn on_watermark(&mut self, asked_at: Micros, high: i64, position: Option<i64>) -> bool {
        if high <= 0 || position.is_some_and(|p| p >= high) {
            return self.confirm(asked_at);
        }
        // Answers are kept in the order they were asked; each is confirmed once read past.
        if self.confirming.back().is_none_or(|&(t, _)| asked_at > t) {
            if self.confirming.len() == MAX_PENDING_ANSWERS {
                // Keep the oldest (satisfied first) and the newest; drop one in between.
                self.confirming.remove(MAX_PENDING_ANSWERS / 2);
            }
            self.confirming.push_back((asked_at, high));
        }
        false
    }

    /// The consumer reached `position`: confirms the watermark answers it satisfies; `true` when
    /// the partition's clock moved.
    fn on_position(&mut self, position: i64) -> bool {
        let mut moved = false;
        while let Some(&(asked_at, high)) = self.confirming.front() {
            if position < high {
                break;
            }
            self.confirming.pop_front();
            moved |= self.confirm(asked_at);
        }
        moved
    }

    fn confirm(&mut self, asked_at: Micros) -> bool {
        if self.confirmed_at.is_none() {
            tracing::info!(
                partition = self.partition,
                "caught up; finalizing by the wall clock"
            );
        }
        if self.confirmed_at.is_none_or(|c| asked_at > c) {
            self.confirmed_at = Some(asked_at);
            return true;
        }
        false
    }

    /// The offset below which every trade is in a published candle (or was late / dead-lettered).
    fn safe_offset(&self) -> Option<i64> {
        self.open.values().min().copied().or(self.next_offset)
    }

    /// Forgets windows whose candles are all published.
    fn forget_published(&mut self) {
        let before = self
            .pending
            .front()
            .map(|c| c.start)
            .unwrap_or(self.engine.finalized_before());
        self.open = self.open.split_off(&before);
    }
}

/// Answers to one round of high-watermark queries: (partition, generation, high watermark).
struct Watermarks {
    asked_at: Micros,
    round_trip: Duration,
    answers: Vec<(i32, u64, Option<i64>)>,
}

/// The consume loop's state.
struct Pipeline {
    config: ServiceConfig,
    store: Store,
    consumer: Arc<Kafka>,
    producer: FutureProducer,
    /// Answers the watermark queries (a plain client: no group, nothing to hang on drop).
    querier: Arc<BaseConsumer>,
    parts: HashMap<i32, PartitionState>,
    generation: u64,
    watermarks: mpsc::UnboundedSender<Watermarks>,
    /// Watermark query rounds under way, and when the last one started.
    rounds_in_flight: usize,
    /// Kafka was unreachable (a watermark query failed): when it answered again, if it has.
    /// Watermark answers confirm nothing until it has answered for a grace period (see
    /// [`Outage`]).
    outage: Option<Outage>,
    last_round: Instant,
    /// The next instant a window becomes final: a watermark round starts then.
    next_final: Micros,
    /// Some partition's clock moved since the last finalization.
    clock_moved: bool,
    /// When live updates were last published, and when they are due next (something changed).
    last_live: Instant,
    live_due: Option<tokio::time::Instant>,
    /// When Redis last failed a publish (publishing pauses briefly after a failure).
    redis_failed: Option<Instant>,
    /// Health: the loop's heartbeat.
    status: Arc<DependencyStatus>,
    /// The wall clock read once per turn of the loop (trade times are checked against it: a
    /// reading at most one tick old is exact enough for bounds of hours).
    now: Micros,
    /// Rate limits of log lines about bad records: dead letters, skipped pairs, split pairs.
    dlq_log: LogLimit,
    skip_log: LogLimit,
    split_log: LogLimit,
    shutdown: CancellationToken,
}

/// Consumes `config.topic` until `shutdown`; see the module docs.
pub async fn run(
    config: ServiceConfig,
    store: Store,
    status: Arc<DependencyStatus>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let context = RebalanceContext {
        topic: config.topic.clone(),
        events: Mutex::new(Vec::new()),
    };
    let props = &config.kafka_properties;
    let mut consumer_config = ClientConfig::new();
    consumer_config
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("client.id", "candles-service")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            config.session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (config.session_timeout.as_millis() / 4)
                .max(100)
                .to_string(),
        )
        .set("fetch.wait.max.ms", "50")
        .set("topic.metadata.refresh.interval.ms", "5000");
    props.apply(&mut consumer_config);
    let consumer: Kafka = consumer_config
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
    let mut producer_config = ClientConfig::new();
    producer_config
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", "candles-service-dlq")
        .set("message.timeout.ms", "5000")
        .set("linger.ms", "0");
    props.apply(&mut producer_config);
    let producer: FutureProducer =
        candles_kafka::create(&producer_config, props, "the dead-letter producer")?;
    tracing::info!(brokers = %config.brokers, topic = %config.topic, group = %config.group, "consuming trades");

    let mut querier_config = ClientConfig::new();
    querier_config
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", "candles-service-watermarks");
    props.apply(&mut querier_config);
    let querier: BaseConsumer =
        candles_kafka::create(&querier_config, props, "the watermark client")?;
    tracing::info!(brokers = %config.brokers, topic = %config.topic, group = %config.group, "consuming trades");

    let probe = tokio::spawn(probe_kafka(
        producer.clone(),
        status.clone(),
        shutdown.clone(),
    ));
    let consumer = Arc::new(consumer);
    let (wm_tx, mut wm_rx) = mpsc::unbounded_channel();
    let next_final = next_finalization(&config.engine, Micros::now());
    let mut p = Pipeline {
        config,
        store,
        consumer: consumer.clone(),
        producer,
        querier: Arc::new(querier),
        parts: HashMap::new(),
        generation: 0,
        watermarks: wm_tx,
        rounds_in_flight: 0,
        outage: None,
        last_round: Instant::now(),
        next_final,
        clock_moved: false,
        last_live: Instant::now(),
        live_due: None,
        redis_failed: None,
        status,
        now: Micros::now(),
        dlq_log: LogLimit::new(LOG_LINES, LOG_PERIOD),
        skip_log: LogLimit::new(LOG_LINES, LOG_PERIOD),
        split_log: LogLimit::new(LOG_LINES, LOG_PERIOD),
        shutdown: shutdown.clone(),
    };

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Windows become final at their end plus the grace: a watermark round starts right then, and
    // the windows are finalized as soon as its answer shows the consumer has read that far.
    let final_sleep = tokio::time::sleep_until(instant_of(p.next_final));
    tokio::pin!(final_sleep);
    let live_sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(live_sleep);
    let mut live_armed: Option<tokio::time::Instant> = None;
    let mut last_error_log: Option<Instant> = None;
    loop {
        p.now = Micros::now();
        p.status.consume_loop_beat(p.now);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = &mut final_sleep => {
                p.query_watermarks(p.next_final);
                p.next_final = next_finalization(&p.config.engine, Micros::now());
                final_sleep.as_mut().reset(instant_of(p.next_final));
            }
            Some(wm) = wm_rx.recv() => p.on_watermarks(wm),
            _ = &mut live_sleep, if p.live_due.is_some() => {
                live_armed = None;
                p.publish_live().await;
            }
            _ = tick.tick() => {
                p.apply_rebalances();
                p.on_tick().await;
            }
            r = consumer.recv() => match r {
                Ok(msg) => {
                    let msg = msg.detach();
                    p.apply_rebalances();
                    p.on_message(msg).await;
                }
                Err(e) => {
                    if p.outage.is_none() && is_transport_error(&e) {
                        tracing::warn!(error = %e, "Kafka is unreachable; partitions' clocks wait until it has been back for the grace period");
                        p.outage = Some(Outage::Away);
                    }
                    if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                        tracing::warn!(error = %e, brokers = %p.config.brokers, "Kafka consumer error; retrying");
                        last_error_log = Some(Instant::now());
                    }
                    // Errors come in bursts while a broker is away: do not spin on them.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        if p.clock_moved {
            p.clock_moved = false;
            p.finalize().await;
        }
        if let Some(due) = p.live_due
            && live_armed != Some(due)
        {
            live_sleep.as_mut().reset(due);
            live_armed = Some(due);
        }
    }
    p.shut_down().await;
    probe.abort();
    let Pipeline {
        producer,
        consumer: pipeline_consumer,
        querier,
        ..
    } = p;
    drop(pipeline_consumer);
    close_consumer(consumer).await;
    std::thread::spawn(move || {
        drop(producer);
        drop(querier);
    });
    Ok(())
}

impl Pipeline {
    fn apply_rebalances(&mut self) {
        for event in self.consumer.context().take() {
            match event {
                Rebalanced::Revoked(partitions) => {
                    for partition in partitions {
                        // Open windows are dropped unpublished: the next owner re-reads them.
                        self.parts.remove(&partition);
                        metrics::gauge!(m::CONSUMER_LAG, "partition" => partition.to_string())
                            .set(0.0);
                    }
                }
                Rebalanced::Assigned(partitions) => {
                    for partition in partitions {
                        if !self.parts.contains_key(&partition) {
                            self.assign(partition);
                        }
                    }
                }
            }
        }
    }

    fn assign(&mut self, partition: i32) {
        self.generation += 1;
        self.parts.insert(
            partition,
            PartitionState::new(&self.config, partition, self.generation),
        );
    }

    /// Asks the broker for every assigned partition's high watermark, in one request sent at or
    /// after `not_before`.
    fn query_watermarks(&mut self, not_before: Micros) {
        if self.parts.is_empty() || self.parts.values().all(|s| s.event_clock) {
            return;
        }
        self.rounds_in_flight += 1;
        self.last_round = Instant::now();
        let partitions: Vec<(i32, u64)> =
            self.parts.iter().map(|(&p, s)| (p, s.generation)).collect();
        let querier = self.querier.clone();
        let topic = self.config.topic.clone();
        let tx = self.watermarks.clone();
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for &(partition, _) in &partitions {
                // In a ListOffsets query, the "timestamp" -1 (Offset::End) asks for the latest offset.
                let _ = tpl.add_partition_offset(&topic, partition, Offset::End);
            }
            let mut asked_at = Micros::now();
            while asked_at < not_before {
                // Timers round to milliseconds: wait out the rest (under a millisecond).
                std::thread::sleep(Duration::from_micros(
                    (not_before.0 - asked_at.0).unsigned_abs(),
                ));
                asked_at = Micros::now();
            }
            let sent = Instant::now();
            let highs = match querier.offsets_for_times(tpl, Duration::from_secs(1)) {
                Ok(tpl) => Some(tpl),
                Err(e) => {
                    tracing::debug!(error = %e, "high watermark query failed; the partitions' clocks wait");
                    None
                }
            };
            let answers = partitions
                .into_iter()
                .map(|(partition, generation)| {
                    let high = highs
                        .as_ref()
                        .and_then(|tpl| tpl.find_partition(&topic, partition))
                        .filter(|e| e.error().is_ok())
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        });
                    (partition, generation, high)
                })
                .collect();
            let _ = tx.send(Watermarks {
                asked_at,
                round_trip: sent.elapsed(),
                answers,
            });
        });
    }

    fn on_watermarks(&mut self, wm: Watermarks) {
        self.rounds_in_flight = self.rounds_in_flight.saturating_sub(1);
        let answered = wm.answers.iter().any(|a| a.2.is_some());
        if answered {
            metrics::histogram!(m::WATERMARK_QUERY).record(wm.round_trip.as_secs_f64());
        }
        let was = self.outage;
        self.outage = Outage::after_round(
            self.outage,
            answered,
            Instant::now(),
            self.config.engine.grace.to_std(),
        );
        match (was, self.outage) {
            (None, Some(_)) => tracing::warn!(
                "Kafka does not answer; partitions' clocks wait until it has been back for the grace period"
            ),
            (Some(_), None) => tracing::info!(
                "Kafka has answered for the grace period; finalizing by the wall clock again"
            ),
            _ => {}
        }
        for (partition, generation, high) in wm.answers {
            tracing::trace!(partition, ?high, "high watermark");
            let Some(high) = high else { continue };
            let position = match self.parts.get(&partition) {
                Some(state) if state.generation == generation => self.position(partition, state),
                _ => continue,
            };
            if let Some(pos) = position {
                metrics::gauge!(m::CONSUMER_LAG, "partition" => partition.to_string())
                    .set((high - pos).max(0) as f64);
            }
            if self.outage.is_none()
                && let Some(state) = self.parts.get_mut(&partition)
            {
                self.clock_moved |= state.on_watermark(wm.asked_at, high, position);
            }
        }
    }

    /// Where the consumer stands in `partition`: the next offset it will read.
    fn position(&self, partition: i32, state: &PartitionState) -> Option<i64> {
        if let Some(next) = state.next_offset {
            return Some(next);
        }
        let tpl = self.consumer.position().ok()?;
        match tpl.find_partition(&self.config.topic, partition)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    async fn on_message(&mut self, msg: OwnedMessage) {
        let partition = msg.partition();
        let offset = msg.offset();
        if msg.topic() != self.config.topic {
            return;
        }
        if !self.parts.contains_key(&partition) {
            // A message always follows its partition's assignment; be safe anyway.
            self.assign(partition);
        }
        if let Some(state) = self.parts.get_mut(&partition) {
            let expected = state.next_offset;
            match continuity(expected, offset) {
                Continuity::Seen => return,
                Continuity::Next => {
                    if let Some(expected) = expected.filter(|&e| offset > e) {
                        tracing::debug!(
                            partition,
                            expected,
                            got = offset,
                            "offsets missing from the partition (compacted or control records); passing them"
                        );
                        metrics::counter!(m::OFFSET_GAPS).increment(1);
                    }
                }
            }
        }
        let trade = match decode(&msg) {
            Ok(t) => t,
            Err(reason) => {
                if self.dead_letter(&msg, &reason).await {
                    self.passed(partition, offset);
                }
                return;
            }
        };
        if let Err(rejection) = admission::admit(
            msg.key(),
            &trade,
            &self.config.pairs,
            &self.config.trade_times,
            self.now,
        ) {
            metrics::counter!(m::TRADES_REJECTED, "reason" => rejection.reason).increment(1);
            if rejection.dead_letter {
                if !self.dead_letter(&msg, &rejection.detail).await {
                    return;
                }
            } else if let Some(held) = self.skip_log.allow(Instant::now()) {
                tracing::info!(partition, offset, reason = rejection.reason, detail = %rejection.detail, held_back = held, "trade skipped");
            }
            self.passed(partition, offset);
            return;
        }
        metrics::counter!(m::TRADES_CONSUMED).increment(1);
        let needs_seed = self
            .parts
            .get(&partition)
            .is_some_and(|s| !s.seeded.contains_key(&trade.pair));
        if needs_seed {
            // A partition's first trade of a pair: is the pair already in another one here?
            if let Some((&previous, _)) = self
                .parts
                .iter()
                .find(|(p, s)| **p != partition && s.seeded.contains_key(&trade.pair))
            {
                metrics::counter!(m::PAIR_PARTITION_CONFLICTS).increment(1);
                if let Some(held) = self.split_log.allow(Instant::now()) {
                    tracing::error!(pair = %trade.pair, partition, previous, held_back = held,
                        "a pair's trades are in two partitions: two engines build its candles and their finals race (misrouted producer, or partitions added to a live topic; see DESIGN.md \"Adding partitions\")");
                }
            }
            let Some(seeds) = self.read_seeds(trade.pair).await else {
                return;
            };
            let Some(state) = self.parts.get_mut(&partition) else {
                return;
            };
            let mut composite = None;
            for candle in seeds.into_iter().flatten() {
                if candle.source == Source::Composite {
                    composite = Some(candle.start);
                }
                state
                    .engine
                    .seed(candle.pair, candle.source, candle.start, candle.close);
            }
            tracing::debug!(partition, pair = %trade.pair, last_published = ?composite, "seeded from Redis history");
            state.seeded.insert(trade.pair, composite);
        }
        let Some(state) = self.parts.get_mut(&partition) else {
            return;
        };
        let start = state.engine.config().interval.window_start(trade.time);
        let published = state
            .seeded
            .get(&trade.pair)
            .copied()
            .flatten()
            .is_some_and(|s| start <= s);
        match state.engine.apply(&trade) {
            Outcome::Applied => {
                let first = state.open.entry(start).or_insert(offset);
                *first = (*first).min(offset);
                if self.live_due.is_none() && state.caught_up() {
                    // Leading edge: at once if nothing was published for an update interval.
                    let due = self.last_live + self.config.update_interval;
                    self.live_due = Some(tokio::time::Instant::from_std(due.max(Instant::now())));
                }
            }
            Outcome::Late if published => {
                metrics::counter!(m::TRADES_ALREADY_PUBLISHED).increment(1)
            }
            Outcome::Late => {
                metrics::counter!(m::LATE_TRADES).increment(1);
                tracing::debug!(partition, offset, pair = %trade.pair, exchange = %trade.exchange, time = trade.time.0, "late trade");
            }
        }
        state.next_offset = Some(offset + 1);
        self.clock_moved |= state.on_position(offset + 1);
    }

    /// The record at `offset` is dealt with (dead-lettered or skipped): the partition moves past
    /// it and may commit past it.
    fn passed(&mut self, partition: i32, offset: i64) {
        if let Some(state) = self.parts.get_mut(&partition) {
            state.next_offset = Some(offset + 1);
            self.clock_moved |= state.on_position(offset + 1);
        }
    }

    /// The last final candle of every source of `pair`, retrying while Redis is down; `None` on
    /// shutdown.
    async fn read_seeds(&self, pair: Pair) -> Option<Vec<Option<Candle>>> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut out = Vec::with_capacity(Source::ALL.len());
            let mut failed = None;
            for source in Source::ALL {
                match self.store.last_final(pair, source).await {
                    Ok(c) => out.push(c),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                None => return Some(out),
                Some(e) => {
                    tracing::warn!(%pair, error = %e, retry_in = ?backoff, "cannot read the last published candles to seed the engine; retrying")
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Writes the record to the dead-letter topic (its value cut to [`DLQ_MAX_VALUE`]). `true`
    /// when the partition may move past it: it is there, or the broker refused it, or it still
    /// failed after [`DLQ_ATTEMPTS`] tries (both counted); `false` only on shutdown.
    async fn dead_letter(&mut self, msg: &OwnedMessage, reason: &str) -> bool {
        if let Some(held) = self.dlq_log.allow(Instant::now()) {
            tracing::warn!(partition = msg.partition(), offset = msg.offset(), %reason, dlq = %self.config.dlq_topic, held_back = held, "record sent to the dead-letter topic");
        }
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let value = msg.payload().unwrap_or_default();
        let value_bytes = value.len().to_string();
        let cut = &value[..value.len().min(DLQ_MAX_VALUE)];
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=DLQ_ATTEMPTS {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "error",
                    value: Some(reason),
                })
                .insert(Header {
                    key: "source.topic",
                    value: Some(msg.topic()),
                })
                .insert(Header {
                    key: "source.partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "source.offset",
                    value: Some(&offset),
                })
                .insert(Header {
                    key: "value.bytes",
                    value: Some(&value_bytes),
                });
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.config.dlq_topic).headers(headers);
            if let Some(key) = msg.key() {
                record = record.key(&key[..key.len().min(DLQ_MAX_VALUE)]);
            }
            if msg.payload().is_some() {
                record = record.payload(cut);
            }
            match self.producer.send(record, Duration::from_secs(5)).await {
                Ok(_) => {
                    metrics::counter!(m::DLQ_RECORDS).increment(1);
                    return true;
                }
                Err((e, _)) if is_refused_record(&e) => {
                    metrics::counter!(m::DLQ_FAILURES, "reason" => "rejected").increment(1);
                    tracing::error!(partition = msg.partition(), offset = msg.offset(), error = %e, dlq = %self.config.dlq_topic, "the broker refuses this dead letter; skipping the record");
                    return true;
                }
                Err((e, _)) => {
                    tracing::warn!(error = %e, attempt, dlq = %self.config.dlq_topic, "cannot write to the dead-letter topic; retrying")
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        metrics::counter!(m::DLQ_FAILURES, "reason" => "gave_up").increment(1);
        tracing::error!(partition = msg.partition(), offset = msg.offset(), attempts = DLQ_ATTEMPTS, dlq = %self.config.dlq_topic, "cannot write the dead letter; skipping the record");
        true
    }

    async fn on_tick(&mut self) {
        if self.rounds_in_flight == 0 && self.last_round.elapsed() >= WATERMARK_EVERY {
            self.query_watermarks(Micros(0));
        }
        let partitions: Vec<i32> = self.parts.keys().copied().collect();
        for partition in partitions {
            // A partition that received nothing yet: its position comes from the consumer.
            let position = match self.parts.get(&partition) {
                Some(s) if !s.confirming.is_empty() && s.next_offset.is_none() => {
                    self.position(partition, s)
                }
                _ => None,
            };
            if let Some(position) = position
                && let Some(state) = self.parts.get_mut(&partition)
            {
                state.on_position(position);
            }
        }
        self.finalize().await;
    }

    /// Finalizes every window the partitions' clocks allow, publishes the finals and commits.
    async fn finalize(&mut self) {
        let now = Micros::now();
        for state in self.parts.values_mut() {
            if let Some(clock) = state.clock(now) {
                let mut finals = Vec::new();
                state.engine.advance(clock, &mut finals);
                let mut last_window = None;
                for c in &finals {
                    if last_window != Some(c.start) {
                        last_window = Some(c.start);
                        let due = self.config.engine.interval.window_end(c.start).0
                            + self.config.engine.grace.0;
                        metrics::histogram!(m::FINALIZE_DELAY)
                            .record((now.0 - due).max(0) as f64 / 1e6);
                    }
                }
                state.pending.extend(finals);
            }
        }
        self.publish_pending().await;
        self.commit();
    }

    /// Publishes finalized candles, oldest first per partition, one round trip per window (the
    /// commands are pipelined on one connection); stops at the first Redis error (that candle and
    /// the rest stay pending and hold back their partition's commit; publishing again what did
    /// reach Redis is harmless).
    async fn publish_pending(&mut self) {
        if self
            .redis_failed
            .is_some_and(|t| t.elapsed() < Duration::from_millis(500))
        {
            return;
        }
        for state in self.parts.values_mut() {
            while !state.pending.is_empty() {
                // One window of each series per round: a failure then never leaves a later window
                // of a series published before an earlier one (which publish-once would refuse).
                let mut series = Vec::new();
                let batch = state
                    .pending
                    .iter()
                    .take_while(|c| {
                        let fresh = !series.contains(&(c.pair, c.source));
                        series.push((c.pair, c.source));
                        fresh
                    })
                    .count();
                let store = &self.store;
                let results = futures::future::join_all(
                    state
                        .pending
                        .iter()
                        .take(batch)
                        .map(|c| store.publish_final(c)),
                )
                .await;
                for result in results {
                    match result {
                        Ok(true) => {
                            metrics::counter!(m::CANDLES_PUBLISHED, "kind" => "final").increment(1);
                        }
                        Ok(false) => {
                            metrics::counter!(m::CANDLES_DUPLICATE).increment(1);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot publish final candles; holding them (and their offsets) until Redis is back");
                            self.redis_failed = Some(Instant::now());
                            return;
                        }
                    }
                    state.pending.pop_front();
                }
            }
            self.redis_failed = None;
            state.forget_published();
        }
    }

    /// Publishes the in-progress candles that changed since the last call (at most once per
    /// update interval: the first change after a quiet interval goes out at once, later ones wait
    /// for the interval to pass).
    async fn publish_live(&mut self) {
        self.live_due = None;
        self.last_live = Instant::now();
        if self.redis_failed.is_some() {
            return;
        }
        let mut updates = Vec::new();
        for state in self.parts.values_mut().filter(|s| s.caught_up()) {
            state.engine.take_updates(&mut updates);
        }
        let store = &self.store;
        let results =
            futures::future::join_all(updates.iter().map(|c| store.publish_live(c))).await;
        for result in results {
            match result {
                Ok(()) => metrics::counter!(m::CANDLES_PUBLISHED, "kind" => "live").increment(1),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot publish a live candle; skipping this update");
                    return;
                }
            }
        }
    }

    /// Commits every partition whose safe offset moved forward (asynchronously).
    fn commit(&mut self) {
        let mut tpl = TopicPartitionList::new();
        for (&partition, state) in self.parts.iter_mut() {
            if let Some(safe) = state.safe_offset()
                && state.committed.is_none_or(|c| safe > c)
                && tpl
                    .add_partition_offset(&self.config.topic, partition, Offset::Offset(safe))
                    .is_ok()
            {
                state.committed = Some(safe);
            }
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::debug!(error = %e, "offset commit not sent; retried with the next one");
            for e in tpl.elements() {
                if let Some(state) = self.parts.get_mut(&e.partition()) {
                    state.committed = None;
                }
            }
        }
    }

    /// Publishes what is already final (nothing new is finalized) and commits, synchronously,
    /// within about two seconds.
    async fn shut_down(&mut self) {
        self.apply_rebalances();
        self.redis_failed = None;
        if tokio::time::timeout(Duration::from_secs(2), self.publish_pending())
            .await
            .is_err()
        {
            tracing::warn!(
                "could not publish every final candle before shutting down; the next owner will"
            );
        }
        let mut tpl = TopicPartitionList::new();
        for (&partition, state) in &self.parts {
            if let Some(safe) = state.safe_offset() {
                let _ =
                    tpl.add_partition_offset(&self.config.topic, partition, Offset::Offset(safe));
            }
        }
        if tpl.count() > 0 {
            let consumer = self.consumer.clone();
            let commit =
                tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync));
            match tokio::time::timeout(Duration::from_secs(2), commit).await {
                Ok(Ok(Ok(()))) => tracing::info!("offsets committed"),
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "final offset commit failed"),
                _ => tracing::warn!("final offset commit did not finish within 2s"),
            }
        }
    }
}

/// Whether a consumer error says the brokers cannot be reached (not a problem with one record).
fn is_transport_error(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::BrokerTransportFailure | C::AllBrokersDown)
    )
}

/// Whether a produce error means the broker will never take this record (retrying is useless).
fn is_refused_record(e: &rdkafka::error::KafkaError) -> bool {
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

/// Decodes a record into a trade, or says why it cannot be one (never echoing it whole).
fn decode(msg: &OwnedMessage) -> Result<Trade, String> {
    let value = msg
        .payload()
        .ok_or_else(|| "record has no value; expected a protobuf candles.v1.Trade".to_string())?;
    let wire = v1::Trade::decode(value).map_err(|e| {
        format!(
            "value is not a protobuf candles.v1.Trade ({} bytes): {e}",
            value.len()
        )
    })?;
    Trade::try_from(&wire).map_err(|e| format!("invalid candles.v1.Trade: {e}"))
}

/// Asks Kafka for metadata every second and records whether it answered.
async fn probe_kafka(
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

/// Leaves the group and drops the consumer where a hang cannot block anyone.
async fn close_consumer(consumer: Arc<Kafka>) {
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
    });
    if tokio::time::timeout(Duration::from_secs(1), rx)
        .await
        .is_err()
    {
        tracing::debug!("the Kafka consumer is still closing; not waiting for it");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candles_core::time::Duration as CoreDuration;
    use candles_core::{EngineConfig, Exchange, Interval, Side};

    fn config() -> ServiceConfig {
        ServiceConfig {
            engine: EngineConfig {
                interval: Interval::seconds(1),
                grace: CoreDuration::from_millis(0),
                clock: ClockMode::Wall,
            },
            ..ServiceConfig::default()
        }
    }

    fn apply(state: &mut PartitionState, offset: i64, time_ms: i64) {
        let pair = Pair::parse("BTC-USDT").unwrap();
        let t = Trade::new(
            Exchange::Binance,
            pair,
            offset as u64,
            "1",
            "1",
            Side::Buy,
            Micros(time_ms * 1000),
        )
        .unwrap();
        assert_eq!(state.engine.apply(&t), Outcome::Applied);
        let start = state.engine.config().interval.window_start(t.time);
        let first = state.open.entry(start).or_insert(offset);
        *first = (*first).min(offset);
        state.next_offset = Some(offset + 1);
    }

    #[test]
    fn commits_stop_at_the_first_trade_of_a_window_not_yet_published() {
        let mut s = PartitionState::new(&config(), 0, 1);
        assert_eq!(s.safe_offset(), None, "nothing read, nothing to commit");
        apply(&mut s, 10, 1_100); // window 1 s
        apply(&mut s, 11, 2_100); // window 2 s
        apply(&mut s, 12, 1_900); // window 1 s, arriving late but within grace
        assert_eq!(s.safe_offset(), Some(10));
        let mut finals = Vec::new();
        s.engine.advance(Micros(2_000_000), &mut finals);
        s.pending.extend(finals);
        s.forget_published();
        assert_eq!(
            s.safe_offset(),
            Some(10),
            "window 1 s is final but not published yet"
        );
        s.pending.clear(); // published
        s.forget_published();
        assert_eq!(s.safe_offset(), Some(11), "only window 2 s is open");
        let mut finals = Vec::new();
        s.engine.advance(Micros(3_000_000), &mut finals);
        assert_eq!(finals.len(), 2, "composite and binance");
        s.forget_published();
        assert_eq!(
            s.safe_offset(),
            Some(13),
            "everything published: commit past the last record"
        );
    }

    #[test]
    fn the_wall_clock_runs_only_as_far_as_the_consumer_has_read() {
        let mut s = PartitionState::new(&config(), 0, 1);
        let now = Micros(10_000_000);
        assert_eq!(s.clock(now), None, "nothing confirmed: no finalization");
        s.on_watermark(Micros(5_000_000), 100, Some(40));
        assert_eq!(s.clock(now), None, "behind the watermark");
        s.on_watermark(Micros(6_000_000), 120, Some(40));
        s.on_position(100);
        assert_eq!(
            s.clock(now),
            Some(Micros(5_000_000)),
            "read up to what existed at 5 s"
        );
        s.on_watermark(Micros(7_000_000), 120, Some(120));
        assert_eq!(s.clock(now), Some(Micros(7_000_000)));
        assert_eq!(
            s.clock(Micros(6_500_000)),
            Some(Micros(6_500_000)),
            "never beyond the wall clock"
        );
        s.on_watermark(Micros(8_000_000), 0, None);
        assert_eq!(
            s.clock(now),
            Some(Micros(8_000_000)),
            "an empty partition is read"
        );
    }

    #[test]
    fn records_already_read_are_skipped_and_holes_passed() {
        assert_eq!(continuity(None, 7), Continuity::Next, "first record");
        assert_eq!(continuity(Some(7), 7), Continuity::Next);
        assert_eq!(continuity(Some(8), 5), Continuity::Seen);
        assert_eq!(continuity(Some(8), 12), Continuity::Next, "a hole");
    }

    #[test]
    fn after_an_outage_answers_confirm_only_once_kafka_has_been_back_for_the_grace() {
        let grace = Duration::from_millis(1_500);
        let t0 = Instant::now();
        let after = |o, answered, ms| {
            Outage::after_round(o, answered, t0 + Duration::from_millis(ms), grace)
        };
        assert_eq!(after(None, true, 0), None, "normal operation");
        let away = after(None, false, 0);
        assert_eq!(away, Some(Outage::Away));
        assert_eq!(after(away, false, 500), Some(Outage::Away), "still away");
        let back = after(away, true, 2_000);
        assert_eq!(
            back,
            Some(Outage::BackSince(t0 + Duration::from_millis(2_000)))
        );
        assert_eq!(
            after(back, true, 3_499),
            back,
            "back for less than the grace"
        );
        assert_eq!(
            after(back, false, 3_000),
            Some(Outage::Away),
            "away again: start over"
        );
        assert_eq!(
            after(back, true, 3_500),
            None,
            "back for the grace: confirm again"
        );
    }

    #[test]
    fn windows_become_final_at_their_end_plus_the_grace() {
        let engine = EngineConfig {
            interval: Interval::seconds(5),
            grace: CoreDuration::from_millis(1_500),
            clock: ClockMode::Wall,
        };
        let at = |ms| next_finalization(&engine, Micros::from_millis(ms));
        assert_eq!(
            at(0),
            Micros::from_millis(1_500),
            "window [-5 s, 0) + grace"
        );
        assert_eq!(at(1_499), Micros::from_millis(1_500));
        assert_eq!(at(1_500), Micros::from_millis(6_500), "strictly after now");
        assert_eq!(at(6_000), Micros::from_millis(6_500));
        assert_eq!(at(-1), Micros::from_millis(1_500));
    }

    #[test]
    fn every_watermark_answer_is_confirmed_once_read_past() {
        let mut s = PartitionState::new(&config(), 0, 1);
        assert!(!s.on_watermark(Micros(1_000), 10, Some(5)));
        assert!(!s.on_watermark(Micros(2_000), 20, Some(5)));
        assert!(
            !s.on_watermark(Micros(1_500), 15, Some(5)),
            "older than the newest: dropped"
        );
        assert!(s.on_position(12), "the first answer is read past");
        assert_eq!(s.clock(Micros(9_000)), Some(Micros(1_000)));
        assert!(!s.on_position(19));
        assert!(s.on_position(20), "so is the second, kept meanwhile");
        assert_eq!(s.clock(Micros(9_000)), Some(Micros(2_000)));
        for i in 0..20 {
            s.on_watermark(Micros(3_000 + i), 100 + i, Some(20));
        }
        assert_eq!(s.confirming.len(), MAX_PENDING_ANSWERS, "bounded");
        assert!(s.on_position(1_000));
        assert_eq!(
            s.clock(Micros(9_000)),
            Some(Micros(3_019)),
            "the newest answer is kept"
        );
    }

    #[test]
    fn decode_errors_say_what_is_wrong() {
        let msg = |payload: Option<Vec<u8>>| {
            OwnedMessage::new(
                payload,
                Some(b"BTC-USDT".to_vec()),
                "t".into(),
                rdkafka::Timestamp::NotAvailable,
                0,
                0,
                None,
            )
        };
        assert!(decode(&msg(None)).unwrap_err().contains("no value"));
        assert!(
            decode(&msg(Some(b"\xff\xff".to_vec())))
                .unwrap_err()
                .contains("not a protobuf candles.v1.Trade")
        );
        let mut wire = v1::Trade::from(
            &Trade::new(
                Exchange::Kraken,
                Pair::parse("ETH-USDT").unwrap(),
                1,
                "2",
                "3",
                Side::Sell,
                Micros(5),
            )
            .unwrap(),
        );
        assert!(decode(&msg(Some(wire.encode_to_vec()))).is_ok());
        wire.exchange = "ftx".into();
        let e = decode(&msg(Some(wire.encode_to_vec()))).unwrap_err();
        assert!(e.contains("exchange") && e.contains("ftx"), "{e}");
    }
}
