//! The engine against a deliberately naive reference, on random trades.
//!
//! The reference collects every trade, groups them by (pair, source, window), sorts each group
//! by the documented key (trade time, exchange order, trade id), computes OHLCV, and fills every
//! empty window from a series' first trade to the last window with a flat candle at the previous
//! close. The engine sees the same trades for 2 pairs x 3 exchanges in a random arrival order:
//! each trade arrives up to the grace period after its trade time (so none is late), with the
//! clock driven by the arrival time (wall) or by the trades themselves (event). Every final
//! candle must equal the reference's, in order, with no late trade and no duplicate. A third
//! property lets trades arrive up to 3 x grace late and checks that exactly the trades a naive
//! rule calls late (window end + grace reached by the clock on arrival) are counted and left out.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure with its message.

use candles_core::engine::{ClockMode, Engine, EngineConfig, Outcome};
use candles_core::time::Duration;
use candles_core::{
    Candle, CandleId, Decimal, Exchange, Interval, Micros, Pair, Side, Source, Trade,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};

const INTERVAL_US: i64 = 5_000_000;
const GRACE_US: i64 = 1_500_000;
/// A multiple of the interval, in 2023.
const T0: i64 = 1_700_000_000_000_000;

fn config(clock: ClockMode) -> EngineConfig {
    EngineConfig {
        interval: Interval::from_micros(INTERVAL_US).unwrap(),
        grace: Duration(GRACE_US),
        clock,
    }
}

fn pairs() -> [Pair; 2] {
    [
        Pair::parse("BTC-USDT").unwrap(),
        Pair::parse("ETH-USDT").unwrap(),
    ]
}

/// One generated trade: (pair, exchange, time step of 250 ms, price mantissa, price scale,
/// quantity mantissa, quantity scale, side, arrival delay in µs).
type Raw = (usize, usize, i64, i64, u32, i64, u32, usize, i64);

fn raw_trade() -> impl Strategy<Value = Raw> {
    (
        0..2usize,
        0..3usize,
        // 250 ms steps over 24 windows: many equal times, and empty windows between trades.
        0..480i64,
        9_990..10_010i64,
        1..=3u32,
        1..100_000i64,
        0..=8u32,
        0..3usize,
        0..=GRACE_US,
    )
}

/// Builds the trades (ids increasing per pair and exchange in trade-time order, from a random
/// first id per pair and exchange so that id order across exchanges means nothing) and their
/// arrival order (by trade time + delay).
fn build(raw: &[Raw], first_ids: [u64; 6]) -> (Vec<Trade>, Vec<(Trade, Micros)>) {
    let mut raw = raw.to_vec();
    raw.sort_by_key(|r| r.2);
    let mut ids: HashMap<(usize, usize), u64> = HashMap::new();
    let mut trades = Vec::new();
    let mut arrivals = Vec::new();
    for (p, e, step, pm, ps, qm, qs, side, delay) in raw {
        let id = ids.entry((p, e)).or_insert(first_ids[p * 3 + e]);
        *id += 1;
        let time = Micros(T0 + step * 250_000);
        let trade = Trade {
            exchange: Exchange::ALL[e],
            pair: pairs()[p],
            id: *id,
            price: Decimal::new(pm, ps),
            quantity: Decimal::new(qm, qs),
            side: [Side::Buy, Side::Sell, Side::Unknown][side],
            time,
            received: Micros(time.0 + delay),
            complete_since: None,
            after_unfilled_gap: false,
        };
        trades.push(trade);
        arrivals.push((trade, trade.received));
    }
    // A stable sort: equal arrival times keep trade-time order, which the key makes irrelevant.
    arrivals.sort_by_key(|(_, at)| *at);
    (trades, arrivals)
}

fn exchange_rank(e: Exchange) -> usize {
    Exchange::ALL.iter().position(|x| *x == e).unwrap()
}

fn window_start(t: i64) -> i64 {
    t.div_euclid(INTERVAL_US) * INTERVAL_US
}

