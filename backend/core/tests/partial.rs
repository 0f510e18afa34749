//! Partial candles (issue 15, DESIGN.md "Partial candles"): the real engine marks a window
//! partial when it starts before its exchange's stream was complete (a cold start, for every
//! interval), when it holds a trade after an unfilled gap (and every coarser window and the
//! composite containing it), and keeps the mark across a restart through the published finals.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure with its message.

use candles_core::engine::{ClockMode, Engine, EngineConfig};
use candles_core::time::Duration;
use candles_core::{Candle, Exchange, Interval, Intervals, Micros, Pair, Side, Source, Trade};
use proptest::prelude::*;

/// Midnight UTC (a multiple of every interval used here).
const DAY: i64 = 1_700_006_400_000_000;
const SECOND: i64 = 1_000_000;
/// 15:00:00 that day.
const AT_15: i64 = DAY + 15 * 3600 * SECOND;

fn pair() -> Pair {
    Pair::parse("BTC-USDT").unwrap()
}

fn engine(set: &str) -> Engine {
    let config = EngineConfig {
        grace: Duration::from_millis(500),
        clock: ClockMode::Wall,
        ..EngineConfig::default()
    };
    Engine::with_intervals(config, set.parse::<Intervals>().unwrap())
}

fn trade(exchange: Exchange, id: u64, time: i64) -> Trade {
    let price = format!("{}", 100 + id % 7);
    Trade::new(exchange, pair(), id, &price, "0.5", Side::Buy, Micros(time)).unwrap()
}

/// Every final of `engine` once the clock has passed `until`.
fn finals(engine: &mut Engine, until: i64) -> Vec<Candle> {
    let mut out = Vec::new();
    engine.advance(Micros(until + 2 * SECOND), &mut out);
    out
}

fn find(out: &[Candle], source: Source, interval: &str, start: i64) -> Candle {
    let interval = Interval::parse(interval).unwrap();
    *out.iter()
        .find(|c| {
            c.is_final && c.source == source && c.interval == interval && c.start == Micros(start)
        })
        .unwrap_or_else(|| panic!("no {source:?} {interval:?} candle at {start}"))
}

const BINANCE: Source = Source::Exchange(Exchange::Binance);
const KRAKEN: Source = Source::Exchange(Exchange::Kraken);
const COMPOSITE: Source = Source::Composite;

/// Kraken (resumed, no mark) trades every 0.5 s from 14:59:00; Binance starts cold with
/// `complete_since` on its first trade at 15:00:20.3, then trades every 0.5 s.
fn cold_start(complete_since: i64) -> (Engine, Vec<Candle>) {
    let mut engine = engine("1s,5s,1m,5m,1h,4h,1d");
    let mut live = Vec::new();
    for i in 0..360 {
        engine.apply(&trade(
            Exchange::Kraken,
            1_000 + i,
            AT_15 - 60 * SECOND + i as i64 * SECOND / 2,
        ));
    }
    for i in 0..200 {
        let mut t = trade(
            Exchange::Binance,
            50 + i,
            AT_15 + 20_300_000 + i as i64 * SECOND / 2,
        );
        if i == 0 {
            t.complete_since = Some(Micros(complete_since));
        }
        engine.apply(&t);
        if i == 0 {
            engine.take_updates(&mut live);
        }
    }
    let mut out = finals(&mut engine, AT_15 + 3 * 60 * SECOND);
    engine.flush(&mut out);
    (engine, [live, out].concat())
}

