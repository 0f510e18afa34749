//! What `--embedded` keeps of the candles its engine built, so `<` / `>` can refill the chart.
//!
//! The embedded engine builds every interval of `--intervals` but only the shown one reaches the
//! dashboard. Its finals of every interval are kept here, the last [`KEEP`] per pair, source and
//! interval (bounded memory), since the program started: there is no history from before. A
//! switch sends the new interval's finals held, then its forming candles. Pure: no channels.

use candles_core::{Candle, Interval, Pair, Source};
use std::collections::{HashMap, VecDeque};

/// How many finals are kept per pair, source and interval (the oldest are dropped).
pub const KEEP: usize = 1_000;

/// The shown interval and the finals kept of every interval.
#[derive(Clone, Debug)]
pub struct Outlet {
    shown: Interval,
    finals: HashMap<(Interval, Pair, Source), VecDeque<Candle>>,
}

impl Outlet {
    /// Nothing kept yet; `shown` is the interval sent on.
    pub fn new(shown: Interval) -> Outlet {
        Outlet {
            shown,
            finals: HashMap::new(),
        }
    }

    /// The interval whose candles are sent on.
    pub fn shown(&self) -> Interval {
        self.shown
    }

    /// Keeps the finals among `candles` (of every interval), then leaves in `candles` only
    /// those of the shown interval.
    pub fn route(&mut self, candles: &mut Vec<Candle>) {
        for candle in candles.iter().filter(|c| c.is_final) {
            let kept = self
                .finals
                .entry((candle.interval, candle.pair, candle.source))
                .or_default();
            kept.push_back(*candle);
            while kept.len() > KEEP {
                kept.pop_front();
            }
        }
        let shown = self.shown;
        candles.retain(|c| c.interval == shown);
    }

    /// How many finals of `interval` are kept, over every pair and source.
    pub fn held(&self, interval: Interval) -> usize {
        self.finals
            .iter()
            .filter(|((i, _, _), _)| *i == interval)
            .map(|(_, kept)| kept.len())
            .sum()
    }

    /// Shows `to` from now on: appends to `out` its finals kept (each series oldest first),
    /// then those of `forming` (the engine's open windows, any interval) that are of `to`.
    pub fn switch(&mut self, to: Interval, forming: &[Candle], out: &mut Vec<Candle>) {
        self.shown = to;
        let mut series: Vec<_> = self
            .finals
            .iter()
            .filter(|((i, _, _), _)| *i == to)
            .collect();
        series.sort_by_key(|(key, _)| **key);
        for (_, kept) in series {
            out.extend(kept.iter().copied());
        }
        out.extend(forming.iter().filter(|c| c.interval == to).copied());
    }
}

/// What the status line says after a switch to `to` with `held` finals kept of it.
pub fn switch_notice(to: Interval, held: usize) -> String {
    if held == 0 {
        format!(
            "interval {to}: no final candle yet (--embedded has no history from before it \
             started); the chart fills as they finalize"
        )
    } else {
        format!("interval {to}: the {held} final candles built since start (last {KEEP} kept)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candles_core::{Decimal, Micros};

    fn candle(interval: Interval, n: i64, is_final: bool) -> Candle {
        let mut c = Candle::flat(
            Pair::defaults()[0],
            Source::Composite,
            interval,
            Micros(n * interval.micros()),
            Decimal::from(100 + n),
        );
        c.is_final = is_final;
        c
    }

    #[test]
    fn only_the_shown_interval_goes_on_and_finals_of_every_interval_are_kept() {
        let (s1, s5) = (Interval::seconds(1), Interval::seconds(5));
        let mut outlet = Outlet::new(s1);
        let mut batch = vec![
            candle(s1, 0, true),
            candle(s5, 0, true),
            candle(s1, 1, false),
            candle(s5, 1, false),
        ];
        outlet.route(&mut batch);
        assert_eq!(batch, vec![candle(s1, 0, true), candle(s1, 1, false)]);
        assert_eq!((outlet.held(s1), outlet.held(s5)), (1, 1));
        let mut out = Vec::new();
        outlet.switch(s5, &[candle(s1, 1, false), candle(s5, 1, false)], &mut out);
        assert_eq!(out, vec![candle(s5, 0, true), candle(s5, 1, false)]);
        assert_eq!(outlet.shown(), s5);
        let mut batch = vec![candle(s1, 2, true), candle(s5, 1, true)];
        outlet.route(&mut batch);
        assert_eq!(batch, vec![candle(s5, 1, true)]);
    }

    #[test]
    fn at_most_keep_finals_per_series_the_newest() {
        let s1 = Interval::seconds(1);
        let mut outlet = Outlet::new(s1);
        let mut batch: Vec<Candle> = (0..KEEP as i64 + 5).map(|n| candle(s1, n, true)).collect();
        outlet.route(&mut batch);
        assert_eq!(outlet.held(s1), KEEP);
        let mut out = Vec::new();
        outlet.switch(s1, &[], &mut out);
        assert_eq!(out.first(), Some(&candle(s1, 5, true)));
        assert_eq!(out.last(), Some(&candle(s1, KEEP as i64 + 4, true)));
    }

    #[test]
    fn the_notice_says_when_nothing_is_held_yet() {
        assert!(switch_notice(Interval::seconds(3_600), 0).contains("fills as they finalize"));
        assert!(switch_notice(Interval::seconds(5), 12).contains("12 final candles"));
    }
}
