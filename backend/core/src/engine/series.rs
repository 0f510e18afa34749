//! One pair's series inside the engine: each exchange's open windows, the pair's composite
//! (merged from its exchanges' windows when needed) ([`PairState`]), and the rollups of the
//! coarser intervals fed by their finals.

use super::rollup::{At, Rollup};
use super::window::{Key, Progress, Window};
use crate::candle::Candle;
use crate::intervals::Intervals;
use crate::market::{Exchange, Source};
use crate::pair::Pair;
use crate::time::{Interval, Micros};
use crate::trade::Trade;
use rust_decimal::Decimal;
use std::collections::VecDeque;

/// One exchange's series of one pair: its open windows (sorted by start), its progress, and
/// since when its stream is complete.
#[derive(Clone, Debug, Default)]
pub(super) struct Series {
    pub(super) open: VecDeque<Window>,
    pub(super) progress: Progress,
    /// The latest [`Trade::complete_since`] seen: a window of any interval starting before it is
    /// partial for this exchange (and the pair's composite).
    pub(super) complete_since: Option<Micros>,
}

impl Series {
    /// Adds a trade to its window (and takes its cold-start mark).
    #[inline]
    pub(super) fn add(&mut self, start: Micros, key: Key, trade: &Trade, notional: Decimal) {
        if trade.complete_since.is_some() {
            self.complete_since = self.complete_since.max(trade.complete_since);
        }
        // Most trades land in the newest window: search from the back.
        let mut at = self.open.len();
        while at > 0 {
            let w = &mut self.open[at - 1];
            if w.start == start {
                w.add(key, trade, notional);
                return;
            }
            if w.start < start {
                break;
            }
            at -= 1;
        }
        self.open
            .insert(at, Window::new(start, key, trade, notional));
    }

    /// Finalizes every window that starts before `before`, appending candles to `out`, and
    /// folds each final window into the coarser intervals' `rollups` (one per `coarse` interval).
    fn finalize(
        &mut self,
        pair: Pair,
        source: Source,
        interval: Interval,
        before: Micros,
        (coarse, rollups): (&[Interval], &mut [Rollup]),
        out: &mut Vec<Candle>,
    ) {
        // Windows this series already has a final for (seeded) were kept for the composite only.
        while self
            .open
            .front()
            .is_some_and(|w| self.progress.is_final(w.start))
        {
            self.open.pop_front();
        }
        while let Some(next) = self
            .progress
            .next_before(self.open.front().map(|w| w.start), before)
        {
            let window = self.open.front().copied().filter(|w| w.start == next);
            let Some(candle) =
                self.progress
                    .final_candle(window.as_ref(), pair, source, interval, next)
            else {
                return;
            };
            out.push(candle);
            if let Some(w) = window {
                self.open.pop_front();
                fold(&w, w.dirty, (pair, source), (coarse, rollups), out);
            }
        }
    }
}

/// Folds the finest interval's final window `w` into each coarse interval's rollup.
fn fold(
    w: &Window,
    dirty: bool,
    (pair, source): (Pair, Source),
    (coarse, rollups): (&[Interval], &mut [Rollup]),
    out: &mut Vec<Candle>,
) {
    for (rollup, &interval) in rollups.iter_mut().zip(coarse) {
        let at = At {
            pair,
            source,
            interval,
        };
        rollup.fold(w, dirty, at, out);
    }
}

/// All series of one pair: one per exchange, and the composite's progress (its windows are
/// merged from the exchanges' when needed).
#[derive(Clone, Debug)]
pub(super) struct PairState {
    pub(super) pair: Pair,
    pub(super) composite: Progress,
    pub(super) exchanges: [Series; Exchange::COUNT],
    /// The coarser intervals' series: for each source (the exchanges in [`Exchange::ALL`]
    /// order, then the composite), one [`Rollup`] per coarse interval.
    rollups: Vec<Rollup>,
}

/// How many sources a pair has: its exchanges and the composite.
const SOURCES: usize = Exchange::COUNT + 1;

/// The source of rollup slot `slot`.
fn slot_source(slot: usize) -> Source {
    Exchange::ALL
        .get(slot)
        .map_or(Source::Composite, |&e| Source::Exchange(e))
}

/// A cursor over the windows of a pair's exchanges, in order of window start.
#[derive(Default)]
struct Cursor([usize; Exchange::COUNT]);

