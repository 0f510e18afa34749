//! The engine against a deliberately naive reference, on random trades.
//!
//! The reference collects every trade, groups them by (pair, source, window), sorts each group
//! by the documented key (trade time, exchange order, trade id), computes OHLCV, and fills every
//! empty window from a series' first trade to the last window with a flat candle at the previous
//! close. The engine sees the same trades for 2 pairs x 3 exchanges in a random arrival order:
//! each trade arrives up to the grace period after its trade time (so none is late), with the
//! clock driven by the arrival time (wall) or by the trades themselves (event). Every final
//! candle must equal the reference's, in order, with no late trade and no duplicate.

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

/// The naive reference: every final candle, ordered by (start, pair, source).
fn reference(trades: &[Trade]) -> Vec<Candle> {
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
    let Some(last) = trades
        .iter()
        .map(|t| Micros(t.time.0.div_euclid(INTERVAL_US) * INTERVAL_US))
        .max()
    else {
        return Vec::new();
    };
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
fn run(clock: ClockMode, arrivals: &[(Trade, Micros)]) -> (Vec<Candle>, HashMap<CandleId, Candle>) {
    let mut engine = Engine::new(config(clock));
    let mut finals = Vec::new();
    let mut updates = Vec::new();
    let mut latest = HashMap::new();
    for (trade, arrival) in arrivals {
        // The wall clock reads the arrival time; in event mode `now` is ignored.
        engine.advance(*arrival, &mut finals);
        assert_eq!(
            engine.apply(trade),
            Outcome::Applied,
            "{clock:?}: {trade:?} arriving at {arrival:?}"
        );
        engine.take_updates(&mut updates);
        for u in updates.drain(..) {
            assert!(!u.is_final);
            latest.insert(u.id(), u);
        }
    }
    engine.flush(&mut finals);
    assert_eq!(engine.late_trades(), 0);
    assert_eq!(engine.oldest_open_window(), None);
    (finals, latest)
}

fn check(raw: &[Raw], first_ids: [u64; 6]) -> Result<(), TestCaseError> {
    let (trades, arrivals) = build(raw, first_ids);
    let expected = reference(&trades);
    for clock in [ClockMode::Wall, ClockMode::Event] {
        let (finals, latest) = run(clock, &arrivals);
        prop_assert_eq!(
            finals.len(),
            expected.len(),
            "{:?}: number of final candles",
            clock
        );
        for (got, want) in finals.iter().zip(&expected) {
            prop_assert_eq!(got, want, "{:?}", clock);
            // The quote volume adds up exactly, so the VWAP is exact too.
            prop_assert_eq!(
                got.vwap(),
                (!want.volume.is_zero()).then(|| (want.quote_volume / want.volume).normalize())
            );
            // The last live update of a window is its final candle but for the flag.
            if got.trades > 0 {
                let update = latest.get(&got.id()).copied();
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
}

#[test]
fn the_reference_itself_fills_empty_windows() {
    // A sanity check of the reference: one trade at window 0 and one at window 3 of one series.
    let raw: Vec<Raw> = vec![
        (0, 0, 0, 10_000, 2, 1, 0, 0, 0),
        (0, 0, 60, 10_100, 2, 1, 0, 1, 0),
    ];
    let (trades, _) = build(&raw, [7; 6]);
    let candles = reference(&trades);
    assert_eq!(candles.len(), 8, "composite and binance x 4 windows");
    assert_eq!(candles.iter().filter(|c| c.trades == 0).count(), 4);
    check(&raw, [7; 6]).unwrap();
}
