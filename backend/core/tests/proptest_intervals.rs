//! One engine building several intervals against one engine per interval, on random trades
//! (DESIGN.md "Several intervals in one engine").
//!
//! For random trades of 2 pairs x 3 exchanges, arriving up to 3 x grace after their time (so some
//! are late), the engine with the set `1s,2s,5s,10s,30s` is run next to five single-interval
//! engines fed the same clock and the trades the set's engine admitted (a trade is late when its
//! finest window is final, even if a coarser one is still open). For every interval:
//! - its finals equal the single-interval engine's, in order;
//! - every round of live updates, and every snapshot, holds the same candles;
//! - every coarse final equals the merge of the finals of each finer interval that divides it.
//!
//! And a restart (a new engine seeded with the published finals of every interval, its open
//! coarse windows restored from the published finer finals, the trades read again from the
//! oldest open window) publishes the same candles as a run without one.
//!
//! A unit test shows the merge check catches a broken high, quote volume, open, close or count.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure with its message.

use candles_core::engine::{ClockMode, Engine, EngineConfig};
use candles_core::time::Duration;
use candles_core::{Candle, Decimal, Exchange, Intervals, Micros, Pair, Side, Trade};
use proptest::prelude::*;

const GRACE_US: i64 = 700_000;
/// A multiple of every interval of the set, in 2023.
const T0: i64 = 1_700_000_010_000_000;
const SET: &str = "1s,2s,5s,10s,30s";

/// One generated trade: (pair, exchange, time step of 100 ms, price mantissa, quantity
/// mantissa, quantity scale, side, arrival delay in µs).
type Raw = (usize, usize, i64, i64, i64, u32, usize, i64);

fn raw_trade() -> impl Strategy<Value = Raw> {
    (
        0..2usize,
        0..3usize,
        // 100 ms steps over 90 s: three 30 s windows, empty 1 s windows between trades.
        0..900i64,
        9_990..10_010i64,
        1..100_000i64,
        0..=8u32,
        0..3usize,
        0..=3 * GRACE_US,
    )
}

/// The trades in order of arrival, each with its arrival time.
fn arrivals(raw: &[Raw]) -> Vec<(Trade, Micros)> {
    let mut out: Vec<(Trade, Micros)> = raw
        .iter()
        .enumerate()
        .map(|(id, &(p, e, step, pm, qm, qs, side, delay))| {
            let time = Micros(T0 + step * 100_000);
            let pair = Pair::parse(["BTC-USDT", "ETH-USDT"][p]).unwrap();
            let trade = Trade {
                exchange: Exchange::ALL[e],
                pair,
                id: id as u64,
                price: Decimal::new(pm, 2),
                quantity: Decimal::new(qm, qs),
                side: [Side::Buy, Side::Sell, Side::Unknown][side],
                time,
                received: Micros(time.0 + delay),
                complete_since: None,
                after_unfilled_gap: false,
            };
            (trade, trade.received)
        })
        .collect();
    out.sort_by_key(|(t, at)| (*at, t.id));
    out
}

/// What a run gave: finals in emission order, each round of live updates and each snapshot
/// (sorted by identity, so rounds compare as sets).
#[derive(Debug, Default, PartialEq)]
struct Run {
    finals: Vec<Candle>,
    rounds: Vec<Vec<Candle>>,
    snapshots: Vec<Vec<Candle>>,
}

impl Run {
    /// Only the candles of interval `i`.
    fn of(&self, i: candles_core::Interval) -> Run {
        let keep = |cs: &Vec<Candle>| cs.iter().filter(|c| c.interval == i).copied().collect();
        Run {
            finals: keep(&self.finals),
            rounds: self.rounds.iter().map(keep).collect(),
            snapshots: self.snapshots.iter().map(keep).collect(),
        }
    }
}

fn sorted(mut candles: Vec<Candle>) -> Vec<Candle> {
    candles.sort_by_key(|c| (c.interval, c.start, c.pair, c.source));
    candles
}

/// Drives `engine` over the arrivals (only those `admit` lets through are applied); returns the
/// run and which trades the engine admitted.
fn run(
    mut engine: Engine,
    arrivals: &[(Trade, Micros)],
    admit: &dyn Fn(usize) -> bool,
) -> (Run, Vec<bool>) {
    let mut out = Run::default();
    let mut admitted = Vec::new();
    for (n, (trade, arrival)) in arrivals.iter().enumerate() {
        engine.advance(*arrival, &mut out.finals);
        let applied = admit(n) && engine.apply(trade) == candles_core::Outcome::Applied;
        admitted.push(applied);
        if n % 3 == 0 {
            let mut round = Vec::new();
            engine.take_updates(&mut round);
            out.rounds.push(sorted(round));
        }
        if n % 7 == 0 {
            let mut snapshot = Vec::new();
            engine.snapshot(&mut snapshot);
            out.snapshots.push(sorted(snapshot));
        }
    }
    engine.flush(&mut out.finals);
    (out, admitted)
}

