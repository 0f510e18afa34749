//! A coarser interval's series, rolled up from the finest interval's windows (DESIGN.md
//! "Several intervals in one engine").
//!
//! A trade touches only the finest window. When a finest window is final, it is merged into the
//! coarse window that contains it ([`Rollup::fold`]), with the same exact merge that builds the
//! composite from the exchanges, so the coarse candle equals the one built directly from the
//! same trades. Coarse windows are finalized by their own clock edge (their end plus the grace)
//! with the same [`Progress`] rules as the finest (flat candles for empty windows, the quiet
//! limit). Live updates and snapshots add the finest windows still open to the rolled-up part.

use super::window::{Progress, Window};
use crate::candle::Candle;
use crate::market::Source;
use crate::pair::Pair;
use crate::time::{Interval, Micros};
use rust_decimal::Decimal;

/// Which series and interval a rollup builds.
#[derive(Clone, Copy, Debug)]
pub(super) struct At {
    /// The pair.
    pub(super) pair: Pair,
    /// The exchange or the composite.
    pub(super) source: Source,
    /// The coarse interval.
    pub(super) interval: Interval,
}

/// One coarse series (a pair, source and coarse interval): the finest finals rolled up so far
/// into its open window, and where it stands in its run of final candles.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Rollup {
    progress: Progress,
    /// The coarse window being rolled up (its `start` is the coarse window's start).
    open: Option<Window>,
    /// A finest window folded into `open` had changed since the last live update.
    dirty: bool,
}

impl Rollup {
    /// Folds the finest interval's final window `w` (changed since the last live update if
    /// `dirty`) into the coarse window that contains it. Coarse windows before that one are
    /// complete (finest finals come in order) and are finalized into `out` first.
    pub(super) fn fold(&mut self, w: &Window, dirty: bool, at: At, out: &mut Vec<Candle>) {
        let start = at.interval.window_start(w.start);
        self.finalize_before(start, at, out);
        if self.progress.is_final(start) {
            return;
        }
        match &mut self.open {
            Some(open) if open.start == start => open.merge(w),
            _ => {
                let mut open = *w;
                open.start = start;
                self.open = Some(open);
            }
        }
        self.dirty |= dirty;
    }

    /// Finalizes every coarse window that starts before `before` into `out` (flat candles for
    /// empty ones).
    pub(super) fn finalize_before(&mut self, before: Micros, at: At, out: &mut Vec<Candle>) {
        while let Some(next) = self
            .progress
            .next_before(self.open.map(|w| w.start), before)
        {
            let window = self.open.filter(|w| w.start == next);
            let Some(candle) =
                self.progress
                    .final_candle(window.as_ref(), at.pair, at.source, at.interval, next)
            else {
                return;
            };
            if window.is_some() {
                self.open = None;
                self.dirty = false;
            }
            out.push(candle);
        }
    }

    /// The window of this interval starting at `start` was already finalized elsewhere with
    /// close `close` (read back after a restart).
    pub(super) fn seed(&mut self, start: Micros, close: Decimal, interval: Interval) {
        self.progress.seed(interval.window_end(start), close);
        if self.open.is_some_and(|w| self.progress.is_final(w.start)) {
            self.open = None;
        }
    }

    /// Restores the rolled-up part of the open coarse window after a restart from `finals`
    /// (published finals of this series of finer intervals, any order): from the start of the
    /// open window (after the last final, or the earliest candle's window), the coarsest candle
    /// that starts next is folded in, then the one after its end, and so on, so every finer
    /// window is counted once. Their trades are not applied again: the finest interval is
    /// seeded past them.
    pub(super) fn restore(&mut self, finals: &[Candle], at: At) {
        let finer = || finals.iter().filter(|c| c.interval < at.interval);
        let Some(first) = self
            .progress
            .next_emit
            .or_else(|| finer().map(|c| at.interval.window_start(c.start)).min())
        else {
            return;
        };
        let end = at.interval.window_end(first);
        let mut from = first;
        while let Some(c) = finer()
            .filter(|c| c.start >= from && c.end() <= end)
            .min_by_key(|c| (c.start, std::cmp::Reverse(c.interval)))
        {
            if c.trades > 0 {
                let mut w = Window::restored(c);
                w.start = first;
                match &mut self.open {
                    Some(open) if open.start == first => open.merge(&w),
                    _ => self.open = Some(w),
                }
            }
            from = c.end();
        }
    }

    /// The end of the coarse window being rolled up, if any.
    pub(super) fn open_end(&self, interval: Interval) -> Option<Micros> {
        self.open.map(|w| interval.window_end(w.start))
    }

    /// In-progress candles of the coarse windows: the rolled-up part plus the finest windows
    /// still open (`open`, in order of start, each with whether it changed since the last live
    /// update); only changed ones if `changed_only`.
    pub(super) fn in_progress(
        &self,
        open: impl Iterator<Item = (Window, bool)>,
        at: At,
        changed_only: bool,
        out: &mut Vec<Candle>,
    ) {
        let mut current = self.open.map(|w| (w, self.dirty));
        for (w, dirty) in open {
            let start = at.interval.window_start(w.start);
            match &mut current {
                Some((merged, changed)) if merged.start == start => {
                    merged.merge(&w);
                    *changed |= dirty;
                }
                _ => {
                    if let Some((merged, changed)) = current {
                        self.forming(&merged, changed, at, changed_only, out);
                    }
                    let mut merged = w;
                    merged.start = start;
                    current = Some((merged, dirty));
                }
            }
        }
        if let Some((merged, changed)) = current {
            self.forming(&merged, changed, at, changed_only, out);
        }
    }

    /// Appends the in-progress candle of `window` unless it is final, or unchanged and only
    /// changed ones are asked for.
    fn forming(
        &self,
        window: &Window,
        changed: bool,
        at: At,
        changed_only: bool,
        out: &mut Vec<Candle>,
    ) {
        if (changed || !changed_only) && !self.progress.is_final(window.start) {
            out.push(window.candle(at.pair, at.source, at.interval, false));
        }
    }

    /// The rolled-up part was reported by a live update.
    pub(super) fn mark_unchanged(&mut self) {
        self.dirty = false;
    }
}
