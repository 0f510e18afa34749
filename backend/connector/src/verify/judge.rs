//! From the exchange's answer to a verdict, the running tally, and the wire form (pure).

use super::schedule::Check;
use candles_core::verify::{ExchangeCandle, FieldDiff, MINUTE, Verdict, verdict};
use candles_core::{Candle, Micros};
use candles_proto::v1;

/// What checking one candle found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every field the exchange publishes is equal.
    Match,
    /// These fields differ.
    Mismatch(Vec<FieldDiff>),
    /// No comparison within the patience, and why.
    Unavailable(String),
    /// Our candle is partial: compared (the reason says how it went), not counted as a match.
    Partial(String),
}

impl Outcome {
    /// The wire enum.
    pub fn wire(&self) -> v1::Outcome {
        match self {
            Outcome::Match => v1::Outcome::Match,
            Outcome::Mismatch(_) => v1::Outcome::Mismatch,
            Outcome::Unavailable(_) => v1::Outcome::Unavailable,
            Outcome::Partial(_) => v1::Outcome::Partial,
        }
    }

    /// `match`, `mismatch`, `unavailable` or `partial`.
    pub fn name(&self) -> &'static str {
        candles_proto::verify::outcome_name(self.wire())
    }
}

/// The running count of verdicts of one pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Verdicts `match`.
    pub matched: u64,
    /// Verdicts `mismatch`.
    pub mismatched: u64,
    /// Verdicts `unavailable`.
    pub unavailable: u64,
    /// Verdicts `partial`.
    pub partial: u64,
}

impl Tally {
    /// Counts `outcome`.
    pub fn record(&mut self, outcome: &Outcome) {
        let n = match outcome {
            Outcome::Match => &mut self.matched,
            Outcome::Mismatch(_) => &mut self.mismatched,
            Outcome::Unavailable(_) => &mut self.unavailable,
            Outcome::Partial(_) => &mut self.partial,
        };
        *n += 1;
    }

    /// The wire form.
    pub fn wire(&self) -> v1::VerificationTally {
        v1::VerificationTally {
            matched: self.matched,
            mismatched: self.mismatched,
            unavailable: self.unavailable,
            partial: self.partial,
        }
    }
}

impl From<&v1::VerificationTally> for Tally {
    fn from(t: &v1::VerificationTally) -> Self {
        Tally {
            matched: t.matched,
            mismatched: t.mismatched,
            unavailable: t.unavailable,
            partial: t.partial,
        }
    }
}

/// What to do after asking the exchange about a check.
#[derive(Debug)]
pub enum Step {
    /// A verdict on the check's candle.
    Done(Candle, Outcome),
    /// No verdict yet: ask again when the check is due.
    Again(Check),
}

/// The step after the exchange's `answer` (its final candle, none yet, or no answer) at `now`.
///
/// Our empty minute (a flat candle, no trade) for which the exchange still has no candle when
/// the patience is spent agrees with it (Coinbase, like the simulators, writes no row for a
/// minute without trades): a match (or partial), not `unavailable`.
pub fn step(check: Check, answer: Result<Option<ExchangeCandle>, String>, now: Micros) -> Step {
    let no_candle = matches!(answer, Ok(None));
    let reason = match answer {
        Ok(Some(theirs)) => {
            let outcome = judge(&check.candle, check.partial, &theirs);
            return Step::Done(check.candle, outcome);
        }
        Ok(None) => "the exchange has no final candle for the minute".to_string(),
        Err(e) => format!("no answer from the exchange: {e}"),
    };
    let mut check = check;
    if check.again(reason, now) {
        return Step::Again(check);
    }
    let outcome = match (no_candle && check.candle.trades == 0, check.partial) {
        (true, false) => Outcome::Match,
        (true, true) => Outcome::Partial(
            "our candle is partial; it has no trade and the exchange has no candle".to_string(),
        ),
        (false, _) => Outcome::Unavailable(check.last_reason),
    };
    Step::Done(check.candle, outcome)
}

/// Compares our candle (known incomplete when `partial`) with the exchange's.
pub fn judge(ours: &Candle, partial: bool, theirs: &ExchangeCandle) -> Outcome {
    match (verdict(ours, theirs), partial) {
        (Verdict::Unavailable(reason), _) => Outcome::Unavailable(reason),
        (Verdict::Match, false) => Outcome::Match,
        (Verdict::Mismatch(diffs), false) => Outcome::Mismatch(diffs),
        (Verdict::Match, true) => {
            Outcome::Partial("our candle is partial; it equals the exchange's".to_string())
        }
        (Verdict::Mismatch(diffs), true) => Outcome::Partial(format!(
            "our candle is partial; it differs in {}",
            describe(&diffs)
        )),
    }
}

