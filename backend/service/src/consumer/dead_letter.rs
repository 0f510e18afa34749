//! The dead-letter topic: a record that is not a valid trade, or whose trade is refused as
//! misrouted or implausibly dated, is written there with its key, its value (cut to
//! [`DLQ_MAX_VALUE`]) and headers saying why and where it came from. One record never stops
//! the partition: a dead letter the broker refuses, or that still fails after
//! [`DLQ_ATTEMPTS`] tries, is counted and skipped.

use super::kafka::is_refused_record;
use crate::metrics as m;
use candles_core::bounds::LogLimit;
use candles_core::retry::Doubling;
use rdkafka::message::{Header, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A dead-lettered record's value is cut to this many bytes (the broker's default record limit is
/// 1 MB; the cut keeps the evidence without echoing a huge record).
pub const DLQ_MAX_VALUE: usize = 64 * 1024;

/// Tries to write one dead letter before it is counted and skipped (about 10 s with the backoff).
pub const DLQ_ATTEMPTS: u32 = 8;

/// Writes dead letters to one topic.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    /// Log lines about dead letters are rate-limited.
    log: LogLimit,
}

impl DeadLetters {
    /// Dead letters to `topic` through `producer`; at most `log` lines about them.
    pub fn new(producer: FutureProducer, topic: String, log: LogLimit) -> DeadLetters {
        DeadLetters {
            producer,
            topic,
            log,
        }
    }

    /// Writes `msg` with `reason`. `true` when the partition may move past it: it is there, or
    /// the broker refused it, or it still failed after [`DLQ_ATTEMPTS`] tries (both counted);
    /// `false` only on `stop`.
    pub async fn send(
        &mut self,
        msg: &OwnedMessage,
        reason: &str,
        stop: &CancellationToken,
    ) -> bool {
        if let Some(held) = self.log.allow(Instant::now()) {
            tracing::warn!(partition = msg.partition(), offset = msg.offset(), %reason, dlq = %self.topic, held_back = held, "record sent to the dead-letter topic");
        }
        let mut backoff = Doubling::new(Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 1..=DLQ_ATTEMPTS {
            match self
                .producer
                .send(record(&self.topic, msg, reason), Duration::from_secs(5))
                .await
            {
                Ok(_) => {
                    metrics::counter!(m::DLQ_RECORDS).increment(1);
                    return true;
                }
                Err((e, _)) if is_refused_record(&e) => {
                    metrics::counter!(m::DLQ_FAILURES, "reason" => "rejected").increment(1);
                    tracing::error!(partition = msg.partition(), offset = msg.offset(), error = %e, dlq = %self.topic, "the broker refuses this dead letter; skipping the record");
                    return true;
                }
                Err((e, _)) => {
                    tracing::warn!(error = %e, attempt, dlq = %self.topic, "cannot write to the dead-letter topic; retrying")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
        metrics::counter!(m::DLQ_FAILURES, "reason" => "gave_up").increment(1);
        tracing::error!(partition = msg.partition(), offset = msg.offset(), attempts = DLQ_ATTEMPTS, dlq = %self.topic, "cannot write the dead letter; skipping the record");
        true
    }
}

/// The dead letter of `msg` for `topic`: its key and value cut to [`DLQ_MAX_VALUE`], and the
/// headers `error`, `source.topic`, `source.partition`, `source.offset`, `value.bytes`.
fn record<'a>(
    topic: &'a str,
    msg: &'a OwnedMessage,
    reason: &'a str,
) -> FutureRecord<'a, [u8], [u8]> {
    let value = msg.payload().unwrap_or_default();
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
            value: Some(&msg.partition().to_string()),
        })
        .insert(Header {
            key: "source.offset",
            value: Some(&msg.offset().to_string()),
        })
        .insert(Header {
            key: "value.bytes",
            value: Some(&value.len().to_string()),
        });
    let mut record = FutureRecord::to(topic).headers(headers);
    if let Some(key) = msg.key() {
        record = record.key(&key[..key.len().min(DLQ_MAX_VALUE)]);
    }
    if msg.payload().is_some() {
        record = record.payload(&value[..value.len().min(DLQ_MAX_VALUE)]);
    }
    record
}