/// The naive reference: every final candle of windows starting before `until` (by default, up
/// to the last trade's window), ordered by (start, pair, source).
fn reference(trades: &[Trade], until: Option<Micros>) -> Vec<Candle> {
    let interval = Interval::from_micros(INTERVAL_US).unwrap();
    let mut groups: BTreeMap<(Pair, Source), BTreeMap<Micros, Vec<Trade>>> = BTreeMap::new();
    for t in trades {
        let start = Micros(t.time.0.div_euclid(INTERVAL_US) * INTERVAL_US);
        for source in [Source::Composite, Source::Exchange(t.exchange)] {
            groups
                .entry((t.pair, source))
                .or_default()
                .entry(start)
                .or_default()
                .push(*t);
        }
    }
    let Some(last) = trades.iter().map(|t| window_start(t.time.0)).max() else {
        return Vec::new();
    };
    let last = Micros(until.map_or(last, |u| u.0 - INTERVAL_US));
    let mut out = Vec::new();
    for ((pair, source), windows) in groups {
        let first = *windows.keys().next().unwrap();
        let mut close = None;
        let mut start = first;
        while start <= last {
            let candle = match windows.get(&start) {
                Some(group) => {
                    let mut group = group.clone();
                    group.sort_by_key(|t| (t.time, exchange_rank(t.exchange), t.id));
                    let sum = |f: &dyn Fn(&Trade) -> Decimal| {
                        group.iter().map(f).fold(Decimal::ZERO, |a, b| a + b)
                    };
                    Candle {
                        pair,
                        source,
                        interval,
                        start,
                        open: group[0].price,
                        high: group.iter().map(|t| t.price).max().unwrap(),
                        low: group.iter().map(|t| t.price).min().unwrap(),
                        close: group[group.len() - 1].price,
                        volume: sum(&|t| t.quantity),
                        quote_volume: sum(&|t| t.price * t.quantity),
                        buy_volume: sum(&|t| {
                            if t.side == Side::Buy {
                                t.quantity
                            } else {
                                Decimal::ZERO
                            }
                        }),
                        sell_volume: sum(&|t| {
                            if t.side == Side::Sell {
                                t.quantity
                            } else {
                                Decimal::ZERO
                            }
                        }),
                        trades: group.len() as u64,
                        is_final: true,
                        partial: false,
                    }
                }
                None => Candle::flat(pair, source, interval, start, close.unwrap()),
            };
            close = Some(candle.close);
            out.push(candle);
            start = Micros(start.0 + INTERVAL_US);
        }
    }
    out.sort_by_key(|c| (c.start, c.pair, c.source));
    out
}

/// Runs the engine over the arrivals; returns its final candles in emission order and the last
/// in-progress update of every identity.
fn run(clock: ClockMode, arrivals: &[(Trade, Micros)]) -> Run {
    let mut engine = Engine::new(config(clock));
    let mut finals = Vec::new();
    let mut updates = Vec::new();
    let mut latest = HashMap::new();
    let mut late = Vec::new();
    for (trade, arrival) in arrivals {
        // The wall clock reads the arrival time; in event mode `now` is ignored.
        engine.advance(*arrival, &mut finals);
        if engine.apply(trade) == Outcome::Late {
            late.push(trade.id);
        }
        engine.take_updates(&mut updates);
        for u in updates.drain(..) {
            assert!(!u.is_final);
            latest.insert(u.id(), u);
        }
    }
    engine.flush(&mut finals);
    assert_eq!(engine.late_trades(), late.len() as u64);
    assert_eq!(engine.oldest_open_window(), None);
    Run {
        finals,
        latest,
        late,
        finalized_before: engine.finalized_before(),
    }
}

/// What one engine run gave.
struct Run {
    /// Final candles in emission order.
    finals: Vec<Candle>,
    /// The last in-progress update of every identity.
    latest: HashMap<CandleId, Candle>,
    /// Ids of the trades it called late, in arrival order.
    late: Vec<u64>,
    /// Its `finalized_before` after the flush.
    finalized_before: Micros,
}

/// The naive rule for late trades: a trade is late if, when it arrives, the clock (the arrival
/// time, or the latest trade time accepted so far) has reached its window's end plus grace.
/// Returns the accepted trades, the late ones' ids, and where finalization ends (the later of
/// the clock's last edge and the end of the last accepted window).
fn naive_late(clock: ClockMode, arrivals: &[(Trade, Micros)]) -> (Vec<Trade>, Vec<u64>, Micros) {
    let (mut accepted, mut late) = (Vec::new(), Vec::new());
    let mut finalized_before = i64::MIN;
    let mut watermark: Option<i64> = None;
    for (t, arrival) in arrivals {
        let now = match clock {
            ClockMode::Wall => Some(arrival.0),
            ClockMode::Event => watermark,
        };
        if let Some(now) = now {
            finalized_before = finalized_before.max(window_start(now - GRACE_US));
        }
        if window_start(t.time.0) + INTERVAL_US + GRACE_US <= now.unwrap_or(i64::MIN) {
            late.push(t.id);
        } else {
            accepted.push(*t);
            watermark = watermark.max(Some(t.time.0));
        }
    }
    let last_end = accepted
        .iter()
        .map(|t| window_start(t.time.0) + INTERVAL_US)
        .max();
    (
        accepted,
        late,
        Micros(finalized_before.max(last_end.unwrap_or(i64::MIN))),
    )
}

