//! The Kafka side: trades in, one candle engine per assigned partition, finals and live updates
//! out to Redis, offsets committed only behind published candles.
//!
//! # Which file decides what
//! - A record enters in [`run`]'s loop (here), becomes a trade or a dead letter in [`message`]
//!   (decoding and [`crate::admission`]), and a trade enters its partition's engine in
//!   [`partition::Partition::apply`].
//! - Finality is decided by [`candles_core::finality`] (windows are due at their end plus the
//!   grace) and [`clock`] (a partition's clock only runs as far as the consumer has read,
//!   confirmed by the rounds of [`watermarks`]; the outage rule).
//! - Candles leave through [`publish`] (Redis); offsets are kept in [`offsets`] and committed
//!   here; records that are not trades leave through [`dead_letter`]; the Kafka clients, the
//!   rebalance context and the detached drop are in [`kafka`].
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
//! A [`kafka::RebalanceContext`] records assignments and revocations; the loop applies them
//! before the next message. A revoked partition's engine is dropped *without* publishing its open
//! windows (the next owner re-reads and publishes them). An assigned partition starts with an
//! empty engine; the first trade of each pair seeds the engine from the pair's last final candles
//! of every interval in Redis ([`candles_core::Engine::seed_interval`]), so flat candles continue
//! and published windows are not rebuilt, and gives the open windows of the coarser intervals
//! back what was rolled up into them from the finer finals published since
//! ([`candles_core::Engine::restore_rollups`]).
//!
//! # Several intervals (`--intervals`)
//! Each partition's engine builds the whole set ([`candles_core::Engine::with_intervals`]): a
//! trade touches only the finest window, and the offsets above are those of the finest windows.
//! Committing past a finest window whose final is published is safe although a coarser window
//! holding it is still open: after a restart that coarse window is restored from the published
//! finer finals, not from the trades. Every coarser window ends on a finest boundary, so the
//! finest interval's finalization instants ([`candles_core::finality`]) are every interval's.
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
//! A trade that changes an in-progress candle makes live updates due
//! ([`candles_core::throttle::Throttle`]): at once when none were published for
//! `--update-interval`, else when that interval has passed since the last ones (leading and
//! trailing edge). Every in-progress candle that changed meanwhile goes out then.
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

pub mod clock;
pub mod dead_letter;
pub mod kafka;
pub mod message;
pub mod offsets;
pub mod partition;
pub mod publish;
pub mod watermarks;

pub use dead_letter::{DLQ_ATTEMPTS, DLQ_MAX_VALUE};

use crate::config::ServiceConfig;
use crate::metrics as m;
use crate::status::DependencyStatus;
use crate::store::Store;
use candles_core::bounds::LogLimit;
use candles_core::finality::Finality;
use candles_core::retry::Doubling;
use candles_core::throttle::Throttle;
use candles_core::{Candle, Micros, Outcome, Pair, Source, Trade};
use dead_letter::DeadLetters;
use kafka::{Kafka, Rebalanced};
use message::Verdict;
use offsets::Continuity;
use partition::Partition;
use publish::Publisher;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::{Message as _, OwnedMessage};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use watermarks::{Rounds, Watermarks};

/// Log lines about bad records: at most this many per [`LOG_PERIOD`] per kind.
const LOG_LINES: u32 = 5;
const LOG_PERIOD: Duration = Duration::from_secs(10);

/// Housekeeping: rebalances, retries of held finals, commits.
const TICK: Duration = Duration::from_millis(50);

/// Consumes `config.topic` until `shutdown`; see the module docs. The Kafka probe behind health
/// and the watermark queries run on `tracker`.
pub async fn run(
    config: ServiceConfig,
    store: Store,
    status: Arc<DependencyStatus>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let clients = kafka::connect(&config)?;
    tracker.spawn(kafka::probe(
        clients.producer.clone(),
        status.clone(),
        shutdown.clone(),
    ));
    let consumer = clients.consumer.clone();
    let (rounds, answers) = Rounds::new(
        clients.querier.clone(),
        config.topic.clone(),
        config.engine.grace.to_std(),
    );
    let mut p = Pipeline {
        finality: Finality::new(config.engine_config(), Micros::now()),
        throttle: Throttle::new(config.update_interval),
        dead_letters: DeadLetters::new(
            clients.producer.clone(),
            config.dlq_topic.clone(),
            LogLimit::new(LOG_LINES, LOG_PERIOD),
        ),
        publisher: Publisher::new(store.clone()),
        config,
        store,
        consumer: consumer.clone(),
        parts: HashMap::new(),
        generation: 0,
        rounds,
        clock_moved: false,
        status,
        now: Micros::now(),
        skip_log: LogLimit::new(LOG_LINES, LOG_PERIOD),
        split_log: LogLimit::new(LOG_LINES, LOG_PERIOD),
        error_log: LogLimit::new(1, Duration::from_secs(5)),
        tracker,
        shutdown,
    };
    p.consume(&consumer, answers).await;
    p.shut_down().await;
    // Every handle to the clients goes before they are closed (and dropped) on their own thread.
    drop(p);
    drop(consumer);
    kafka::close(clients).await;
    Ok(())
}

