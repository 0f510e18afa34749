//! When a check is due and when to give up (pure): the bounded queue of pending checks.
//!
//! A check of the minute `[start, start + 1m)` is first due when the exchange has settled the
//! minute (its end plus [`Settings::settle`]); each time the exchange has no final candle yet or
//! no answer, it is due again after a doubling wait ([`Doubling`]), until
//! [`Settings::patience`] after the minute's end, when it is given up (`unavailable`). The queue
//! holds at most [`Settings::max_pending`] checks: when full, the oldest is dropped (counted).

use candles_core::retry::Doubling;
use candles_core::verify::MINUTE;
use candles_core::{Candle, Exchange, Micros, Pair};
use std::collections::VecDeque;
use std::time::Duration;

/// How the verifier waits for the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// From the minute's end to the first ask (the exchange's candle is final by then).
    pub settle: Duration,
    /// From the minute's end to giving up (re-asking meanwhile).
    pub patience: Duration,
    /// The first wait between two asks; it doubles up to [`Settings::max_retry`].
    pub retry: Duration,
    /// The longest wait between two asks.
    pub max_retry: Duration,
    /// The most checks waiting at once; beyond it the oldest is dropped.
    pub max_pending: usize,
}

impl Settings {
    /// The defaults for `exchange`: Binance's klines are final right after the minute, Kraken's
    /// OHLC row once the next minute has begun, Coinbase may lag (re-asked); 3 minutes'
    /// patience for all.
    pub fn for_exchange(exchange: Exchange) -> Settings {
        let settle = match exchange {
            Exchange::Binance => Duration::from_secs(1),
            Exchange::Kraken => Duration::from_secs(2),
            Exchange::Coinbase => Duration::from_secs(5),
        };
        Settings {
            settle,
            patience: Duration::from_secs(180),
            retry: Duration::from_secs(2),
            max_retry: Duration::from_secs(30),
            max_pending: 1024,
        }
    }
}

/// One candle waiting to be checked.
#[derive(Debug, Clone)]
pub struct Check {
    /// Our final 1-minute candle.
    pub candle: Candle,
    /// Whether our candle is known to be incomplete.
    pub partial: bool,
    /// When to ask the exchange next.
    pub due: Micros,
    /// From then on, no more asks: the verdict is `unavailable`.
    pub give_up: Micros,
    /// Why the last ask gave no verdict (none yet: empty).
    pub last_reason: String,
    wait: Doubling,
}

impl Check {
    /// A check of `candle`, first due when the exchange has settled its minute.
    pub fn new(candle: Candle, partial: bool, settings: &Settings) -> Check {
        let end = MINUTE.window_end(candle.start);
        Check {
            candle,
            partial,
            due: plus(end, settings.settle),
            give_up: plus(end, settings.patience),
            last_reason: String::new(),
            wait: Doubling::new(settings.retry, settings.max_retry),
        }
    }

    /// After an ask that gave no verdict (`reason`) at `now`: `true` with this check due again
    /// after the next doubling wait (never after the give-up time), `false` when the patience
    /// is spent.
    pub fn again(&mut self, reason: String, now: Micros) -> bool {
        self.last_reason = reason;
        if now >= self.give_up {
            return false;
        }
        let next = plus(now, self.wait.next_delay());
        self.due = next.min(self.give_up);
        true
    }

    fn key(&self) -> (Pair, Micros) {
        (self.candle.pair, self.candle.start)
    }
}

fn plus(t: Micros, d: Duration) -> Micros {
    let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    Micros(t.0.saturating_add(us))
}

/// The pending checks, bounded (see the module docs).
#[derive(Debug, Default)]
pub struct Pending {
    checks: VecDeque<Check>,
    max: usize,
    dropped: u64,
}

impl Pending {
    /// An empty queue of at most `max` checks (at least one).
    pub fn new(max: usize) -> Pending {
        Pending {
            checks: VecDeque::new(),
            max: max.max(1),
            dropped: 0,
        }
    }

    /// Adds `check`, unless the same pair and minute is already waiting (`false`). When full,
    /// the oldest minute is dropped first and returned.
    pub fn push(&mut self, check: Check) -> (bool, Option<Check>) {
        if self.checks.iter().any(|c| c.key() == check.key()) {
            return (false, None);
        }
        let mut dropped = None;
        if self.checks.len() >= self.max {
            let oldest = (0..self.checks.len()).min_by_key(|&i| self.checks[i].candle.start);
            dropped = oldest.and_then(|i| self.checks.remove(i));
            self.dropped += 1;
        }
        self.checks.push_back(check);
        (true, dropped)
    }

