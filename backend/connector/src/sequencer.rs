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
            if let Some(why) = self.implausible(&t) {
                // Found, and refused: accounted for, never fetched again.
                self.account(&t);
                out.rejected.push((t, why));
                continue;
            }
            self.record(&t);
            out.publish.push(t);
            filled += 1;
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
            if let Some(why) = self.implausible(&t) {
                self.account(&t);
                out.rejected.push((t, why));
                continue;
            }
            self.record(&t);
            out.publish.push(t);
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
mod tests {
    use super::*;
    use candles_core::{Exchange, Side};

    fn t(pair: &str, id: u64) -> Trade {
        Trade::new(
            Exchange::Binance,
            Pair::parse(pair).unwrap(),
            id,
            "1",
            "1",
            Side::Buy,
            Micros(id as i64),
        )
        .unwrap()
    }

    /// A fake REST: knows some trades, records the gaps asked for.
    #[derive(Default)]
    struct Rest {
        known: Vec<Trade>,
        asked: Vec<Gap>,
    }

    impl GapFiller for Rest {
        async fn fill(&mut self, gap: Gap) -> Vec<Trade> {
            self.asked.push(gap);
            // Deliberately unordered and overlapping, like a careless server.
            self.known.iter().rev().copied().collect()
        }
    }

    fn ids(a: &Admitted) -> Vec<u64> {
        a.publish.iter().map(|t| t.id).collect()
    }

    async fn admit(s: &mut Sequencer, rest: &mut Rest, list: &[u64], snapshot: bool) -> Admitted {
        s.admit(
            list.iter().map(|i| t("BTC-USDT", *i)).collect(),
            snapshot,
            rest,
        )
        .await
    }

    #[tokio::test]
    async fn first_trade_is_the_reference_and_duplicates_are_dropped() {
        let (mut s, mut rest) = (Sequencer::new(), Rest::default());
        let a = admit(&mut s, &mut rest, &[100, 101, 101, 99, 102], false).await;
        assert_eq!(ids(&a), [100, 101, 102]);
        assert_eq!(a.duplicates, 2);
        assert!(rest.asked.is_empty(), "no history backfill on first start");
    }

    #[tokio::test]
    async fn a_gap_is_filled_in_order_before_the_trade_that_revealed_it() {
        let mut s = Sequencer::new();
        let mut rest = Rest {
            known: (1..=20).map(|i| t("BTC-USDT", i)).collect(),
            ..Default::default()
        };
        admit(&mut s, &mut rest, &[5], false).await;
        let a = admit(&mut s, &mut rest, &[9, 10], false).await;
        assert_eq!(ids(&a), [6, 7, 8, 9, 10]);
        assert_eq!(rest.asked.len(), 1);
        assert_eq!((rest.asked[0].after_id, rest.asked[0].until_id), (5, 8));
        assert_eq!(rest.asked[0].after_time, Micros(5));
        assert_eq!(
            a.gaps,
            [GapReport {
                gap: rest.asked[0],
                filled: 3,
                unfilled: 0
            }]
        );
    }

    #[tokio::test]
    async fn an_unfillable_gap_is_reported_and_the_stream_moves_on() {
        let mut s = Sequencer::new();
        let mut rest = Rest {
            known: vec![t("BTC-USDT", 7)],
            ..Default::default()
        };
        admit(&mut s, &mut rest, &[5], false).await;
        let a = admit(&mut s, &mut rest, &[10, 11], false).await;
        assert_eq!(ids(&a), [7, 10, 11]);
        assert_eq!((a.gaps[0].filled, a.gaps[0].unfilled), (1, 3));
        assert_eq!(
            s.last(Pair::parse("BTC-USDT").unwrap()).map(|l| l.0),
            Some(11)
        );
    }

    #[tokio::test]
    async fn snapshots_anchor_on_first_sight_and_bridge_after_a_reconnect() {
        let mut s = Sequencer::new();
        let mut rest = Rest {
            known: (1..=100).map(|i| t("BTC-USDT", i)).collect(),
            ..Default::default()
        };
        // First subscription: the snapshot is history, it only sets the reference.
        let a = admit(&mut s, &mut rest, &[40, 41, 42], true).await;
        assert!(a.publish.is_empty());
        assert_eq!(ids(&admit(&mut s, &mut rest, &[43], false).await), [43]);
        // Reconnect: the snapshot overlaps what we have and reaches past it, with a hole before.
        let a = admit(&mut s, &mut rest, &[42, 43, 47, 48], true).await;
        assert_eq!(ids(&a), [44, 45, 46, 47, 48]);
        assert_eq!(a.duplicates, 2);
        // A last_match that is old news is a duplicate; a newer one is a missed trade.
        assert!(
            admit(&mut s, &mut rest, &[48], true)
                .await
                .publish
                .is_empty()
        );
        assert_eq!(ids(&admit(&mut s, &mut rest, &[49], true).await), [49]);
    }

    #[tokio::test]
    async fn catch_up_fetches_what_happened_while_disconnected() {
        let mut s = Sequencer::new();
        let mut rest = Rest {
            known: (1..=30).map(|i| t("BTC-USDT", i)).collect(),
            ..Default::default()
        };
        assert!(
            s.catch_up(&mut rest).await.publish.is_empty(),
            "nothing to catch up on first start"
        );
        assert!(rest.asked.is_empty());
        admit(&mut s, &mut rest, &[25], false).await;
        let a = s.catch_up(&mut rest).await;
        assert_eq!(ids(&a), [26, 27, 28, 29, 30]);
        assert_eq!(rest.asked[0].until_id, u64::MAX);
        assert_eq!(
            (a.gaps[0].gap.until_id, a.gaps[0].filled, a.gaps[0].unfilled),
            (30, 5, 0)
        );
        // The live stream then repeats some of them: dropped.
        assert_eq!(
            ids(&admit(&mut s, &mut rest, &[29, 30, 31], false).await),
            [31]
        );
        // Nothing new: no report.
        rest.known.clear();
        assert!(s.catch_up(&mut rest).await.gaps.is_empty());
    }

