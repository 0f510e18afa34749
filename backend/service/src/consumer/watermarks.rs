//! Watermark rounds: one ListOffsets request for the assigned partitions' high watermarks, on a
//! blocking thread, its answer sent back to the loop; and how an answer moves the partitions'
//! clocks (see [`super::clock`]). A round starts at each finalization instant and every
//! [`WATERMARK_EVERY`] besides (catch-up progress after an assignment, and the lag gauge).

use super::clock::Outage;
use super::partition::Partition;
use crate::metrics as m;
use candles_core::Micros;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// How often high watermarks are asked for between finalization instants.
pub const WATERMARK_EVERY: Duration = Duration::from_millis(100);

/// One partition's answer in a round.
#[derive(Debug)]
pub struct Answer {
    /// The partition.
    pub partition: i32,
    /// Its assignment's generation when the round started (stale answers are ignored).
    pub generation: u64,
    /// Its high watermark; `None` when Kafka did not answer.
    pub high: Option<i64>,
}

/// The answers to one round.
#[derive(Debug)]
pub struct Watermarks {
    /// When the request was sent (everything produced before then is below the watermarks).
    pub asked_at: Micros,
    /// How long the broker took.
    pub round_trip: Duration,
    /// One per partition asked for.
    pub answers: Vec<Answer>,
}

/// The rounds of one consume loop and what they say about Kafka's reachability.
pub struct Rounds {
    querier: Arc<BaseConsumer>,
    topic: String,
    grace: Duration,
    tx: mpsc::UnboundedSender<Watermarks>,
    in_flight: usize,
    last: Instant,
    /// Kafka was unreachable: whether and since when it answered again (see [`Outage`]).
    outage: Option<Outage>,
}

impl Rounds {
    /// Rounds asked of `querier` for `topic`; answers arrive on the returned receiver. After an
    /// outage, answers confirm again once Kafka has answered for `grace`.
    pub fn new(
        querier: Arc<BaseConsumer>,
        topic: String,
        grace: Duration,
    ) -> (Rounds, mpsc::UnboundedReceiver<Watermarks>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let rounds = Rounds {
            querier,
            topic,
            grace,
            tx,
            in_flight: 0,
            last: Instant::now(),
            outage: None,
        };
        (rounds, rx)
    }

    /// Whether no round is under way and none started within [`WATERMARK_EVERY`].
    pub fn idle(&self) -> bool {
        self.in_flight == 0 && self.last.elapsed() >= WATERMARK_EVERY
    }

    /// Whether answers confirm the partitions' clocks (no outage under way).
    pub fn confirming(&self) -> bool {
        self.outage.is_none()
    }

    /// The consumer saw that the brokers are unreachable: answers stop confirming. `true` when
    /// this starts an outage.
    pub fn unreachable(&mut self) -> bool {
        let starts = self.outage.is_none();
        if starts {
            self.outage = Some(Outage::Away);
        }
        starts
    }

    /// Asks for the high watermarks of the wall-clock partitions in `parts`, in one request on a
    /// blocking thread of `tracker`.
    pub fn start(&mut self, parts: &HashMap<i32, Partition>, tracker: &TaskTracker) {
        let partitions: Vec<(i32, u64)> = parts
            .iter()
            .filter(|(_, s)| !s.clock().is_event())
            .map(|(&p, s)| (p, s.generation()))
            .collect();
        if partitions.is_empty() {
            return;
        }
        self.in_flight += 1;
        self.last = Instant::now();
        let querier = self.querier.clone();
        let topic = self.topic.clone();
        let tx = self.tx.clone();
        tracker.spawn_blocking(move || {
            let _ = tx.send(query(&querier, &topic, partitions));
        });
    }