impl Cursor {
    /// The earliest window start at or after the cursor in any exchange.
    fn peek(&self, exchanges: &[Series; Exchange::COUNT]) -> Option<Micros> {
        exchanges
            .iter()
            .zip(self.0)
            .filter_map(|(s, at)| s.open.get(at).map(|w| w.start))
            .min()
    }

    /// Merges the exchanges' windows that start at `start` (skipping earlier ones), moves past
    /// them, and says whether any had changed since the last composite snapshot.
    fn merge_at(
        &mut self,
        exchanges: &[Series; Exchange::COUNT],
        start: Micros,
    ) -> (Option<Window>, bool) {
        let mut merged: Option<Window> = None;
        let mut dirty = false;
        for (series, at) in exchanges.iter().zip(self.0.iter_mut()) {
            while let Some(w) = series.open.get(*at) {
                if w.start > start {
                    break;
                }
                *at += 1;
                if w.start == start {
                    dirty |= w.composite_dirty;
                    match &mut merged {
                        Some(m) => m.merge(w),
                        None => merged = Some(*w),
                    }
                }
            }
        }
        (merged, dirty)
    }
}

impl PairState {
    /// A pair with nothing in it, built for `coarse` intervals besides the finest.
    pub(super) fn new(pair: Pair, coarse: usize) -> PairState {
        PairState {
            pair,
            composite: Progress::default(),
            exchanges: Default::default(),
            rollups: vec![Rollup::default(); coarse * SOURCES],
        }
    }

    /// The rollup of `source` for coarse interval number `k` of `coarse` of them.
    pub(super) fn rollup_mut(&mut self, source: Source, k: usize, coarse: usize) -> &mut Rollup {
        let slot = match source {
            Source::Exchange(e) => e.index(),
            Source::Composite => Exchange::COUNT,
        };
        &mut self.rollups[slot * coarse + k]
    }

    /// The rollups of source slot `slot` (one per coarse interval).
    fn rollups_of(&mut self, slot: usize, coarse: usize) -> &mut [Rollup] {
        &mut self.rollups[slot * coarse..(slot + 1) * coarse]
    }

    /// Finalizes every finest window of every series of this pair that starts before `before`
    /// and folds them into the coarser intervals' rollups.
    pub(super) fn finalize(
        &mut self,
        intervals: &Intervals,
        before: Micros,
        out: &mut Vec<Candle>,
    ) {
        let first = out.len();
        self.finalize_finest(intervals, before, out);
        self.mark_partial(&mut out[first..]);
    }

    /// [`PairState::finalize`] before the partial marks.
    fn finalize_finest(&mut self, intervals: &Intervals, before: Micros, out: &mut Vec<Candle>) {
        let pair = self.pair;
        let interval = intervals.finest();
        let coarse = intervals.coarser();
        let n = coarse.len();
        let (exchange_rollups, composite_rollups) = self.rollups.split_at_mut(Exchange::COUNT * n);
        // The composite first: it reads the exchanges' windows, which their finalization removes.
        let mut cursor = Cursor::default();
        while let Some(next) = self
            .composite
            .next_before(cursor.peek(&self.exchanges), before)
        {
            let (window, dirty) = cursor.merge_at(&self.exchanges, next);
            match self.composite.final_candle(
                window.as_ref(),
                pair,
                Source::Composite,
                interval,
                next,
            ) {
                Some(candle) => out.push(candle),
                None => break,
            }
            if let Some(w) = window {
                let to = (coarse, &mut *composite_rollups);
                fold(&w, dirty, (pair, Source::Composite), to, out);
            }
        }
        for (i, (series, e)) in self.exchanges.iter_mut().zip(Exchange::ALL).enumerate() {
            let rollups = &mut exchange_rollups[i * n..(i + 1) * n];
            series.finalize(
                pair,
                Source::Exchange(e),
                interval,
                before,
                (coarse, rollups),
                out,
            );
        }
    }