/// Every final candle equal to the reference's, in order; VWAP exact; the last live update of a
/// window equal to its final candle.
fn compare(clock: ClockMode, run: &Run, expected: &[Candle]) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        run.finals.len(),
        expected.len(),
        "{:?}: number of final candles",
        clock
    );
    for (got, want) in run.finals.iter().zip(expected) {
        prop_assert_eq!(got, want, "{:?}", clock);
        // The quote volume adds up exactly, so the VWAP is exact too.
        prop_assert_eq!(
            got.vwap(),
            (!want.volume.is_zero()).then(|| (want.quote_volume / want.volume).normalize())
        );
        if got.trades > 0 {
            let update = run.latest.get(&got.id()).copied();
            prop_assert_eq!(
                update.map(|u| Candle {
                    is_final: true,
                    ..u
                }),
                Some(*got),
                "{:?}",
                clock
            );
        }
    }
    Ok(())
}

/// Arrivals within the grace: nothing is late, and the candles equal the reference's.
fn check(raw: &[Raw], first_ids: [u64; 6]) -> Result<(), TestCaseError> {
    let (trades, arrivals) = build(raw, first_ids);
    let expected = reference(&trades, None);
    for clock in [ClockMode::Wall, ClockMode::Event] {
        let run = run(clock, &arrivals);
        prop_assert_eq!(&run.late, &Vec::<u64>::new(), "{:?}", clock);
        compare(clock, &run, &expected)?;
    }
    Ok(())
}

/// Arrivals up to 3 x grace late: exactly the trades the naive rule calls late are counted and
/// left out, and the candles equal the reference's over the others.
fn check_late(raw: &[Raw], first_ids: [u64; 6]) -> Result<(), TestCaseError> {
    let (_, arrivals) = build(raw, first_ids);
    for clock in [ClockMode::Wall, ClockMode::Event] {
        let (accepted, late, until) = naive_late(clock, &arrivals);
        let run = run(clock, &arrivals);
        prop_assert_eq!(&run.late, &late, "{:?}: late trades", clock);
        prop_assert_eq!(run.finalized_before, until, "{:?}", clock);
        compare(clock, &run, &reference(&accepted, Some(until)))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn engine_equals_the_naive_reference(raw in prop::collection::vec(raw_trade(), 1..160), ids in prop::array::uniform6(0..200u64)) {
        check(&raw, ids)?;
    }

    /// Dense bursts: few distinct times, so ties of time within and across exchanges dominate.
    #[test]
    fn engine_equals_the_naive_reference_on_ties(
        raw in prop::collection::vec(raw_trade().prop_map(|mut r| { r.2 %= 24; r }), 1..80),
        ids in prop::array::uniform6(0..200u64),
    ) {
        check(&raw, ids)?;
    }

    /// Delays up to 3 x grace: some trades are late.
    #[test]
    fn late_trades_are_exactly_those_past_end_plus_grace(
        raw in prop::collection::vec(raw_trade().prop_map(|mut r| { r.8 *= 3; r }), 1..160),
        ids in prop::array::uniform6(0..200u64),
    ) {
        check_late(&raw, ids)?;
    }
}

#[test]
fn the_reference_itself_fills_empty_windows() {
    // A sanity check of the reference: one trade at window 0 and one at window 3 of one series.
    let raw: Vec<Raw> = vec![
        (0, 0, 0, 10_000, 2, 1, 0, 0, 0),
        (0, 0, 60, 10_100, 2, 1, 0, 1, 0),
    ];
    let (trades, _) = build(&raw, [7; 6]);
    let candles = reference(&trades, None);
    assert_eq!(candles.len(), 8, "composite and binance x 4 windows");
    assert_eq!(candles.iter().filter(|c| c.trades == 0).count(), 4);
    check(&raw, [7; 6]).unwrap();
}

#[test]
fn the_late_rule_sees_late_trades() {
    // A trade at 2.5 s arriving at 7 s (window 0 ends at 5 s, + 1.5 s grace): late on the wall
    // clock; on the event clock only a trade at 0 s was seen by then, so it is not.
    let raw: Vec<Raw> = vec![
        (0, 0, 0, 10_000, 2, 1, 0, 0, 0),
        (0, 1, 10, 10_100, 2, 1, 0, 1, 3 * GRACE_US),
        (0, 0, 40, 10_200, 2, 1, 0, 1, 0),
    ];
    let (_, arrivals) = build(&raw, [7; 6]);
    assert_eq!(naive_late(ClockMode::Wall, &arrivals).1, vec![8]);
    assert_eq!(naive_late(ClockMode::Event, &arrivals).1, Vec::<u64>::new());
    check_late(&raw, [7; 6]).unwrap();
}