/// Whether `coarse` is the merge of `finer` (a finer interval's finals in its window):
/// `Err` names the first field that differs.
fn check_merge(coarse: &Candle, finer: &[Candle]) -> Result<(), String> {
    let traded: Vec<&Candle> = finer.iter().filter(|c| c.trades > 0).collect();
    let (Some(first), Some(last)) = (traded.first(), traded.last()) else {
        let flat = finer.iter().all(|c| c.close == coarse.close) && coarse.trades == 0;
        return if flat {
            Ok(())
        } else {
            Err("flat close".into())
        };
    };
    let sum = |f: fn(&Candle) -> Decimal| traded.iter().map(|c| f(c)).sum::<Decimal>();
    let checks = [
        ("open", coarse.open == first.open),
        ("close", coarse.close == last.close),
        (
            "high",
            Some(coarse.high) == traded.iter().map(|c| c.high).max(),
        ),
        (
            "low",
            Some(coarse.low) == traded.iter().map(|c| c.low).min(),
        ),
        ("volume", coarse.volume == sum(|c| c.volume)),
        (
            "quote volume",
            coarse.quote_volume == sum(|c| c.quote_volume),
        ),
        ("buy volume", coarse.buy_volume == sum(|c| c.buy_volume)),
        ("sell volume", coarse.sell_volume == sum(|c| c.sell_volume)),
        (
            "trades",
            coarse.trades == traded.iter().map(|c| c.trades).sum(),
        ),
    ];
    match checks.iter().find(|(_, ok)| !ok) {
        Some((field, _)) => Err(format!("{field} of {coarse:?}")),
        None => Ok(()),
    }
}

/// Every coarse final is the merge of the finals of each finer interval that divides it (the
/// finest always does), in its window.
fn check_all_merges(set: &Intervals, finals: &[Candle]) -> Result<(), String> {
    let all = set.as_slice();
    let nested = all.iter().enumerate().flat_map(|(at, &coarse)| {
        all[..at]
            .iter()
            .filter(move |fine| coarse.micros() % fine.micros() == 0)
            .map(move |&fine| (fine, coarse))
    });
    for (fine, coarse) in nested {
        for c in finals.iter().filter(|c| c.interval == coarse) {
            let finer: Vec<Candle> = finals
                .iter()
                .filter(|f| f.interval == fine && f.pair == c.pair && f.source == c.source)
                .filter(|f| f.start >= c.start && f.start < c.end())
                .copied()
                .collect();
            check_merge(c, &finer)?;
        }
    }
    Ok(())
}

fn config(clock: ClockMode, interval: candles_core::Interval) -> EngineConfig {
    EngineConfig {
        interval,
        grace: Duration(GRACE_US),
        clock,
    }
}

fn check(raw: &[Raw]) -> Result<(), TestCaseError> {
    let set: Intervals = SET.parse().unwrap();
    let arrivals = arrivals(raw);
    for clock in [ClockMode::Wall, ClockMode::Event] {
        let engine = Engine::with_intervals(config(clock, set.finest()), set);
        let (all, admitted) = run(engine, &arrivals, &|_| true);
        for &interval in set.as_slice() {
            let direct = Engine::new(config(clock, interval));
            let (direct, _) = run(direct, &arrivals, &|n| admitted[n]);
            let got = all.of(interval);
            prop_assert_eq!(
                &got.finals,
                &direct.finals,
                "{:?} {} finals",
                clock,
                interval
            );
            prop_assert_eq!(
                &got.rounds,
                &direct.rounds,
                "{:?} {} updates",
                clock,
                interval
            );
            prop_assert_eq!(
                &got.snapshots,
                &direct.snapshots,
                "{:?} {}",
                clock,
                interval
            );
        }
        check_all_merges(&set, &all.finals).map_err(TestCaseError::fail)?;
    }
    Ok(())
}