    /// Finalizes every coarse window that starts before its interval's entry of `before` (one
    /// per coarse interval), flat candles included.
    pub(super) fn finalize_rollups(
        &mut self,
        coarse: &[Interval],
        before: &[Micros],
        out: &mut Vec<Candle>,
    ) {
        let first = out.len();
        let pair = self.pair;
        for slot in 0..SOURCES {
            let source = slot_source(slot);
            let rollups = self.rollups_of(slot, coarse.len());
            for ((rollup, &interval), &before) in rollups.iter_mut().zip(coarse).zip(before) {
                let at = At {
                    pair,
                    source,
                    interval,
                };
                rollup.finalize_before(before, at, out);
            }
        }
        self.mark_partial(&mut out[first..]);
    }

    /// Whether the window of `source` starting at `start` (any interval) began before the
    /// stream of its exchange (of any exchange, for the composite) was complete.
    fn before_complete(&self, source: Source, start: Micros) -> bool {
        let incomplete = |s: &Series| s.complete_since.is_some_and(|since| start < since);
        match source {
            Source::Exchange(e) => incomplete(&self.exchanges[e.index()]),
            Source::Composite => self.exchanges.iter().any(incomplete),
        }
    }

    /// Marks as partial each of this pair's `candles` whose window began before its stream was
    /// complete (the marks carried by the windows themselves are already in).
    fn mark_partial(&self, candles: &mut [Candle]) {
        if self.exchanges.iter().all(|s| s.complete_since.is_none()) {
            return;
        }
        for c in candles {
            c.partial |= self.before_complete(c.source, c.start);
        }
    }

    /// The latest end of a coarse window of interval number `k` (of the coarse ones) being
    /// rolled up in any series of this pair.
    pub(super) fn rollup_end(&self, k: usize, coarse: &[Interval]) -> Option<Micros> {
        (0..SOURCES)
            .filter_map(|slot| self.rollups[slot * coarse.len() + k].open_end(coarse[k]))
            .max()
    }

    /// In-progress candles of every open window of every interval, or only of those changed
    /// since the last [`PairState::mark_unchanged`] if `changed_only`.
    pub(super) fn in_progress(
        &self,
        intervals: &Intervals,
        changed_only: bool,
        out: &mut Vec<Candle>,
    ) {
        let first = out.len();
        let pair = self.pair;
        let interval = intervals.finest();
        let mut cursor = Cursor::default();
        while let Some(start) = cursor.peek(&self.exchanges) {
            let (window, dirty) = cursor.merge_at(&self.exchanges, start);
            if let Some(w) = window
                && (dirty || !changed_only)
                && !self.composite.is_final(start)
            {
                out.push(w.candle(pair, Source::Composite, interval, false));
            }
        }
        for (series, e) in self.exchanges.iter().zip(Exchange::ALL) {
            for w in &series.open {
                if (w.dirty || !changed_only) && !series.progress.is_final(w.start) {
                    out.push(w.candle(pair, Source::Exchange(e), interval, false));
                }
            }
        }
        self.rollups_in_progress(intervals.coarser(), changed_only, out);
        self.mark_partial(&mut out[first..]);
    }

    /// In-progress candles of the coarse windows: what is rolled up plus the open finest windows.
    fn rollups_in_progress(&self, coarse: &[Interval], changed_only: bool, out: &mut Vec<Candle>) {
        let n = coarse.len();
        for slot in 0..SOURCES {
            let source = slot_source(slot);
            for (k, &interval) in coarse.iter().enumerate() {
                let at = At {
                    pair: self.pair,
                    source,
                    interval,
                };
                let rollup = &self.rollups[slot * n + k];
                match self.exchanges.get(slot) {
                    Some(series) => {
                        let open = series.open.iter().map(|w| (*w, w.dirty));
                        rollup.in_progress(open, at, changed_only, out);
                    }
                    None => {
                        let mut cursor = Cursor::default();
                        let open = std::iter::from_fn(|| {
                            let start = cursor.peek(&self.exchanges)?;
                            let (w, dirty) = cursor.merge_at(&self.exchanges, start);
                            w.map(|w| (w, dirty))
                        });
                        rollup.in_progress(open, at, changed_only, out);
                    }
                }
            }
        }
    }

    /// Marks every window as reported by a live update.
    pub(super) fn mark_unchanged(&mut self) {
        for w in self.exchanges.iter_mut().flat_map(|s| s.open.iter_mut()) {
            w.dirty = false;
            w.composite_dirty = false;
        }
        for rollup in &mut self.rollups {
            rollup.mark_unchanged();
        }
    }
}