    /// A round's answers arrived: updates the outage state; `true` when they may confirm.
    pub fn answered(&mut self, wm: &Watermarks) -> bool {
        self.in_flight = self.in_flight.saturating_sub(1);
        let answered = wm.answers.iter().any(|a| a.high.is_some());
        if answered {
            metrics::histogram!(m::WATERMARK_QUERY).record(wm.round_trip.as_secs_f64());
        }
        let was = self.outage;
        self.outage = Outage::after_round(self.outage, answered, Instant::now(), self.grace);
        match (was, self.outage) {
            (None, Some(_)) => tracing::warn!(
                "Kafka does not answer; partitions' clocks wait until it has been back for the grace period"
            ),
            (Some(_), None) => tracing::info!(
                "Kafka has answered for the grace period; finalizing by the wall clock again"
            ),
            _ => {}
        }
        self.outage.is_none()
    }
}

/// Asks `querier` for the high watermarks of `partitions` (partition, generation) of `topic`.
fn query(querier: &BaseConsumer, topic: &str, partitions: Vec<(i32, u64)>) -> Watermarks {
    let mut tpl = TopicPartitionList::new();
    for &(partition, _) in &partitions {
        // In a ListOffsets query, the "timestamp" -1 (Offset::End) asks for the latest offset.
        let _ = tpl.add_partition_offset(topic, partition, Offset::End);
    }
    let asked_at = Micros::now();
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
        .map(|(partition, generation)| Answer {
            partition,
            generation,
            high: highs
                .as_ref()
                .and_then(|tpl| tpl.find_partition(topic, partition))
                .filter(|e| e.error().is_ok())
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                }),
        })
        .collect();
    Watermarks {
        asked_at,
        round_trip: sent.elapsed(),
        answers,
    }
}

/// Applies a round's answers to the partitions still assigned in the same generation: the lag
/// gauge always, their clocks when `confirm`. `position` says where the consumer stands in a
/// partition. `true` when some partition's clock moved.
pub fn apply(
    wm: Watermarks,
    parts: &mut HashMap<i32, Partition>,
    confirm: bool,
    position: impl Fn(i32, &Partition) -> Option<i64>,
) -> bool {
    let mut moved = false;
    for Answer {
        partition,
        generation,
        high,
    } in wm.answers
    {
        tracing::trace!(partition, ?high, "high watermark");
        let Some(high) = high else { continue };
        let Some(state) = parts
            .get_mut(&partition)
            .filter(|s| s.generation() == generation)
        else {
            continue;
        };
        let position = position(partition, state);
        if let Some(pos) = position {
            metrics::gauge!(m::CONSUMER_LAG, "partition" => partition.to_string())
                .set((high - pos).max(0) as f64);
        }
        if confirm {
            moved |= state.on_watermark(wm.asked_at, high, position);
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use candles_core::EngineConfig;

    fn round(asked_at: i64, answers: &[(i32, u64, Option<i64>)]) -> Watermarks {
        Watermarks {
            asked_at: Micros(asked_at),
            round_trip: Duration::ZERO,
            answers: answers
                .iter()
                .map(|&(partition, generation, high)| Answer {
                    partition,
                    generation,
                    high,
                })
                .collect(),
        }
    }

    #[test]
    fn answers_move_only_the_clocks_of_the_same_assignment_and_not_during_an_outage() {
        let mut parts = HashMap::new();
        parts.insert(0, Partition::new(EngineConfig::default(), 0, 1));
        parts.insert(1, Partition::new(EngineConfig::default(), 1, 2));
        let read_all = |_: i32, _: &Partition| Some(10);
        let now = Micros(9_000_000);
        assert!(
            !apply(
                round(5_000_000, &[(0, 1, Some(10))]),
                &mut parts,
                false,
                read_all
            ),
            "an outage: nothing confirmed"
        );
        assert_eq!(parts[&0].clock().clock(now), None);
        assert!(
            !apply(
                round(5_000_000, &[(1, 1, Some(10)), (0, 1, None)]),
                &mut parts,
                true,
                read_all
            ),
            "a stale generation, and no answer"
        );
        assert_eq!(parts[&1].clock().clock(now), None);
        assert!(apply(
            round(6_000_000, &[(0, 1, Some(10)), (1, 2, Some(11))]),
            &mut parts,
            true,
            read_all
        ));
        assert_eq!(parts[&0].clock().clock(now), Some(Micros(6_000_000)));
        assert_eq!(
            parts[&1].clock().clock(now),
            None,
            "not read up to its watermark yet"
        );
    }
}