/// The finals a restarted engine adds to those published before the crash: publish-once keeps a
/// series' candle only if it starts after the newest one stored (as the service's Redis script).
fn publish_once(published: &mut Vec<Candle>, more: &[Candle]) {
    for c in more {
        let newest = published
            .iter()
            .filter(|p| p.interval == c.interval && p.pair == c.pair && p.source == c.source)
            .map(|p| p.start)
            .max();
        if newest.is_none_or(|n| c.start > n) {
            published.push(*c);
        }
    }
}

/// A restart at arrival `crash` (the service's recovery): a new engine is seeded with every
/// series' last published final of every interval, gets its open coarse windows back from the
/// published finer finals, and reads the trades again from the first one in a window that was
/// still open. The candles published in the end equal those of a run without a crash.
fn check_restart(raw: &[Raw], crash: Micros) -> Result<(), TestCaseError> {
    let set: Intervals = "1s,5s,10s,30s".parse().unwrap();
    let arrivals = arrivals(raw);
    let engine = || Engine::with_intervals(config(ClockMode::Wall, set.finest()), set);
    let (whole, _) = run(engine(), &arrivals, &|_| true);
    let (before, after) = arrivals.split_at(arrivals.partition_point(|(_, at)| *at < crash));
    let mut first = engine();
    let mut published = Vec::new();
    for (trade, at) in before {
        first.advance(*at, &mut published);
        first.apply(trade);
    }
    let mut second = engine();
    let mut series: Vec<(Pair, candles_core::Source)> = Vec::new();
    for c in &published {
        second.seed_interval(c.pair, c.source, c.interval, c.start, c.close);
        if !series.contains(&(c.pair, c.source)) {
            series.push((c.pair, c.source));
        }
    }
    for (pair, source) in series {
        let of_series: Vec<Candle> = published
            .iter()
            .filter(|c| c.pair == pair && c.source == source)
            .copied()
            .collect();
        second.restore_rollups(pair, source, &of_series);
    }
    let oldest = first.oldest_open_window().unwrap_or(Micros(i64::MAX));
    let resume = before
        .iter()
        .position(|(t, _)| set.finest().window_start(t.time) >= oldest)
        .unwrap_or(before.len());
    let (again, _) = run(second, &[&before[resume..], after].concat(), &|_| true);
    publish_once(&mut published, &again.finals);
    prop_assert_eq!(
        sorted(published),
        sorted(whole.finals),
        "crash at {:?}",
        crash
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_interval_equals_its_direct_build_and_the_merge_of_the_finer(
        raw in prop::collection::vec(raw_trade(), 1..200),
    ) {
        check(&raw)?;
    }

    #[test]
    fn a_restart_publishes_the_candles_of_a_run_without_one(
        raw in prop::collection::vec(raw_trade().prop_map(|mut r| { r.7 /= 3; r }), 1..200),
        crash in 0..900i64,
    ) {
        check_restart(&raw, Micros(T0 + crash * 100_000))?;
    }
}

/// Breaks one field of a candle.
type Break = fn(&mut Candle);

#[test]
fn the_merge_check_catches_a_broken_field() {
    // Trades in two 1 s windows of one 2 s window, one of each side.
    let raw: Vec<Raw> = vec![
        (0, 0, 1, 10_000, 5, 1, 0, 0),
        (0, 1, 3, 10_005, 7, 0, 1, 0),
        (0, 2, 12, 9_995, 3, 2, 2, 0),
        (0, 0, 15, 10_001, 9, 0, 0, 0),
    ];
    let set: Intervals = "1s,2s".parse().unwrap();
    let engine = Engine::with_intervals(config(ClockMode::Event, set.finest()), set);
    let (all, _) = run(engine, &arrivals(&raw), &|_| true);
    check_all_merges(&set, &all.finals).unwrap();
    check(&raw).unwrap();
    let two = set.as_slice()[1];
    let at = all
        .finals
        .iter()
        .position(|c| c.interval == two && c.trades == 4);
    let at = at.expect("the 2 s composite candle of all four trades");
    let breaks: [(&str, Break); 5] = [
        ("high", |c| c.high += Decimal::ONE),
        ("quote volume", |c| c.quote_volume += Decimal::ONE),
        ("open", |c| c.open += Decimal::ONE),
        ("close", |c| c.close -= Decimal::ONE),
        ("trades", |c| c.trades += 1),
    ];
    for (field, break_it) in breaks {
        let mut broken = all.finals.clone();
        break_it(&mut broken[at]);
        let error = check_all_merges(&set, &broken).unwrap_err();
        assert!(error.starts_with(field), "{field}: {error}");
        assert_ne!(broken, all.finals, "and the direct build differs");
    }
}