/// The consume loop's state.
struct Pipeline {
    config: ServiceConfig,
    store: Store,
    consumer: Arc<Kafka>,
    parts: HashMap<i32, Partition>,
    /// Counts assignments (stale watermark answers are told apart by it).
    generation: u64,
    rounds: Rounds,
    /// The next instant windows become final: a watermark round starts then.
    finality: Finality,
    /// Some partition's clock moved since the last finalization.
    clock_moved: bool,
    throttle: Throttle,
    publisher: Publisher,
    dead_letters: DeadLetters,
    /// Health: the loop's heartbeat.
    status: Arc<DependencyStatus>,
    /// The wall clock read once per turn of the loop (trade times are checked against it: a
    /// reading at most one tick old is exact enough for bounds of hours).
    now: Micros,
    /// Rate limits of log lines: skipped pairs, split pairs, consumer errors.
    skip_log: LogLimit,
    split_log: LogLimit,
    error_log: LogLimit,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// The tokio instant `wait` from now.
fn after(wait: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + wait
}

impl Pipeline {
    /// The loop: until shutdown, reads records, starts watermark rounds at each finalization
    /// instant, applies their answers, publishes live updates when due, and keeps house.
    async fn consume(
        &mut self,
        consumer: &Kafka,
        mut answers: mpsc::UnboundedReceiver<Watermarks>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Windows become final at their end plus the grace: a watermark round starts right then,
        // and the windows are finalized as soon as its answer shows the consumer has read that far.
        let final_sleep = tokio::time::sleep_until(after(self.finality.wait(Micros::now())));
        tokio::pin!(final_sleep);
        let live_sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(live_sleep);
        let mut live_armed: Option<Instant> = None;
        loop {
            self.now = Micros::now();
            self.status.consume_loop_beat(self.now);
            let live_due = self.throttle.due();
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                _ = &mut final_sleep => {
                    let now = Micros::now();
                    if self.finality.reached(now).is_some() {
                        self.rounds.start(&self.parts, &self.tracker);
                    }
                    final_sleep.as_mut().reset(after(self.finality.wait(now)));
                }
                Some(wm) = answers.recv() => self.on_watermarks(wm),
                _ = &mut live_sleep, if live_due.is_some() => {
                    live_armed = None;
                    self.throttle.sent(Instant::now());
                    self.publisher.live(&mut self.parts).await;
                }
                _ = tick.tick() => {
                    self.apply_rebalances();
                    self.on_tick().await;
                }
                r = consumer.recv() => match r {
                    Ok(msg) => {
                        let msg = msg.detach();
                        self.apply_rebalances();
                        self.on_message(msg).await;
                    }
                    Err(e) => self.on_error(e).await,
                }
            }
            if self.clock_moved {
                self.clock_moved = false;
                self.finalize().await;
            }
            if let Some(due) = self.throttle.due()
                && live_armed != Some(due)
            {
                live_sleep
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(due));
                live_armed = Some(due);
            }
        }
    }

    /// The consumer failed to read: an outage when the brokers are unreachable.
    async fn on_error(&mut self, e: rdkafka::error::KafkaError) {
        if kafka::is_transport_error(&e) && self.rounds.unreachable() {
            tracing::warn!(error = %e, "Kafka is unreachable; partitions' clocks wait until it has been back for the grace period");
        }
        if let Some(held) = self.error_log.allow(Instant::now()) {
            tracing::warn!(error = %e, brokers = %self.config.brokers, held_back = held, "Kafka consumer error; retrying");
        }
        // Errors come in bursts while a broker is away: do not spin on them.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

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
                        self.assign(partition);
                    }
                }
            }
        }
    }

    /// Starts an empty engine for `partition` unless it is already assigned.
    fn assign(&mut self, partition: i32) {
        if !self.parts.contains_key(&partition) {
            self.generation += 1;
            let state = Partition::with_intervals(
                self.config.engine,
                self.config.intervals(),
                partition,
                self.generation,
            );
            self.parts.insert(partition, state);
        }
    }

    fn on_watermarks(&mut self, wm: Watermarks) {
        let confirm = self.rounds.answered(&wm);
        let (consumer, topic) = (&self.consumer, &self.config.topic);
        self.clock_moved |= watermarks::apply(wm, &mut self.parts, confirm, |partition, s| {
            s.offsets()
                .next()
                .or_else(|| kafka::position(consumer, topic, partition))
        });
    }

    async fn on_message(&mut self, msg: OwnedMessage) {
        let (partition, offset) = (msg.partition(), msg.offset());
        if msg.topic() != self.config.topic || !self.is_next(partition, offset) {
            return;
        }
        match message::classify(&msg, &self.config, self.now) {
            Verdict::Apply(trade) => {
                metrics::counter!(m::TRADES_CONSUMED).increment(1);
                self.apply(partition, offset, trade).await;
            }
            Verdict::Undecodable(reason) => {
                if self.dead_letters.send(&msg, &reason, &self.shutdown).await {
                    self.passed(partition, offset);
                }
            }
            Verdict::Rejected(rejection) => {
                metrics::counter!(m::TRADES_REJECTED, "reason" => rejection.reason).increment(1);
                if rejection.dead_letter {
                    if !self
                        .dead_letters
                        .send(&msg, &rejection.detail, &self.shutdown)
                        .await
                    {
                        return;
                    }
                } else if let Some(held) = self.skip_log.allow(Instant::now()) {
                    tracing::info!(partition, offset, reason = rejection.reason, detail = %rejection.detail, held_back = held, "trade skipped");
                }
                self.passed(partition, offset);
            }
        }
    }

    /// Whether the record at `offset` is to be processed (not already read); a hole before it is
    /// passed, and counted.
    fn is_next(&mut self, partition: i32, offset: i64) -> bool {
        // A message always follows its partition's assignment; be safe anyway.
        self.assign(partition);
        let Some(state) = self.parts.get(&partition) else {
            return false;
        };
        if state.continuity(offset) == Continuity::Seen {
            return false;
        }
        if let Some(expected) = state.offsets().next().filter(|&e| offset > e) {
            tracing::debug!(
                partition,
                expected,
                got = offset,
                "offsets missing from the partition (compacted or control records); passing them"
            );
            metrics::counter!(m::OFFSET_GAPS).increment(1);
        }
        true
    }

    /// Applies an admitted trade read at `offset` of `partition` (seeding its pair first).
    async fn apply(&mut self, partition: i32, offset: i64, trade: Trade) {
        if !self.seed(partition, trade.pair).await {
            return;
        }
        let Some(state) = self.parts.get_mut(&partition) else {
            return;
        };
        let step = state.apply(&trade, offset);
        match step.outcome {
            Outcome::Applied if state.clock().caught_up() => {
                self.throttle.changed(Instant::now());
            }
            Outcome::Applied => {}
            Outcome::Late if step.already_published => {
                metrics::counter!(m::TRADES_ALREADY_PUBLISHED).increment(1)
            }
            Outcome::Late => {
                metrics::counter!(m::LATE_TRADES).increment(1);
                tracing::debug!(partition, offset, pair = %trade.pair, exchange = %trade.exchange, time = trade.time.0, "late trade");
            }
        }
        self.clock_moved |= step.clock_moved;
    }

    /// The record at `offset` is dealt with (dead-lettered or skipped): the partition moves past
    /// it and may commit past it.
    fn passed(&mut self, partition: i32, offset: i64) {
        if let Some(state) = self.parts.get_mut(&partition) {
            self.clock_moved |= state.passed(offset);
        }
    }

    /// Seeds `pair` in `partition` from Redis at its first trade there; `false` on shutdown or
    /// when the partition is gone.
    async fn seed(&mut self, partition: i32, pair: Pair) -> bool {
        if self.parts.get(&partition).is_none_or(|s| s.has_pair(pair)) {
            return self.parts.contains_key(&partition);
        }
        // A partition's first trade of a pair: is the pair already in another one here?
        if let Some((&previous, _)) = self
            .parts
            .iter()
            .find(|(p, s)| **p != partition && s.has_pair(pair))
        {
            metrics::counter!(m::PAIR_PARTITION_CONFLICTS).increment(1);
            if let Some(held) = self.split_log.allow(Instant::now()) {
                tracing::error!(%pair, partition, previous, held_back = held,
                    "a pair's trades are in two partitions: two engines build its candles and their finals race (misrouted producer, or partitions added to a live topic; see DESIGN.md \"Adding partitions\")");
            }
        }
        let Some((last, recent)) = self.read_seeds(pair).await else {
            return false;
        };
        let Some(state) = self.parts.get_mut(&partition) else {
            return false;
        };
        state.seed(pair, last);
        state.restore_rollups(pair, &recent);
        true
    }

    /// The last final candle of every source and interval of `pair`, and the recent finals of
    /// the finer intervals that the coarse open windows are restored from; retries while Redis
    /// is down; `None` on shutdown.
    async fn read_seeds(&self, pair: Pair) -> Option<(Vec<Option<Candle>>, Vec<Candle>)> {
        let mut backoff = Doubling::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let e = match self.try_read_seeds(pair).await {
                Ok(seeds) => return Some(seeds),
                Err(e) => e,
            };
            let wait = backoff.next_delay();
            tracing::warn!(%pair, error = %e, retry_in = ?wait, "cannot read the last published candles to seed the engine; retrying");
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One attempt of [`Pipeline::read_seeds`]. Of each interval but the coarsest it reads enough
    /// finals to cover twice the next coarser window (the open one and the one just before,
    /// whose final may not be out yet); of the coarsest, the last one.
    async fn try_read_seeds(
        &self,
        pair: Pair,
    ) -> Result<(Vec<Option<Candle>>, Vec<Candle>), crate::store::StoreError> {
        let intervals = self.config.intervals();
        let list = intervals.as_slice();
        let mut last = Vec::with_capacity(Source::ALL.len() * list.len());
        let mut recent = Vec::new();
        for (k, &interval) in list.iter().enumerate() {
            let coarser = list.get(k + 1);
            let n = coarser.map_or(1, |c| 2 * (c.micros() / interval.micros()) as usize + 2);
            let store = self.store.for_interval(interval);
            for source in Source::ALL {
                let finals: Vec<Candle> = store
                    .history(pair, source, n.min(self.config.history_max))
                    .await?
                    .iter()
                    .filter_map(|wire| Candle::try_from(wire).ok())
                    .collect();
                last.push(finals.last().copied());
                if coarser.is_some() {
                    recent.extend(finals);
                }
            }
        }
        Ok((last, recent))
    }

    async fn on_tick(&mut self) {
        if self.rounds.idle() {
            self.rounds.start(&self.parts, &self.tracker);
        }
        let partitions: Vec<i32> = self.parts.keys().copied().collect();
        for partition in partitions {
            // A partition that received nothing yet: its position comes from the consumer.
            let position = match self.parts.get(&partition) {
                Some(s) if s.clock().confirming() && s.offsets().next().is_none() => {
                    kafka::position(&self.consumer, &self.config.topic, partition)
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
        let engine = self.config.engine_config();
        for state in self.parts.values_mut() {
            for start in state.finalize(now) {
                let due = engine.interval.window_end(start).plus(engine.grace);
                metrics::histogram!(m::FINALIZE_DELAY).record((now.0 - due.0).max(0) as f64 / 1e6);
            }
        }
        self.publisher.finals(&mut self.parts).await;
        self.commit();
    }

    /// Commits every partition whose safe offset moved forward (asynchronously).
    fn commit(&mut self) {
        let offsets: Vec<(i32, i64)> = self
            .parts
            .iter_mut()
            .filter_map(|(&p, s)| s.offsets_mut().to_commit().map(|o| (p, o)))
            .collect();
        if !offsets.is_empty() && !kafka::commit(&self.consumer, &self.config.topic, &offsets) {
            for (partition, _) in offsets {
                if let Some(state) = self.parts.get_mut(&partition) {
                    state.offsets_mut().commit_failed();
                }
            }
        }
    }

    /// Publishes what is already final (nothing new is finalized) and commits, synchronously,
    /// within about two seconds.
    async fn shut_down(&mut self) {
        self.apply_rebalances();
        self.publisher.retry_now();
        if tokio::time::timeout(
            Duration::from_secs(2),
            self.publisher.finals(&mut self.parts),
        )
        .await
        .is_err()
        {
            tracing::warn!(
                "could not publish every final candle before shutting down; the next owner will"
            );
        }
        let offsets: Vec<(i32, i64)> = self
            .parts
            .iter()
            .filter_map(|(&p, s)| s.offsets().safe().map(|o| (p, o)))
            .collect();
        let consumer = self.consumer.clone();
        kafka::commit_and_wait(consumer, &self.config.topic, offsets, &self.tracker).await;
    }
}
