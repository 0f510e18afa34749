//! Per-pair trade-id bookkeeping: what may be published, what is a duplicate, what is missing.
//!
//! Rules (each exchange's trade ids are contiguous per pair):
//! - the first live trade of a pair after start is published and becomes the reference; history
//!   from before the connector started is not backfilled, but trades of the pair made after
//!   the start and before that first trade (lost to a drop, a garbled frame or a reconnect) are
//!   fetched and published first — best effort, by trade time against the start instant, looking
//!   back at most [`HEAD_LOOKBACK`] ids;
//! - snapshot trades (Kraken's snapshot, Coinbase's `last_match`) of a pair with no reference
//!   that were made before the start only set the reference; any made since are owed;
//! - an id at or below the last published one is a duplicate and dropped (reconnect snapshots,
//!   `last_match`, REST overlap);
//! - an id above last + 1 reveals a gap: the missing ids are fetched (a [`GapFiller`]) and
//!   published in order before the trade that revealed it; whatever could not be fetched is
//!   reported as unfilled and the stream moves on;
//! - a heartbeat that names a newer latest id (Coinbase) reveals trades missed at the end of a
//!   burst: they are fetched the same way, best effort, once per announced id;
//! - after a reconnect, [`Sequencer::catch_up`] fetches whatever happened while the socket was
//!   down, so a quiet pair does not wait for its next trade to reveal the hole (the trades would
//!   reach the candles late). On Binance this is the only way to see trades missed at the very
//!   end of a burst;
//! - with [`Sequencer::with_time_bounds`], a trade whose time is outside the plausible window
//!   ([`TimeBounds`], checked against the wall clock) is never published, from the WebSocket or
//!   from REST, and is returned in [`Admitted::rejected`]. Its id still counts as *accounted
//!   for*: the reference moves to it (keeping the previous trade's time, so REST paging by
//!   time is not sent to 1970 or 2100), so the next trade is not a gap and the refused id is
//!   never fetched again (no refetch loop), and a gap fill that finds it counts it as found,
//!   not unfilled. Ids stay strictly increasing in what is published: nothing is held back
//!   or reordered around a refused trade.
//!
//! Pure state plus an injected filler, so every rule is unit-tested without a network.

use crate::exchange::Gap;
use candles_core::bounds::ImplausibleTime;
use candles_core::{Micros, Pair, TimeBounds, Trade};
use std::collections::HashMap;
use std::future::Future;

/// How many ids before a pair's first trade the start-up fill looks at.
pub const HEAD_LOOKBACK: u64 = 1000;

/// Which rule a fill serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// A known hole: what cannot be fetched is unfilled.
    Strict,
    /// Announced or possible trades: take what exists.
    BestEffort,
    /// Before a pair's first trade: only trades made at or after this instant.
    Since(Micros),
}

/// Fetches the trades of a gap (from REST in production). May return fewer trades than missing,
/// trades outside the gap, or trades in any order: the sequencer filters and sorts.
pub trait GapFiller: Send {
    /// The trades found for `gap`.
    fn fill(&mut self, gap: Gap) -> impl Future<Output = Vec<Trade>> + Send;
}

/// What happened to one gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapReport {
    /// The missing ids.
    pub gap: Gap,
    /// How many of them were fetched and published.
    pub filled: u64,
    /// How many could not be fetched (0 for best-effort heartbeat gaps).
    pub unfilled: u64,
}

/// The result of admitting one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admitted {
    /// What to publish, in order (per pair: strictly increasing ids).
    pub publish: Vec<Trade>,
    /// Trades dropped as already published.
    pub duplicates: u64,
    /// Gaps found and what became of them.
    pub gaps: Vec<GapReport>,
    /// Trades refused for their time (not published; their ids count as accounted for).
    pub rejected: Vec<(Trade, ImplausibleTime)>,
}