#[test]
fn a_cold_start_makes_every_interval_s_first_window_partial_and_later_ones_complete() {
    // Mid-minute, without the minute's earlier trades: complete since the first trade.
    let (_, out) = cold_start(AT_15 + 20_300_000);
    for (interval, start, partial) in [
        ("1s", AT_15 + 20 * SECOND, true),
        ("1s", AT_15 + 21 * SECOND, false),
        ("5s", AT_15 + 20 * SECOND, true),
        ("5s", AT_15 + 25 * SECOND, false),
        ("1m", AT_15, true),
        ("1m", AT_15 + 60 * SECOND, false),
        ("5m", AT_15, true),
        ("1h", AT_15, true),
        ("4h", DAY + 12 * 3600 * SECOND, true),
        ("1d", DAY, true),
    ] {
        let c = find(&out, BINANCE, interval, start);
        assert_eq!(c.partial, partial, "binance {interval} {c:?}");
        // The composite is partial when Binance's window is.
        assert_eq!(
            find(&out, COMPOSITE, interval, start).partial,
            partial,
            "composite {interval}"
        );
        // Kraken's stream is complete: never partial.
        assert!(
            !find(&out, KRAKEN, interval, start).partial,
            "kraken {interval}"
        );
    }
    // A composite window before Binance's stream began misses Binance's trades: partial.
    assert!(find(&out, COMPOSITE, "1m", AT_15 - 60 * SECOND).partial);
    assert!(!find(&out, KRAKEN, "1m", AT_15 - 60 * SECOND).partial);
    // The live update of the forming window says so too.
    let live = out
        .iter()
        .find(|c| !c.is_final && c.source == BINANCE)
        .unwrap();
    assert!(live.partial, "{live:?}");
}

#[test]
fn a_cold_start_that_fetched_the_minute_leaves_the_minute_complete() {
    let (_, out) = cold_start(AT_15);
    for (interval, start, partial) in [
        ("1s", AT_15 + 20 * SECOND, false),
        ("5s", AT_15 + 20 * SECOND, false),
        ("1m", AT_15, false),
        ("5m", AT_15, false),
        ("1h", AT_15, false),
        ("4h", DAY + 12 * 3600 * SECOND, true),
        ("1d", DAY, true),
    ] {
        assert_eq!(
            find(&out, BINANCE, interval, start).partial,
            partial,
            "binance {interval}"
        );
        assert_eq!(
            find(&out, COMPOSITE, interval, start).partial,
            partial,
            "composite {interval}"
        );
    }
}

#[test]
fn a_trade_after_an_unfilled_gap_makes_its_windows_and_the_composite_partial() {
    let mut engine = engine("1s,5s,1m");
    for i in 0..400 {
        let time = AT_15 + i as i64 * SECOND / 2;
        let mut t = trade(Exchange::Binance, i, time);
        t.after_unfilled_gap = time == AT_15 + 90 * SECOND + SECOND / 2;
        engine.apply(&t);
        engine.apply(&trade(Exchange::Kraken, i, time));
    }
    let out = finals(&mut engine, AT_15 + 200 * SECOND);
    for (interval, start, partial) in [
        ("1s", AT_15 + 90 * SECOND, true),
        ("1s", AT_15 + 89 * SECOND, false),
        ("1s", AT_15 + 91 * SECOND, false),
        ("5s", AT_15 + 90 * SECOND, true),
        ("5s", AT_15 + 95 * SECOND, false),
        ("1m", AT_15 + 60 * SECOND, true),
        ("1m", AT_15, false),
        ("1m", AT_15 + 120 * SECOND, false),
    ] {
        assert_eq!(
            find(&out, BINANCE, interval, start).partial,
            partial,
            "binance {interval} {start}"
        );
        assert_eq!(
            find(&out, COMPOSITE, interval, start).partial,
            partial,
            "composite {interval}"
        );
        assert!(
            !find(&out, KRAKEN, interval, start).partial,
            "kraken {interval}"
        );
    }
}

