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
//! - the stream marks ([`Trade::complete_since`], [`Trade::after_unfilled_gap`], DESIGN.md
//!   "Partial candles"): the first published trade of a pair that starts cold (no reference:
//!   nothing of it published before) carries the instant from which every trade of the pair is
//!   published — the start when the start-up fill (which asks for the first live trade too,
//!   so an answer holding it is known to be whole up to it) reached back to it (a trade before
//!   the start, or an id below the fetched run that the exchange did not serve from the start
//!   on), else just after the first trade of the contiguous run the stream begins with; never
//!   later than just after the pair's first live trade (a replay's trades are all older than
//!   the start). A resumed pair
//!   (see [`Sequencer::resuming`]) is not cold. The next published trade after ids a strict gap
//!   fill could not fetch carries `after_unfilled_gap`. A mark waits for the next *published*
//!   trade of its pair (a refused one passes it on);
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

/// How many ids the start-up fill asks for: the pair's first trade and the ids before it.
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

/// Marks waiting for the next published trade of a pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Marks {
    complete_since: Option<Micros>,
    after_unfilled_gap: bool,
}

/// From when `found` (trades of `gap`, sorted by id, unique, before any time filter) holds
/// every trade up to the gap's end: `floor` when the contiguous run that ends at the gap's last
/// id reaches a trade made before `floor`, or stops above an id the exchange did not serve (a
/// time-paged answer starts at `floor`, an id-paged one ran out of older trades); just after
/// the run's first trade when the run is the whole look-back and starts after `floor`; `None`
/// when the gap's last id was not found.
fn complete_from(found: &[Trade], gap: &Gap, floor: Micros) -> Option<Micros> {
    let last = found.last().filter(|t| t.id == gap.until_id)?;
    let mut first = last;
    for t in found.iter().rev().skip(1) {
        if t.id + 1 != first.id {
            break;
        }
        first = t;
    }
    if first.time < floor || first.id > gap.after_id + 1 {
        Some(floor)
    } else {
        Some(Micros(first.time.0.saturating_add(1)))
    }
}

/// The last published trade of each pair.
#[derive(Debug, Clone, Default)]
pub struct Sequencer {
    /// When the connector started: trades from then on are owed to the sink.
    start: Option<Micros>,
    last: HashMap<Pair, (u64, Micros)>,
    /// The highest heartbeat-announced id already chased, per pair.
    chased: HashMap<Pair, u64>,
    /// Marks for the next published trade, per pair.
    pending: HashMap<Pair, Marks>,
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

    /// The next trade of its pair in id order: published (with the pair's waiting marks), or
    /// refused for an implausible time (and accounted for either way). Whether it is published.
    fn pass(&mut self, mut t: Trade, out: &mut Admitted) -> bool {
        if let Some(why) = self.implausible(&t) {
            self.account(&t);
            out.rejected.push((t, why));
            return false;
        }
        if let Some(marks) = self.pending.remove(&t.pair) {
            t.complete_since = marks.complete_since;
            t.after_unfilled_gap |= marks.after_unfilled_gap;
        }
        self.record(&t);
        out.publish.push(t);
        true
    }

    /// The next published trade of `pair` starts its cold stream, complete from `since`.
    fn mark_cold(&mut self, pair: Pair, since: Micros) {
        self.pending.entry(pair).or_default().complete_since = Some(since);
    }

    /// The next published trade of `pair` follows trades that could not be fetched.
    fn mark_unfilled(&mut self, pair: Pair) {
        self.pending.entry(pair).or_default().after_unfilled_gap = true;
    }

    /// Fetches `gap` and publishes what it finds (see [`Fill`]); for a start-up fill, from
    /// when the found trades are complete ([`complete_from`]).
    async fn fill(
        &mut self,
        gap: Gap,
        filler: &mut impl GapFiller,
        mode: Fill,
        out: &mut Admitted,
    ) -> Option<Micros> {
        let floor = match mode {
            Fill::Since(start) => start,
            _ => Micros(i64::MIN),
        };
        let mut found: Vec<Trade> = filler
            .fill(gap)
            .await
            .into_iter()
            .filter(|t| t.pair == gap.pair && gap.contains(t.id))
            .collect();
        found.sort_by_key(|t| t.id);
        found.dedup_by_key(|t| t.id);
        let complete = complete_from(&found, &gap, floor);
        // A start-up fill asks for the first live trade too (its presence shows the answer is
        // whole up to it), which is published after the fill, not by it.
        let end = match mode {
            Fill::Since(_) => gap.until_id,
            _ => u64::MAX,
        };
        found.retain(|t| t.time >= floor && t.id < end);
        let accounted = found.len() as u64;
        let mut filled = 0;
        let mut previous = gap.after_id;
        for t in found {
            if mode == Fill::Strict && t.id != previous + 1 {
                self.mark_unfilled(t.pair);
            }
            previous = t.id;
            // A refused trade was found all the same: accounted for, never fetched again.
            if self.pass(t, out) {
                filled += 1;
            }
        }
        if mode == Fill::Strict && previous != gap.until_id {
            self.mark_unfilled(gap.pair);
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
            return complete;
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
            return None;
        }
        out.gaps.push(GapReport {
            gap,
            filled,
            unfilled,
        });
        None
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
                // Everything after the reference is owed and checked for gaps.
                let after = Micros(t.time.0.saturating_add(1));
                let since = self.start.map_or(after, |start| start.min(after));
                self.mark_cold(t.pair, since);
            }
        }
        for t in trades {
            if history.contains_key(&t.pair) && self.before_start(&t) {
                continue;
            }
            match self.last.get(&t.pair).copied() {
                None => self.first_of_pair(&t, filler, &mut out).await,
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

    /// The first trade of a pair with no reference (a cold start): fetches what was made
    /// since the start before it (see the module docs) and marks the stream's first trade.
    async fn first_of_pair(&mut self, t: &Trade, filler: &mut impl GapFiller, out: &mut Admitted) {
        let mut since = None;
        if let Some(start) = self.start.filter(|_| t.id > 1) {
            let gap = Gap {
                pair: t.pair,
                after_id: t.id.saturating_sub(HEAD_LOOKBACK),
                after_time: start,
                until_id: t.id,
            };
            since = self.fill(gap, filler, Fill::Since(start), out).await;
        }
        // Every trade after `t` is owed and checked for gaps, whatever the fill found (a
        // replay's trades are all older than the start).
        let after = Micros(t.time.0.saturating_add(1));
        let since = since.map_or(after, |since| since.min(after));
        // The fill may have published trades: the mark goes on the stream's first one.
        match out.publish.iter_mut().find(|p| p.pair == t.pair) {
            Some(first) => first.complete_since = Some(since),
            None => self.mark_cold(t.pair, since),
        }
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