/// The last published trade of each pair.
#[derive(Debug, Clone, Default)]
pub struct Sequencer {
    /// When the connector started: trades from then on are owed to the sink.
    start: Option<Micros>,
    last: HashMap<Pair, (u64, Micros)>,
    /// The highest heartbeat-announced id already chased, per pair.
    chased: HashMap<Pair, u64>,
    /// The accepted window of trade times and the clock it is checked against; `None` accepts
    /// any time.
    bounds: Option<(TimeBounds, fn() -> Micros)>,
}

impl Sequencer {
    /// No reference yet for any pair, and no start-up fill.
    pub fn new() -> Self {
        Self::default()
    }

    /// No reference yet for any pair; trades made from `start` on are owed (see the module
    /// docs).
    pub fn starting_at(start: Micros) -> Self {
        Sequencer {
            start: Some(start),
            ..Self::default()
        }
    }

    /// Continues from trades already published before a restart (id and trade time per pair):
    /// the next trade of such a pair is checked for a gap against them.
    pub fn resuming(mut self, last: &HashMap<Pair, (u64, Micros)>) -> Self {
        self.last.extend(last.iter().map(|(&p, &l)| (p, l)));
        self
    }

    /// Refuses trades whose time is outside `bounds` around `clock()` (the wall clock in
    /// production), see the module docs.
    pub fn with_time_bounds(mut self, bounds: TimeBounds, clock: fn() -> Micros) -> Self {
        self.bounds = Some((bounds, clock));
        self
    }

    /// Why `t` is refused for its time, if it is.
    fn implausible(&self, t: &Trade) -> Option<ImplausibleTime> {
        let (bounds, clock) = self.bounds?;
        bounds.check(t.time, clock()).err()
    }

    /// Marks a refused trade's id as accounted for, keeping the pair's last plausible time.
    fn account(&mut self, t: &Trade) {
        let time = self
            .last
            .get(&t.pair)
            .map(|l| l.1)
            .or(self.start)
            .unwrap_or_else(|| self.bounds.map_or(Micros(0), |(_, clock)| clock()));
        self.last.insert(t.pair, (t.id, time));
    }

    /// The last published (or anchored) id of `pair` and its trade time.
    pub fn last(&self, pair: Pair) -> Option<(u64, Micros)> {
        self.last.get(&pair).copied()
    }

    /// Whether `t` was made before the connector started (always, without a start).
    fn before_start(&self, t: &Trade) -> bool {
        self.start.is_none_or(|start| t.time < start)
    }

    fn record(&mut self, t: &Trade) {
        self.last.insert(t.pair, (t.id, t.time));
    }

    /// The next trade of its pair in id order: published, or refused for an implausible time
    /// (and accounted for either way). Whether it is published.
    fn pass(&mut self, t: Trade, out: &mut Admitted) -> bool {
        if let Some(why) = self.implausible(&t) {
            self.account(&t);
            out.rejected.push((t, why));
            return false;
        }
        self.record(&t);
        out.publish.push(t);
        true
    }

    async fn fill(
        &mut self,
        gap: Gap,
        filler: &mut impl GapFiller,
        mode: Fill,
        out: &mut Admitted,
    ) {
        let floor = match mode {
            Fill::Since(start) => start,
            _ => Micros(i64::MIN),
        };
        let mut found: Vec<Trade> = filler
            .fill(gap)
            .await
            .into_iter()
            .filter(|t| t.pair == gap.pair && gap.contains(t.id) && t.time >= floor)
            .collect();
        found.sort_by_key(|t| t.id);
        found.dedup_by_key(|t| t.id);
        let accounted = found.len() as u64;
        let mut filled = 0;
        for t in found {
            // A refused trade was found all the same: accounted for, never fetched again.
            if self.pass(t, out) {
                filled += 1;
            }
        }
        let unfilled = if mode == Fill::Strict {
            gap.len() - accounted
        } else {
            0
        };
        if let Fill::Since(_) = mode {
            // Start-up fill: report what it found, if anything.
            if filled > 0 {
                out.gaps.push(GapReport {
                    gap,
                    filled,
                    unfilled,
                });
            }
            return;
        }
        if gap.until_id == u64::MAX {
            // An open-ended catch-up: report what it found, if anything.
            if let Some(last) = out.publish.last().filter(|_| filled > 0) {
                out.gaps.push(GapReport {
                    gap: Gap {
                        until_id: last.id,
                        ..gap
                    },
                    filled,
                    unfilled,
                });
            }
            return;
        }
        out.gaps.push(GapReport {
            gap,
            filled,
            unfilled,
        });
    }