#[test]
fn a_restart_keeps_the_mark_of_an_open_coarse_window() {
    // Without a restart: the cold start's 1m window is partial.
    let trades: Vec<Trade> = (0..100)
        .map(|i| {
            let mut t = trade(
                Exchange::Coinbase,
                i,
                AT_15 + 20_300_000 + i as i64 * SECOND / 2,
            );
            t.complete_since = (i == 0).then_some(t.time);
            t
        })
        .collect();
    let mut whole = engine("1s,5s,1m");
    for t in &trades {
        whole.apply(t);
    }
    let expected = finals(&mut whole, AT_15 + 120 * SECOND);
    // With a restart at 15:00:40: the first engine published finals up to then; the second is
    // seeded with them, its open 1m window restored from them, and reads the trades again from
    // its oldest open window (the cold trade is not read again).
    let mut first = engine("1s,5s,1m");
    let (before, after): (Vec<Trade>, Vec<Trade>) =
        trades.iter().partition(|t| t.time.0 < AT_15 + 40 * SECOND);
    for t in &before {
        first.apply(t);
    }
    let mut published = finals(&mut first, AT_15 + 38 * SECOND);
    let mut second = engine("1s,5s,1m");
    for c in &published {
        second.seed_interval(c.pair, c.source, c.interval, c.start, c.close);
    }
    second.restore_rollups(pair(), Source::Exchange(Exchange::Coinbase), &published);
    let oldest = first.oldest_open_window().unwrap();
    for t in before.iter().chain(&after).filter(|t| t.time >= oldest) {
        second.apply(t);
    }
    published.extend(finals(&mut second, AT_15 + 120 * SECOND));
    let minute = find(
        &published,
        Source::Exchange(Exchange::Coinbase),
        "1m",
        AT_15,
    );
    assert!(minute.partial, "{minute:?}");
    let mut got: Vec<Candle> = published
        .iter()
        .filter(|c| c.source != COMPOSITE)
        .copied()
        .collect();
    let mut want: Vec<Candle> = expected
        .iter()
        .filter(|c| c.source != COMPOSITE)
        .copied()
        .collect();
    got.sort_by_key(|c| (c.interval, c.start));
    want.sort_by_key(|c| (c.interval, c.start));
    assert_eq!(got, want);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// For random trades of 3 exchanges with random cold and gap marks, every final candle of
    /// every interval is partial exactly when the rules say: its window starts before the
    /// (latest) `complete_since` of its exchange — of any exchange for the composite — or holds
    /// a trade after an unfilled gap of its exchange (any exchange for the composite).
    /// (Each generated trade: exchange, 100 ms step, cold mark, gap mark.)
    #[test]
    fn partial_is_exactly_what_the_rules_say(
        raw in prop::collection::vec((0..3usize, 0..600i64, prop::bool::weighted(0.02), prop::bool::weighted(0.02)), 1..200)
    ) {
        let mut engine = engine("1s,5s,10s,30s");
        let mut ids = [0u64; 3];
        let mut since: [Option<Micros>; 3] = [None; 3];
        let mut gaps: Vec<(usize, Micros)> = Vec::new();
        let mut sorted = raw.clone();
        sorted.sort_by_key(|r| r.1);
        for (e, step, cold, gap) in sorted {
            ids[e] += 1;
            let mut t = trade(Exchange::ALL[e], ids[e], AT_15 + step * SECOND / 10);
            if cold {
                t.complete_since = Some(Micros(t.time.0 - 1_234_567));
                since[e] = since[e].max(t.complete_since);
            }
            t.after_unfilled_gap = gap;
            if gap {
                gaps.push((e, t.time));
            }
            engine.apply(&t);
        }
        let mut out = Vec::new();
        engine.flush(&mut out);
        prop_assert!(!out.is_empty());
        for c in &out {
            let exchanges: Vec<usize> = match c.source {
                Source::Exchange(x) => vec![x.index()],
                Source::Composite => (0..3).collect(),
            };
            let cold = exchanges.iter().any(|&e| since[e].is_some_and(|s| c.start < s));
            let gap = gaps
                .iter()
                .any(|&(e, t)| exchanges.contains(&e) && t >= c.start && t < c.end());
            prop_assert_eq!(c.partial, cold || gap, "{:?}", c);
        }
    }
}
