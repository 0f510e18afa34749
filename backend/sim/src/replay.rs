//! Replay of a recorded stream: one verbatim exchange message per line.
//!
//! Lines are sent in file order to the connections they concern (the pair they name, or every
//! subscribed connection when they name none), paced by the trade times they carry divided by
//! the speed factor, or as fast as the slowest connection takes them (`--speed max`). Replay
//! starts when the first client subscribes, so nothing is played to an empty room. The trades
//! parsed from the lines become the ground truth and are served by REST too.

use crate::Speed;
use crate::market::{BUS_CAPACITY, Market};
use crate::venue::{Parsed, Venue};
use anyhow::Context as _;
use candles_core::{Micros, Pair};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A gap between two lines' trade times longer than this is shortened to it (recordings
/// stitched from several days, or sample files, would otherwise pause for hours).
pub(crate) const MAX_GAP: Duration = Duration::from_secs(60);

/// A loaded recording.
pub(crate) struct Recording {
    /// Each non-empty line and what it means.
    pub lines: Vec<(String, Parsed)>,
}

impl Recording {
    /// Reads `path`, one message per line (blank lines are skipped).
    pub fn load(path: &Path, venue: &dyn Venue) -> anyhow::Result<Recording> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("cannot read the replay file {}: give a readable file with one exchange message per line", path.display())
        })?;
        let lines = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
            .map(|l| (l.to_string(), venue.parse_line(l)))
            .collect();
        Ok(Recording { lines })
    }

    /// Every pair the recording names, in order of first appearance.
    pub fn pairs(&self) -> Vec<Pair> {
        let mut pairs = Vec::new();
        for (_, parsed) in &self.lines {
            for pair in parsed
                .pair
                .iter()
                .chain(parsed.trades.iter().map(|t| &t.pair))
            {
                if !pairs.contains(pair) {
                    pairs.push(*pair);
                }
            }
        }
        pairs
    }
}

/// How long to wait between two lines whose trade times are `prev` and `next`.
pub(crate) fn pause(prev: Option<Micros>, next: Option<Micros>, speed: Speed) -> Duration {
    let (Speed::Factor(factor), Some(prev), Some(next)) = (speed, prev, next) else {
        return Duration::ZERO;
    };
    let gap = Duration::from_micros(u64::try_from(next.0.saturating_sub(prev.0)).unwrap_or(0))
        .min(MAX_GAP);
    if factor > 0.0 && factor.is_finite() {
        gap.div_f64(factor)
    } else {
        Duration::ZERO
    }
}

/// Plays `recording` into `market` (stopping early once `max_trades` trades were played), then
/// marks the market done.
pub(crate) async fn run(
    recording: Recording,
    speed: Speed,
    max_trades: Option<u64>,
    market: Arc<Market>,
    cancel: CancellationToken,
) {
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = market.wait_for_subscriber() => {}
    }
    tracing::info!(lines = recording.lines.len(), ?speed, "replay starts");
    let mut prev_time: Option<Micros> = None;
    let mut due = Instant::now();
    for (line, parsed) in recording.lines {
        if max_trades.is_some_and(|max| market.generated() >= max) {
            tracing::info!("max trades reached: replay stops");
            break;
        }
        let time = parsed.trades.first().map(|t| t.time);
        due += pause(prev_time, time, speed);
        if time.is_some() {
            prev_time = time;
        }
        // Pace, and never outrun the slowest connection by more than half the bus.
        while Instant::now() < due || market.backlog() > BUS_CAPACITY / 2 {
            let wait = due
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        market.publish_raw(parsed.pair, line, parsed.trades);
    }
    tracing::info!(trades = market.generated(), "replay finished");
    market.set_done();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pauses_follow_trade_times_and_speed() {
        let (a, b) = (Some(Micros(1_000_000)), Some(Micros(3_000_000)));
        assert_eq!(pause(a, b, Speed::Factor(1.0)), Duration::from_secs(2));
        assert_eq!(pause(a, b, Speed::Factor(4.0)), Duration::from_millis(500));
        assert_eq!(pause(a, b, Speed::Max), Duration::ZERO);
        assert_eq!(pause(b, a, Speed::Factor(1.0)), Duration::ZERO);
        assert_eq!(pause(None, b, Speed::Factor(1.0)), Duration::ZERO);
        assert_eq!(
            pause(
                Some(Micros(0)),
                b.map(|_| Micros(i64::MAX)),
                Speed::Factor(1.0)
            ),
            MAX_GAP
        );
    }
}