    /// Puts back a check that was due and asked again (it keeps its place among equals).
    pub fn put_back(&mut self, check: Check) {
        self.push(check);
    }

    /// Takes the check due earliest if it is due at `now`.
    pub fn take_due(&mut self, now: Micros) -> Option<Check> {
        let i = (0..self.checks.len()).min_by_key(|&i| self.checks[i].due)?;
        if self.checks[i].due <= now {
            self.checks.remove(i)
        } else {
            None
        }
    }

    /// When the next check is due (`None`: nothing waits).
    pub fn next_due(&self) -> Option<Micros> {
        self.checks.iter().map(|c| c.due).min()
    }

    /// Checks waiting.
    pub fn len(&self) -> usize {
        self.checks.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Checks dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candles_core::{Decimal, Source};

    const MIN: i64 = 60_000_000;
    const S: i64 = 1_000_000;

    fn candle(pair: &str, minute: i64) -> Candle {
        Candle {
            pair: Pair::parse(pair).unwrap(),
            source: Source::Exchange(Exchange::Binance),
            interval: MINUTE,
            start: Micros(minute * MIN),
            open: Decimal::ONE,
            high: Decimal::ONE,
            low: Decimal::ONE,
            close: Decimal::ONE,
            volume: Decimal::ONE,
            quote_volume: Decimal::ONE,
            buy_volume: Decimal::ONE,
            sell_volume: Decimal::ZERO,
            trades: 1,
            is_final: true,
        }
    }

    fn settings() -> Settings {
        Settings::for_exchange(Exchange::Binance)
    }

    #[test]
    fn a_check_is_due_once_the_exchange_has_settled_the_minute() {
        let c = Check::new(candle("btcusdt", 10), false, &settings());
        assert_eq!(c.due, Micros(11 * MIN + S));
        assert_eq!(c.give_up, Micros(11 * MIN + 180 * S));
        let coinbase = Check::new(
            candle("btcusdt", 10),
            false,
            &Settings::for_exchange(Exchange::Coinbase),
        );
        assert_eq!(coinbase.due, Micros(11 * MIN + 5 * S));
    }

    #[test]
    fn asks_again_after_doubling_waits_then_gives_up_at_the_patience() {
        let mut c = Check::new(candle("btcusdt", 10), false, &settings());
        let mut now = c.due;
        let mut waits = Vec::new();
        while c.again(format!("no candle at {}", now.0), now) {
            waits.push((c.due.0 - now.0) / S);
            now = c.due;
        }
        assert_eq!(c.last_reason, format!("no candle at {}", now.0));
        // 2, 4, 8, 16, 30, 30, ... and the last wait ends exactly at the give-up time.
        assert_eq!(&waits[..6], &[2, 4, 8, 16, 30, 30]);
        assert_eq!(now, Micros(11 * MIN + 180 * S));
        assert_eq!(waits.iter().sum::<i64>(), 179);
    }

    #[test]
    fn the_earliest_due_check_is_taken_only_when_due() {
        let mut p = Pending::new(10);
        p.push(Check::new(candle("ethusdt", 11), false, &settings()));
        p.push(Check::new(candle("btcusdt", 10), false, &settings()));
        assert_eq!(p.next_due(), Some(Micros(11 * MIN + S)));
        assert!(p.take_due(Micros(11 * MIN)).is_none());
        let first = p.take_due(Micros(13 * MIN)).unwrap();
        assert_eq!(first.candle.start, Micros(10 * MIN));
        let second = p.take_due(Micros(13 * MIN)).unwrap();
        assert_eq!(second.candle.pair, Pair::parse("ethusdt").unwrap());
        assert!(p.is_empty());
    }

    #[test]
    fn the_same_minute_is_queued_once() {
        let mut p = Pending::new(10);
        assert!(
            p.push(Check::new(candle("btcusdt", 10), false, &settings()))
                .0
        );
        assert!(
            !p.push(Check::new(candle("btcusdt", 10), true, &settings()))
                .0
        );
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn a_full_queue_drops_the_oldest_minute_and_counts_it() {
        let mut p = Pending::new(2);
        p.push(Check::new(candle("btcusdt", 11), false, &settings()));
        p.push(Check::new(candle("btcusdt", 10), false, &settings()));
        let (queued, dropped) = p.push(Check::new(candle("btcusdt", 12), false, &settings()));
        assert!(queued);
        assert_eq!(dropped.unwrap().candle.start, Micros(10 * MIN));
        assert_eq!(p.dropped(), 1);
        assert_eq!(p.len(), 2);
    }
}