/// Every difference, `field ours X theirs Y`, separated by `; `.
pub fn describe(diffs: &[FieldDiff]) -> String {
    let parts: Vec<String> = diffs.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// The wire verdict on `candle` with the pair's tally after it.
pub fn wire(candle: &Candle, outcome: &Outcome, tally: Tally, now: Micros) -> v1::Verification {
    let (diffs, reason) = match outcome {
        Outcome::Match => (Vec::new(), String::new()),
        Outcome::Mismatch(diffs) => (
            diffs.iter().map(v1::FieldDiff::from).collect(),
            String::new(),
        ),
        Outcome::Unavailable(reason) | Outcome::Partial(reason) => (Vec::new(), reason.clone()),
    };
    v1::Verification {
        pair: candle.pair.to_string(),
        source: candle.source.as_str().to_string(),
        interval: Some(candles_proto::duration(MINUTE)),
        start: Some(candles_proto::timestamp(candle.start)),
        outcome: outcome.wire() as i32,
        diffs,
        reason,
        tally: Some(tally.wire()),
        checked_at: Some(candles_proto::timestamp(now)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::verify::Settings;
    use candles_core::verify::Field;
    use candles_core::{Decimal, Exchange, Pair, Source};

    const START: Micros = Micros(1_700_000_040_000_000);

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn ours() -> Candle {
        Candle {
            pair: Pair::parse("BTC-USDT").unwrap(),
            source: Source::Exchange(Exchange::Coinbase),
            interval: MINUTE,
            start: START,
            open: d("100"),
            high: d("101"),
            low: d("99"),
            close: d("100.5"),
            volume: d("3"),
            quote_volume: d("300"),
            buy_volume: d("2"),
            sell_volume: d("1"),
            trades: 3,
            is_final: true,
        }
    }

    fn theirs(volume: &str) -> ExchangeCandle {
        ExchangeCandle {
            start: START,
            open: d("100"),
            high: d("101"),
            low: d("99"),
            close: d("100.5"),
            volume: d(volume),
            ..ExchangeCandle::default()
        }
    }

    fn check(partial: bool) -> Check {
        Check::new(ours(), partial, &Settings::for_exchange(Exchange::Coinbase))
    }

    #[test]
    fn an_answer_is_a_verdict() {
        let Step::Done(_, outcome) = step(check(false), Ok(Some(theirs("3"))), START) else {
            panic!("no verdict");
        };
        assert_eq!(outcome, Outcome::Match);
        let Step::Done(_, Outcome::Mismatch(diffs)) =
            step(check(false), Ok(Some(theirs("3.5"))), START)
        else {
            panic!("no mismatch");
        };
        assert_eq!(diffs[0].field, Field::Volume);
        assert_eq!(describe(&diffs), "volume ours 3 theirs 3.5");
    }

    #[test]
    fn a_partial_candle_is_compared_but_never_a_match() {
        assert_eq!(
            judge(&ours(), true, &theirs("3")),
            Outcome::Partial("our candle is partial; it equals the exchange's".into())
        );
        assert_eq!(
            judge(&ours(), true, &theirs("4")),
            Outcome::Partial("our candle is partial; it differs in volume ours 3 theirs 4".into())
        );
    }

    #[test]
    fn no_candle_or_no_answer_is_asked_again_then_unavailable_with_the_last_reason() {
        let c = check(false);
        let give_up = c.give_up;
        let Step::Again(c) = step(c, Ok(None), START) else {
            panic!("gave up early");
        };
        let Step::Done(_, outcome) = step(c, Err("HTTP 500".into()), give_up) else {
            panic!("never gives up");
        };
        assert_eq!(
            outcome,
            Outcome::Unavailable("no answer from the exchange: HTTP 500".into())
        );
    }

    #[test]
    fn an_empty_minute_without_the_exchanges_candle_is_a_match_at_the_patience() {
        let mut empty = check(false);
        empty.candle.trades = 0;
        empty.candle.volume = Decimal::ZERO;
        let give_up = empty.give_up;
        let Step::Again(empty) = step(empty, Ok(None), START) else {
            panic!("gave up early: the exchange may lag");
        };
        let Step::Done(_, outcome) = step(empty.clone(), Ok(None), give_up) else {
            panic!("never gives up");
        };
        assert_eq!(outcome, Outcome::Match);
        let Step::Done(_, outcome) = step(empty, Err("HTTP 500".into()), give_up) else {
            panic!("never gives up");
        };
        assert!(matches!(outcome, Outcome::Unavailable(_)), "{outcome:?}");
    }

    #[test]
    fn the_tally_counts_each_outcome_and_travels_with_the_verdict() {
        let mut tally = Tally::from(&v1::VerificationTally {
            matched: 57,
            ..Default::default()
        });
        let outcomes = [
            Outcome::Match,
            Outcome::Mismatch(Vec::new()),
            Outcome::Unavailable("x".into()),
            Outcome::Partial("y".into()),
        ];
        for o in &outcomes {
            tally.record(o);
        }
        let v = wire(&ours(), &outcomes[3], tally, Micros(START.0 + 65_000_000));
        assert_eq!(v.pair, "BTC-USDT");
        assert_eq!(v.source, "coinbase");
        assert_eq!(v.outcome, v1::Outcome::Partial as i32);
        assert_eq!(v.reason, "y");
        assert_eq!(
            v.tally,
            Some(v1::VerificationTally {
                matched: 58,
                mismatched: 1,
                unavailable: 1,
                partial: 1
            })
        );
        assert_eq!(v.start, Some(candles_proto::timestamp(START)));
        assert_eq!(v.interval.unwrap().seconds, 60);
    }
}