    #[tokio::test]
    async fn trades_made_after_start_but_before_the_first_seen_one_are_fetched() {
        let mut s = Sequencer::starting_at(Micros(40));
        let mut rest = Rest {
            known: (1..=60).map(|i| t("BTC-USDT", i)).collect(),
            ..Default::default()
        };
        // The first live trade is 45; 40..=44 were made after start (time = id here): owed.
        let a = admit(&mut s, &mut rest, &[45, 46], false).await;
        assert_eq!(ids(&a), [40, 41, 42, 43, 44, 45, 46]);
        assert_eq!(rest.asked[0].until_id, 44);
        assert_eq!(rest.asked[0].after_time, Micros(40));
        assert_eq!((a.gaps[0].filled, a.gaps[0].unfilled), (5, 0));
        // A snapshot's trades from before the start only anchor; those made since are owed.
        let eth = |id| t("ETH-USDT", id);
        let a = s
            .admit(vec![eth(38), eth(39), eth(40), eth(41)], true, &mut rest)
            .await;
        assert_eq!(ids(&a), [40, 41]);
        assert_eq!(rest.asked.len(), 1, "anchored: no start-up fill needed");
    }

    /// The wall clock of the bounds tests: 10 000 s after the epoch (ids are times in µs).
    fn clock() -> Micros {
        Micros(10_000_000_000)
    }

    /// A trade at `time`, `id`.
    fn at(id: u64, time: i64) -> Trade {
        let mut x = t("BTC-USDT", id);
        x.time = Micros(time);
        x
    }

    #[tokio::test]
    async fn implausible_times_are_refused_without_a_gap_or_a_refetch() {
        let bounds = TimeBounds {
            max_age: candles_core::time::Duration(1_000_000_000),
            max_lead: candles_core::time::Duration(1_000_000),
        };
        let now = clock().0;
        let far = 4_102_444_800_000_000; // 2100
        let mut s = Sequencer::new().with_time_bounds(bounds, clock);
        let mut rest = Rest {
            // REST knows 12 (dated 1970, i.e. far too old) and 13 (plausible).
            known: vec![at(12, 5), at(13, now)],
            ..Default::default()
        };
        let a = s
            .admit(
                vec![at(10, now), at(11, far), at(14, now)],
                false,
                &mut rest,
            )
            .await;
        // 11 refused on the WebSocket; 12 refused from REST; 13 filled; 14 published.
        assert_eq!(ids(&a), [10, 13, 14]);
        let refused: Vec<u64> = a.rejected.iter().map(|(t, _)| t.id).collect();
        assert_eq!(refused, [11, 12]);
        assert!(matches!(
            a.rejected[0].1,
            ImplausibleTime::TooFarAhead { .. }
        ));
        assert!(matches!(a.rejected[1].1, ImplausibleTime::TooOld { .. }));
        assert_eq!(rest.asked.len(), 1, "only 12..=13 was missing");
        assert_eq!((rest.asked[0].after_id, rest.asked[0].until_id), (11, 13));
        assert_eq!(
            rest.asked[0].after_time,
            Micros(now),
            "the refused trade's time is not used to page REST"
        );
        assert_eq!((a.gaps[0].filled, a.gaps[0].unfilled), (1, 0));
        // The next trade after a refused one is no gap, and nothing is fetched again.
        let a = s
            .admit(vec![at(15, far), at(16, now)], false, &mut rest)
            .await;
        assert_eq!(ids(&a), [16]);
        assert_eq!(rest.asked.len(), 1);
        // Without bounds, any time passes (the library default for tests and replays).
        let mut open = Sequencer::new();
        assert_eq!(
            ids(&open.admit(vec![at(1, far)], false, &mut rest).await),
            [1]
        );
    }

    #[tokio::test]
    async fn pairs_are_independent() {
        let (mut s, mut rest) = (Sequencer::new(), Rest::default());
        let a = s
            .admit(
                vec![t("BTC-USDT", 5), t("ETH-USDT", 900), t("BTC-USDT", 6)],
                false,
                &mut rest,
            )
            .await;
        assert_eq!(ids(&a), [5, 900, 6]);
        assert!(rest.asked.is_empty());
    }

    #[tokio::test]
    async fn heartbeat_ids_chase_missed_tail_trades_once() {
        let mut s = Sequencer::new();
        let mut rest = Rest {
            known: (1..=12).map(|i| t("BTC-USDT", i)).collect(),
            ..Default::default()
        };
        let btc = Pair::parse("BTC-USDT").unwrap();
        // Unknown pair: nothing to compare with.
        assert!(
            s.admit_latest(&[(btc, 12)], &mut rest)
                .await
                .publish
                .is_empty()
        );
        admit(&mut s, &mut rest, &[10], false).await;
        let a = s.admit_latest(&[(btc, 10)], &mut rest).await;
        assert!(a.publish.is_empty() && rest.asked.is_empty());
        let a = s.admit_latest(&[(btc, 14)], &mut rest).await;
        assert_eq!(ids(&a), [11, 12]);
        assert_eq!(
            a.gaps[0].unfilled, 0,
            "best effort: the live trades may still come"
        );
        // The same announcement is not chased again; the live trades still get through.
        assert!(
            s.admit_latest(&[(btc, 14)], &mut rest)
                .await
                .gaps
                .is_empty()
        );
        assert_eq!(
            ids(&admit(&mut s, &mut rest, &[12, 13, 14], false).await),
            [13, 14]
        );
    }
}