    /// Fetches, for every pair with a reference, whatever trades exist after it (best effort).
    /// Called after a reconnect, before reading the new socket.
    pub async fn catch_up(&mut self, filler: &mut impl GapFiller) -> Admitted {
        let mut out = Admitted::default();
        let mut pairs: Vec<(Pair, (u64, Micros))> =
            self.last.iter().map(|(p, l)| (*p, *l)).collect();
        pairs.sort_by_key(|(p, _)| *p);
        for (pair, (after_id, after_time)) in pairs {
            let gap = Gap {
                pair,
                after_id,
                after_time,
                until_id: u64::MAX,
            };
            self.fill(gap, filler, Fill::BestEffort, &mut out).await;
        }
        out
    }

    /// Admits the trades of one frame (`snapshot` for replayed history).
    pub async fn admit(
        &mut self,
        trades: Vec<Trade>,
        snapshot: bool,
        filler: &mut impl GapFiller,
    ) -> Admitted {
        let mut out = Admitted::default();
        // Replayed history of a pair we have never seen: what happened before the start only
        // sets the reference (its newest trade); what happened since is owed like any trade.
        let mut history: HashMap<Pair, Trade> = HashMap::new();
        if snapshot {
            for t in trades.iter().filter(|t| {
                !self.last.contains_key(&t.pair)
                    && self.before_start(t)
                    && self.implausible(t).is_none()
            }) {
                let e = history.entry(t.pair).or_insert(*t);
                if t.id > e.id {
                    *e = *t;
                }
            }
            for t in history.values() {
                self.record(t);
            }
        }
        for t in trades {
            if history.contains_key(&t.pair) && self.before_start(&t) {
                continue;
            }
            match self.last.get(&t.pair).copied() {
                None => {
                    if let Some(start) = self.start.filter(|_| t.id > 1) {
                        let gap = Gap {
                            pair: t.pair,
                            after_id: t.id.saturating_sub(HEAD_LOOKBACK + 1),
                            after_time: start,
                            until_id: t.id - 1,
                        };
                        self.fill(gap, filler, Fill::Since(start), &mut out).await;
                    }
                }
                Some((last, _)) if t.id <= last => {
                    out.duplicates += 1;
                    continue;
                }
                Some((last, after_time)) if t.id > last + 1 => {
                    let gap = Gap {
                        pair: t.pair,
                        after_id: last,
                        after_time,
                        until_id: t.id - 1,
                    };
                    self.fill(gap, filler, Fill::Strict, &mut out).await;
                }
                Some(_) => {}
            }
            self.pass(t, &mut out);
        }
        out
    }

    /// Admits a heartbeat's latest trade ids: any above what was published are fetched.
    pub async fn admit_latest(
        &mut self,
        latest: &[(Pair, u64)],
        filler: &mut impl GapFiller,
    ) -> Admitted {
        let mut out = Admitted::default();
        for &(pair, id) in latest {
            let Some((last, after_time)) = self.last(pair) else {
                continue;
            };
            if id <= last || self.chased.get(&pair).is_some_and(|c| *c >= id) {
                continue;
            }
            self.chased.insert(pair, id);
            let gap = Gap {
                pair,
                after_id: last,
                after_time,
                until_id: id,
            };
            self.fill(gap, filler, Fill::BestEffort, &mut out).await;
        }
        out
    }
}

#[cfg(test)]
mod tests;
