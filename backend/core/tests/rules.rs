//! One test per candle rule of DESIGN.md ("Candles"), driven through the public engine API.
//!
//! Times are microseconds; `T0` is aligned to every interval used here (5 s and 1 m).

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure with its message.

use candles_core::engine::{ClockMode, Engine, EngineConfig, Outcome};
use candles_core::time::Duration;
use candles_core::{Candle, Decimal, Exchange, Interval, Micros, Pair, Side, Source, Trade};
use std::str::FromStr;

/// 2023-11-14T22:13:00Z: a multiple of one minute (and so of 5 s).
const T0: i64 = 1_699_999_980_000_000;
const SEC: i64 = 1_000_000;
const COMPOSITE: Source = Source::Composite;
const BINANCE: Source = Source::Exchange(Exchange::Binance);
const KRAKEN: Source = Source::Exchange(Exchange::Kraken);
const COINBASE: Source = Source::Exchange(Exchange::Coinbase);

fn btc() -> Pair {
    Pair::parse("BTC-USDT").unwrap()
}

fn eth() -> Pair {
    Pair::parse("ETH-USDT").unwrap()
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// A trade at `T0 + at` microseconds.
fn trade(
    exchange: Exchange,
    pair: Pair,
    id: u64,
    price: &str,
    quantity: &str,
    side: Side,
    at: i64,
) -> Trade {
    Trade::new(exchange, pair, id, price, quantity, side, Micros(T0 + at)).unwrap()
}

/// A Binance BTC-USDT buy of 1 at `price`, `at` microseconds after `T0`.
fn bt(id: u64, price: &str, at: i64) -> Trade {
    trade(Exchange::Binance, btc(), id, price, "1", Side::Buy, at)
}

fn engine(clock: ClockMode) -> Engine {
    Engine::new(EngineConfig {
        interval: Interval::seconds(5),
        grace: Duration::from_millis(1_500),
        clock,
    })
}

/// Window start `T0 + n * 5 s`.
fn w(n: i64) -> Micros {
    Micros(T0 + n * 5 * SEC)
}

fn flush(engine: &mut Engine) -> Vec<Candle> {
    let mut out = Vec::new();
    engine.flush(&mut out);
    out
}

fn advance(engine: &mut Engine, at: i64) -> Vec<Candle> {
    let mut out = Vec::new();
    engine.advance(Micros(T0 + at), &mut out);
    out
}

fn only(candles: &[Candle], pair: Pair, source: Source) -> Vec<Candle> {
    candles
        .iter()
        .filter(|c| c.pair == pair && c.source == source)
        .copied()
        .collect()
}

fn ohlc(c: &Candle) -> [Decimal; 4] {
    [c.open, c.high, c.low, c.close]
}

fn prices(o: &str, h: &str, l: &str, c: &str) -> [Decimal; 4] {
    [dec(o), dec(h), dec(l), dec(c)]
}

fn apply_all(engine: &mut Engine, trades: &[Trade]) {
    for t in trades {
        assert_eq!(engine.apply(t), Outcome::Applied, "{t:?}");
    }
}

#[test]
fn a_trade_exactly_at_a_windows_end_belongs_to_the_next_window() {
    let mut e = engine(ClockMode::Event);
    apply_all(
        &mut e,
        &[
            bt(1, "10", 0),
            bt(2, "11", 5 * SEC - 1),
            bt(3, "12", 5 * SEC),
            bt(4, "13", 10 * SEC - 1),
        ],
    );
    let out = only(&flush(&mut e), btc(), COMPOSITE);
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].start, out[0].end(), out[0].trades), (w(0), w(1), 2));
    assert_eq!(ohlc(&out[0]), prices("10", "11", "10", "11"));
    assert_eq!((out[1].start, out[1].trades), (w(1), 2));
    assert_eq!(ohlc(&out[1]), prices("12", "13", "12", "13"));
}

#[test]
fn out_of_order_trades_within_grace_take_open_and_close_by_trade_time() {
    for clock in [ClockMode::Wall, ClockMode::Event] {
        let mut e = engine(clock);
        let mut finals = Vec::new();
        // Arrival order: 3 s, 1 s, 4.9 s, 2 s, then 0.5 s arriving 1.4 s after the window's end.
        let arrivals = [
            (3, "30", 3 * SEC),
            (1, "10", 3 * SEC + 1),
            (4, "49", 5 * SEC),
            (2, "20", 6 * SEC),
            (0, "5", 6_400_000),
        ];
        let times = [3 * SEC, SEC, 4_900_000, 2 * SEC, 500_000];
        for ((id, price, now), at) in arrivals.into_iter().zip(times) {
            e.advance(Micros(T0 + now), &mut finals);
            assert_eq!(
                e.apply(&bt(id, price, at)),
                Outcome::Applied,
                "{clock:?} trade {id}"
            );
        }
        assert!(
            finals.is_empty(),
            "{clock:?}: nothing final before end + grace: {finals:?}"
        );
        finals.extend(flush(&mut e));
        let c = only(&finals, btc(), COMPOSITE);
        assert_eq!(c.len(), 1, "{clock:?}");
        assert_eq!(ohlc(&c[0]), prices("5", "49", "5", "49"), "{clock:?}");
        assert_eq!(c[0].trades, 5);
        assert_eq!(e.late_trades(), 0);
    }
}

#[test]
fn ties_in_time_are_broken_by_trade_id_not_arrival() {
    let mut e = engine(ClockMode::Event);
    // Same time; ids arrive 7, 5, 9, 6.
    apply_all(
        &mut e,
        &[
            bt(7, "70", SEC),
            bt(5, "50", SEC),
            bt(9, "90", SEC),
            bt(6, "60", SEC),
        ],
    );
    let c = only(&flush(&mut e), btc(), BINANCE);
    assert_eq!(ohlc(&c[0]), prices("50", "90", "50", "90"));
}

#[test]
fn ties_across_exchanges_follow_the_documented_exchange_order_then_arrival() {
    // The documented order is Exchange::ALL: Binance, Kraken, Coinbase.
    assert_eq!(
        Exchange::ALL,
        [Exchange::Binance, Exchange::Kraken, Exchange::Coinbase]
    );
    let at = 2 * SEC;
    let cb = trade(Exchange::Coinbase, btc(), 1, "300", "1", Side::Buy, at);
    let kr = trade(Exchange::Kraken, btc(), 999_999, "200", "1", Side::Buy, at);
    let bn = trade(Exchange::Binance, btc(), 5, "100", "1", Side::Buy, at);
    for order in [[cb, kr, bn], [kr, bn, cb], [bn, cb, kr]] {
        let mut e = engine(ClockMode::Event);
        apply_all(&mut e, &order);
        let c = only(&flush(&mut e), btc(), COMPOSITE);
        assert_eq!(ohlc(&c[0]), prices("100", "300", "100", "300"), "{order:?}");
    }
    // Same time, same exchange, same id (a duplicate delivery): the first to arrive opens and
    // the last to arrive closes.
    let mut e = engine(ClockMode::Event);
    apply_all(&mut e, &[bt(4, "41", at), bt(4, "42", at), bt(4, "43", at)]);
    let c = only(&flush(&mut e), btc(), BINANCE);
    assert_eq!(ohlc(&c[0]), prices("41", "43", "41", "43"));
    assert_eq!(c[0].trades, 3);
}

#[test]
fn no_candle_for_empty_windows_before_a_series_first_trade() {
    for clock in [ClockMode::Wall, ClockMode::Event] {
        let mut e = engine(clock);
        assert!(
            advance(&mut e, 60 * SEC).is_empty(),
            "{clock:?}: no trade, no candle"
        );
        // The first trade is in window 20 (wall clock is at window 12 + grace).
        assert_eq!(e.apply(&bt(1, "10", 100 * SEC + 1)), Outcome::Applied);
        // Kraken starts trading two windows later.
        let kr = trade(Exchange::Kraken, btc(), 1, "11", "2", Side::Sell, 110 * SEC);
        assert_eq!(e.apply(&kr), Outcome::Applied);
        let out = flush(&mut e);
        let starts = |s| {
            only(&out, btc(), s)
                .iter()
                .map(|c| c.start)
                .collect::<Vec<_>>()
        };
        assert_eq!(starts(COMPOSITE), vec![w(20), w(21), w(22)], "{clock:?}");
        assert_eq!(starts(BINANCE), vec![w(20), w(21), w(22)], "{clock:?}");
        assert_eq!(starts(KRAKEN), vec![w(22)], "{clock:?}");
        assert_eq!(
            starts(COINBASE),
            vec![],
            "{clock:?}: an exchange with no trade has no series"
        );
    }
}

/// Every window after the first trade yields a candle: empty ones are flat at the previous close.
fn assert_continuous(candles: &[Candle], from: i64, to: i64) {
    let starts: Vec<Micros> = candles.iter().map(|c| c.start).collect();
    assert_eq!(starts, (from..=to).map(w).collect::<Vec<_>>());
    for pair in candles.windows(2) {
        let (prev, c) = (&pair[0], &pair[1]);
        if c.trades == 0 {
            assert_eq!(
                ohlc(c),
                [prev.close; 4],
                "flat at the previous close: {c:?}"
            );
            assert_eq!(
                (c.volume, c.quote_volume, c.buy_volume, c.sell_volume),
                (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO)
            );
            assert_eq!(c.vwap(), None);
            assert!(c.is_final);
        }
    }
}

#[test]
fn empty_windows_after_the_first_trade_are_flat_at_the_previous_close_wall_clock() {
    let mut e = engine(ClockMode::Wall);
    let mut out = Vec::new();
    e.apply(&bt(1, "10", SEC));
    e.apply(&bt(2, "12", 2 * SEC));
    // Nothing for three windows; the clock keeps moving.
    for step in 1..=40 {
        e.advance(Micros(T0 + step * SEC / 2), &mut out);
    }
    e.apply(&bt(3, "20", 21 * SEC));
    for step in 41..=80 {
        e.advance(Micros(T0 + step * SEC / 2), &mut out);
    }
    // Clock at 40 s: windows up to 30-35 s are final (35 s + 1.5 s <= 40 s); 35-40 s is not.
    let c = only(&out, btc(), COMPOSITE);
    assert_continuous(&c, 0, 6);
    assert_eq!(ohlc(&c[0]), prices("10", "12", "10", "12"));
    assert_eq!(ohlc(&c[1]), [dec("12"); 4]);
    assert_eq!(c[1].trades, 0);
    assert_eq!((c[4].trades, c[4].close), (1, dec("20")));
    assert_eq!(ohlc(&c[5]), [dec("20"); 4]);
    assert_eq!(
        only(&out, btc(), BINANCE),
        c.iter()
            .map(|c| Candle {
                source: BINANCE,
                ..*c
            })
            .collect::<Vec<_>>()
    );
    assert!(only(&out, btc(), KRAKEN).is_empty());
}

#[test]
fn empty_windows_after_the_first_trade_are_flat_at_the_previous_close_event_clock() {
    let mut e = engine(ClockMode::Event);
    let mut out = Vec::new();
    e.apply(&bt(1, "10", SEC));
    e.advance(Micros(0), &mut out);
    // The event clock jumps to 21 s: windows before 15 s are final (15 s + 1.5 s <= 21 s).
    e.apply(&bt(2, "20", 21 * SEC));
    e.advance(Micros(0), &mut out);
    assert_continuous(&only(&out, btc(), COMPOSITE), 0, 2);
    // A trade far later finalizes a long run of flat candles.
    e.apply(&bt(3, "30", 60 * SEC));
    e.advance(Micros(0), &mut out);
    out.extend(flush(&mut e));
    let c = only(&out, btc(), COMPOSITE);
    assert_continuous(&c, 0, 12);
    assert_eq!(ohlc(&c[3]), [dec("10"); 4]);
    assert_eq!(c[4].close, dec("20"));
    assert_eq!(ohlc(&c[11]), [dec("20"); 4]);
    assert_eq!(ohlc(&c[12]), [dec("30"); 4]);
    assert_eq!(c[12].trades, 1);
}

#[test]
fn a_series_keeps_yielding_flat_candles_while_its_exchange_is_quiet() {
    // Binance trades every window, Kraken only once: Kraken's series stays continuous.
    let mut e = engine(ClockMode::Event);
    e.apply(&trade(
        Exchange::Kraken,
        btc(),
        1,
        "99",
        "1",
        Side::Sell,
        SEC,
    ));
    for n in 0..6 {
        e.apply(&bt(n as u64 + 1, "100", n * 5 * SEC + 2 * SEC));
    }
    let out = flush(&mut e);
    let k = only(&out, btc(), KRAKEN);
    assert_continuous(&k, 0, 5);
    assert!(
        k[1..]
            .iter()
            .all(|c| ohlc(c) == [dec("99"); 4] && c.trades == 0)
    );
    assert_eq!(only(&out, btc(), COMPOSITE).len(), 6);
}

#[test]
fn a_series_quiet_for_max_quiet_windows_ends_and_its_next_trade_starts_it_again() {
    use candles_core::engine::MAX_QUIET_WINDOWS;
    let quiet = i64::from(MAX_QUIET_WINDOWS);
    let mut e = engine(ClockMode::Wall);
    e.apply(&bt(1, "100", SEC));
    // Far later: one advance covers 3 × MAX_QUIET_WINDOWS windows, yet emits a bounded run.
    let out = advance(&mut e, 3 * quiet * 5 * SEC + 10 * SEC);
    let b = only(&out, btc(), BINANCE);
    assert_eq!(
        b.len() as i64,
        1 + quiet,
        "the trade's candle, then MAX_QUIET_WINDOWS flats"
    );
    assert_continuous(&b, 0, quiet);
    assert!(
        b[1..]
            .iter()
            .all(|c| c.trades == 0 && ohlc(c) == [dec("100"); 4])
    );
    assert_eq!(only(&out, btc(), COMPOSITE).len() as i64, 1 + quiet);
    // Nothing more while it stays quiet.
    assert!(advance(&mut e, 4 * quiet * 5 * SEC).is_empty());
    // Its next trade starts it again, from that trade's window (no flats for the ended stretch).
    let at = 4 * quiet * 5 * SEC + 2 * SEC;
    assert_eq!(e.apply(&bt(2, "101", at)), Outcome::Applied);
    let out = advance(&mut e, at + 10 * SEC);
    let b = only(&out, btc(), BINANCE);
    assert_eq!(b[0].start, w(4 * quiet));
    assert_eq!(ohlc(&b[0]), [dec("101"); 4]);
    assert_continuous(&b, 4 * quiet, 4 * quiet + b.len() as i64 - 1);
}

#[test]
fn a_late_trade_is_counted_not_applied_and_never_a_crash() {
    // Wall clock.
    let mut e = engine(ClockMode::Wall);
    e.apply(&bt(1, "10", SEC));
    let finals = advance(&mut e, 6_500_000);
    assert_eq!(
        finals.len(),
        2,
        "composite and binance for window 0: {finals:?}"
    );
    assert_eq!(e.apply(&bt(2, "11", 4 * SEC)), Outcome::Late);
    assert_eq!(
        e.apply(&trade(Exchange::Kraken, btc(), 1, "11", "1", Side::Buy, 0)),
        Outcome::Late
    );
    assert_eq!(
        e.apply(&trade(
            Exchange::Binance,
            eth(),
            1,
            "11",
            "1",
            Side::Buy,
            -3600 * SEC
        )),
        Outcome::Late
    );
    assert_eq!(e.late_trades(), 3);
    let mut snap = Vec::new();
    e.snapshot(&mut snap);
    assert!(snap.is_empty(), "late trades open no window: {snap:?}");
    let out = flush(&mut e);
    assert!(out.is_empty(), "no second final for window 0: {out:?}");
    assert_eq!(finals[0].close, dec("10"));

    // Event clock: a trade at 6.5 s moves the watermark past window 0's end + grace.
    let mut e = engine(ClockMode::Event);
    e.apply(&bt(1, "10", SEC));
    e.apply(&bt(2, "10", 6_500_000));
    let first = advance(&mut e, 0);
    assert_eq!(first.len(), 2);
    assert_eq!(e.apply(&bt(3, "1", 4_999_999)), Outcome::Late);
    assert_eq!(
        e.watermark(),
        Some(Micros(T0 + 6_500_000)),
        "a late trade does not move the watermark"
    );
    assert_eq!(
        e.apply(&bt(4, "1", 5 * SEC)),
        Outcome::Applied,
        "window 1 is still open"
    );
    assert_eq!(e.late_trades(), 1);
    let rest = flush(&mut e);
    assert_eq!(rest.len(), 2);
    assert_eq!((rest[0].open, rest[0].trades), (dec("1"), 2));
}

#[test]
fn extreme_trade_times_and_clocks_do_not_crash() {
    for clock in [ClockMode::Wall, ClockMode::Event] {
        let mut e = engine(clock);
        let mut out = Vec::new();
        // On an engine with no series, any clock reading is harmless.
        for now in [i64::MIN, -1, 0, i64::MAX] {
            e.advance(Micros(now), &mut out);
        }
        assert!(out.is_empty());
        let mut e = engine(clock);
        assert_eq!(e.apply(&bt(1, "10", SEC)), Outcome::Applied);
        // Times whose windows cannot be computed without overflow are rejected like late trades.
        for time in [i64::MIN, i64::MIN + 1, i64::MAX - 1, i64::MAX] {
            let t = Trade {
                time: Micros(time),
                ..bt(2, "1", 0)
            };
            assert_eq!(e.apply(&t), Outcome::Late, "{time}");
        }
        assert_eq!(e.late_trades(), 4);
        assert_eq!(
            e.watermark(),
            Some(Micros(T0 + SEC)),
            "rejected times do not move the event clock"
        );
        e.seed(eth(), COMPOSITE, Micros(i64::MAX), dec("1"));
        e.seed(eth(), COMPOSITE, Micros(i64::MIN), dec("1"));
        // Times before the epoch are ordinary.
        let mut before_epoch = engine(clock);
        assert_eq!(
            before_epoch.apply(&Trade {
                time: Micros(-1),
                ..bt(1, "1", 0)
            }),
            Outcome::Applied
        );
        before_epoch.flush(&mut out);
        assert_eq!(
            out.iter().map(|c| c.start).collect::<Vec<_>>(),
            vec![Micros(-5 * SEC); 2]
        );
        out.clear();
        // Amounts beyond Decimal's range (~7.9e28) do not panic either: a trade whose notional
        // cannot be represented is rejected; sums that would overflow saturate.
        let huge = |id, q: &str| {
            trade(
                Exchange::Kraken,
                btc(),
                id,
                "79228162514264337593543950335",
                q,
                Side::Buy,
                SEC,
            )
        };
        assert_eq!(e.apply(&huge(1, "2")), Outcome::Late);
        assert_eq!(e.late_trades(), 5);
        assert_eq!(e.apply(&huge(2, "1")), Outcome::Applied);
        assert_eq!(e.apply(&huge(3, "1")), Outcome::Applied);
        e.flush(&mut out);
        e.take_updates(&mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        let kraken = only(&out, btc(), KRAKEN)[0];
        assert_eq!(
            (kraken.volume, kraken.quote_volume),
            (dec("2"), Decimal::MAX)
        );
    }
}

#[test]
fn the_composite_is_the_union_and_each_exchange_has_its_own_candle() {
    let mut e = engine(ClockMode::Event);
    apply_all(
        &mut e,
        &[
            trade(Exchange::Binance, btc(), 10, "100.5", "0.5", Side::Buy, SEC),
            trade(
                Exchange::Kraken,
                btc(),
                20,
                "99.5",
                "1.25",
                Side::Sell,
                500_000,
            ),
            trade(
                Exchange::Binance,
                btc(),
                11,
                "102",
                "0.25",
                Side::Sell,
                3 * SEC,
            ),
            trade(Exchange::Kraken, btc(), 21, "101", "2", Side::Buy, 4 * SEC),
            trade(Exchange::Binance, eth(), 1, "2000", "3", Side::Buy, 2 * SEC),
        ],
    );
    let out = flush(&mut e);
    assert_eq!(
        out.len(),
        5,
        "btc composite, binance, kraken; eth composite, binance: {out:?}"
    );
    let comp = only(&out, btc(), COMPOSITE)[0];
    assert_eq!(ohlc(&comp), prices("99.5", "102", "99.5", "101"));
    assert_eq!((comp.volume, comp.trades), (dec("4.00"), 4));
    assert_eq!(
        (comp.buy_volume, comp.sell_volume),
        (dec("2.5"), dec("1.50"))
    );
    let bin = only(&out, btc(), BINANCE)[0];
    assert_eq!(ohlc(&bin), prices("100.5", "102", "100.5", "102"));
    assert_eq!((bin.volume, bin.trades), (dec("0.75"), 2));
    let kra = only(&out, btc(), KRAKEN)[0];
    assert_eq!(ohlc(&kra), prices("99.5", "101", "99.5", "101"));
    assert_eq!((kra.volume, kra.trades), (dec("3.25"), 2));
    assert_eq!(comp.quote_volume, bin.quote_volume + kra.quote_volume);
    let eth_c = only(&out, eth(), COMPOSITE)[0];
    assert_eq!((eth_c.close, eth_c.volume), (dec("2000"), dec("3")));
    assert!(only(&out, eth(), KRAKEN).is_empty());
}

#[test]
fn quote_volume_buy_sell_volume_and_vwap_are_exact() {
    let mut e = engine(ClockMode::Event);
    apply_all(
        &mut e,
        &[
            trade(Exchange::Binance, btc(), 1, "100.10", "0.1", Side::Buy, SEC),
            trade(
                Exchange::Binance,
                btc(),
                2,
                "100.30",
                "0.2",
                Side::Sell,
                2 * SEC,
            ),
            trade(
                Exchange::Binance,
                btc(),
                3,
                "100.30",
                "0.1",
                Side::Unknown,
                3 * SEC,
            ),
            trade(
                Exchange::Binance,
                btc(),
                4,
                "100.10",
                "0.00000001",
                Side::Buy,
                4 * SEC,
            ),
        ],
    );
    let c = only(&flush(&mut e), btc(), BINANCE)[0];
    assert_eq!(c.volume, dec("0.40000001"));
    assert_eq!(
        c.volume.to_string(),
        "0.40000001",
        "0.1 + 0.2 + 0.1 + 1e-8, no float error"
    );
    // 10.010 + 20.060 + 10.030 + 0.000001001
    assert_eq!(c.quote_volume, dec("40.100001001"));
    assert_eq!(c.buy_volume, dec("0.10000001"));
    assert_eq!(c.sell_volume, dec("0.2"));
    assert_eq!(c.vwap(), Some(c.quote_volume / c.volume));
    // A VWAP that is a terminating decimal comes out exact.
    let mut e = engine(ClockMode::Event);
    apply_all(
        &mut e,
        &[
            trade(Exchange::Kraken, btc(), 1, "100.10", "0.5", Side::Buy, SEC),
            trade(
                Exchange::Kraken,
                btc(),
                2,
                "100.30",
                "1.5",
                Side::Sell,
                2 * SEC,
            ),
        ],
    );
    let c = only(&flush(&mut e), btc(), KRAKEN)[0];
    assert_eq!(c.quote_volume, dec("200.500"));
    assert_eq!(c.vwap().unwrap().to_string(), "100.25");
}

#[test]
fn a_window_is_final_exactly_at_end_plus_grace_not_a_microsecond_before() {
    let end_plus_grace = 5 * SEC + 1_500_000;
    // Wall clock.
    let mut e = engine(ClockMode::Wall);
    e.apply(&bt(1, "10", SEC));
    assert!(advance(&mut e, end_plus_grace - 1).is_empty());
    assert_eq!(e.finalized_before(), Micros(T0), "window 0 still open");
    assert_eq!(advance(&mut e, end_plus_grace).len(), 2);
    assert_eq!(e.finalized_before(), w(1));
    // Event clock: the same instant reached by a trade's time.
    let mut e = engine(ClockMode::Event);
    e.apply(&bt(1, "10", SEC));
    e.apply(&bt(2, "10", end_plus_grace - 1));
    assert!(
        advance(&mut e, 1_000 * SEC).is_empty(),
        "event mode ignores `now`"
    );
    e.apply(&bt(3, "10", end_plus_grace));
    assert_eq!(advance(&mut e, 0).len(), 2);
    // Zero grace: final exactly at the window's end.
    let mut e = Engine::new(EngineConfig {
        interval: Interval::seconds(5),
        grace: Duration(0),
        clock: ClockMode::Wall,
    });
    e.apply(&bt(1, "10", SEC));
    assert!(advance(&mut e, 5 * SEC - 1).is_empty());
    assert_eq!(advance(&mut e, 5 * SEC).len(), 2);
    assert_eq!(e.apply(&bt(2, "10", 5 * SEC - 1)), Outcome::Late);
}

#[test]
fn the_event_clock_is_the_watermark_of_trade_times() {
    let mut e = engine(ClockMode::Event);
    assert_eq!((e.watermark(), e.clock(Micros(123))), (None, None));
    assert!(advance(&mut e, 1_000 * SEC).is_empty());
    e.apply(&bt(1, "10", 3 * SEC));
    e.apply(&bt(2, "10", 2 * SEC));
    assert_eq!(
        e.watermark(),
        Some(Micros(T0 + 3 * SEC)),
        "an earlier trade does not lower it"
    );
    assert_eq!(e.clock(Micros(0)), e.watermark());
    e.apply(&trade(
        Exchange::Kraken,
        eth(),
        1,
        "10",
        "1",
        Side::Buy,
        9 * SEC,
    ));
    assert_eq!(
        e.watermark(),
        Some(Micros(T0 + 9 * SEC)),
        "any pair and exchange moves it"
    );
    // The wall clock ignores the watermark.
    let mut wall = engine(ClockMode::Wall);
    wall.apply(&bt(1, "10", 3 * SEC));
    assert_eq!(wall.clock(Micros(42)), Some(Micros(42)));
    assert_eq!(wall.watermark(), Some(Micros(T0 + 3 * SEC)));
    assert!(advance(&mut wall, 6 * SEC).is_empty());
}

#[test]
fn seed_continues_a_series_from_a_finalized_candle() {
    for clock in [ClockMode::Wall, ClockMode::Event] {
        let mut e = engine(clock);
        e.seed(btc(), COMPOSITE, w(2), dec("42"));
        e.seed(btc(), BINANCE, Micros(w(2).0 + 3 * SEC), dec("41")); // any instant in the window
        // An older seed does not rewind the series.
        e.seed(btc(), COMPOSITE, w(1), dec("7"));
        // A trade for the seeded window is not applied again to the seeded series.
        let _ = e.apply(&bt(1, "1000", 11 * SEC));
        // Kraken was not seeded: it starts at its first trade.
        e.apply(&trade(
            Exchange::Kraken,
            btc(),
            1,
            "43",
            "1",
            Side::Buy,
            26 * SEC,
        ));
        let mut out = advance(&mut e, 32 * SEC);
        out.extend(flush(&mut e));
        let c = only(&out, btc(), COMPOSITE);
        assert_eq!(
            c.iter().map(|c| c.start).collect::<Vec<_>>(),
            vec![w(3), w(4), w(5)],
            "{clock:?}"
        );
        assert_eq!(ohlc(&c[0]), [dec("42"); 4]);
        assert_eq!(ohlc(&c[1]), [dec("42"); 4]);
        assert_eq!((c[2].open, c[2].trades), (dec("43"), 1));
        let b = only(&out, btc(), BINANCE);
        assert_eq!(
            b.iter()
                .map(|c| (c.start, c.close, c.trades))
                .collect::<Vec<_>>(),
            vec![
                (w(3), dec("41"), 0),
                (w(4), dec("41"), 0),
                (w(5), dec("41"), 0)
            ]
        );
        assert_eq!(
            only(&out, btc(), KRAKEN)
                .iter()
                .map(|c| c.start)
                .collect::<Vec<_>>(),
            vec![w(5)]
        );
    }
}

#[test]
fn a_seed_of_one_series_leaves_the_others_open() {
    let mut e = engine(ClockMode::Event);
    // Binance's candle for window 1 is already final, the composite's is not: the composite
    // still takes a Binance trade of window 1.
    e.seed(btc(), BINANCE, w(1), dec("50"));
    assert_eq!(e.apply(&bt(1, "51", 6 * SEC)), Outcome::Applied);
    // Now the composite's candles up to window 2 are final too.
    e.seed(btc(), COMPOSITE, w(2), dec("60"));
    assert_eq!(
        e.oldest_open_window(),
        None,
        "window 1 is final everywhere: dropped"
    );
    assert_eq!(
        e.apply(&bt(2, "52", 7 * SEC)),
        Outcome::Late,
        "final for Binance and composite"
    );
    assert_eq!(e.late_trades(), 1);
    // Window 2 is final for the composite only: Binance and Kraken still take trades.
    assert_eq!(e.apply(&bt(3, "53", 11 * SEC)), Outcome::Applied);
    let kr = trade(Exchange::Kraken, btc(), 1, "61", "1", Side::Buy, 12 * SEC);
    assert_eq!(e.apply(&kr), Outcome::Applied);
    let mut updates = Vec::new();
    e.take_updates(&mut updates);
    let mut sources: Vec<Source> = updates.iter().map(|u| u.source).collect();
    sources.sort();
    assert_eq!(
        sources,
        vec![BINANCE, KRAKEN],
        "no update of a final candle: {updates:?}"
    );
    let out = flush(&mut e);
    let summary = |s| {
        only(&out, btc(), s)
            .iter()
            .map(|c| (c.start, c.close, c.trades))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        summary(COMPOSITE),
        vec![],
        "the composite continues after window 2"
    );
    assert_eq!(summary(BINANCE), vec![(w(2), dec("53"), 1)]);
    assert_eq!(summary(KRAKEN), vec![(w(2), dec("61"), 1)]);
    assert_eq!(e.oldest_open_window(), None);
}

#[test]
fn take_updates_gives_in_progress_snapshots_of_changed_windows_only() {
    let mut e = engine(ClockMode::Wall);
    let mut up = Vec::new();
    e.take_updates(&mut up);
    assert!(up.is_empty());
    e.apply(&bt(1, "10", SEC));
    e.apply(&bt(2, "11", 2 * SEC));
    e.take_updates(&mut up);
    let mut sources: Vec<Source> = up.iter().map(|c| c.source).collect();
    sources.sort();
    assert_eq!(sources, vec![COMPOSITE, BINANCE]);
    assert!(
        up.iter()
            .all(|c| !c.is_final && c.start == w(0) && c.trades == 2 && c.close == dec("11"))
    );
    up.clear();
    e.take_updates(&mut up);
    assert!(up.is_empty(), "nothing changed: {up:?}");
    // A Kraken trade changes the composite and Kraken, not Binance.
    e.apply(&trade(
        Exchange::Kraken,
        btc(),
        1,
        "12",
        "1",
        Side::Buy,
        3 * SEC,
    ));
    e.take_updates(&mut up);
    let mut sources: Vec<Source> = up.iter().map(|c| c.source).collect();
    sources.sort();
    assert_eq!(sources, vec![COMPOSITE, KRAKEN]);
    let comp = up.iter().find(|c| c.source == COMPOSITE).unwrap();
    assert_eq!(
        (comp.trades, comp.close, comp.is_final),
        (3, dec("12"), false)
    );
    up.clear();
    // A trade in the next window while window 0 is still open: only window 1's snapshots.
    e.apply(&bt(3, "13", 6 * SEC));
    e.take_updates(&mut up);
    assert!(up.iter().all(|c| c.start == w(1)), "{up:?}");
    assert_eq!(up.len(), 2);
    up.clear();
    // Finalized windows give no more updates; snapshot still shows every open window.
    let finals = advance(&mut e, 6_500_000);
    assert_eq!(finals.len(), 3);
    e.take_updates(&mut up);
    assert!(up.is_empty());
    let mut snap = Vec::new();
    e.snapshot(&mut snap);
    assert_eq!(snap.len(), 2);
    assert!(snap.iter().all(|c| c.start == w(1) && !c.is_final));
    // The in-progress snapshot equals the final candle but for the flag.
    e.apply(&bt(4, "9", 7 * SEC));
    e.take_updates(&mut up);
    let last_update = *up.iter().find(|c| c.source == COMPOSITE).unwrap();
    let final_c = only(&flush(&mut e), btc(), COMPOSITE)[0];
    assert_eq!(
        Candle {
            is_final: true,
            ..last_update
        },
        final_c
    );
}

/// The trades of the identity test: 3 exchanges, 2 pairs, many equal times and prices.
fn identity_trades() -> Vec<Trade> {
    let mut trades = Vec::new();
    let exchanges = Exchange::ALL;
    for i in 0..60_u64 {
        let ex = exchanges[(i % 3) as usize];
        let pair = if i % 4 == 0 { eth() } else { btc() };
        let at = (i as i64 / 5) * 1_300_000; // ties of time within and across exchanges
        let price = format!("{}.{}", 100 + (i * 7) % 5, i % 10);
        let side = [Side::Buy, Side::Sell, Side::Unknown][(i % 3) as usize];
        trades.push(trade(
            ex,
            pair,
            1_000 + i,
            &price,
            &format!("0.{:03}", i + 1),
            side,
            at,
        ));
    }
    trades
}

/// Runs the engine on `trades` in the given arrival order, advancing the clock to each trade's
/// arrival time (trade time + `delay`).
fn run(clock: ClockMode, arrivals: &[(Trade, i64)]) -> (Vec<Candle>, u64) {
    let mut e = engine(clock);
    let mut out = Vec::new();
    for (t, arrival) in arrivals {
        e.advance(Micros(*arrival), &mut out);
        assert_eq!(e.apply(t), Outcome::Applied);
    }
    e.flush(&mut out);
    (out, e.late_trades())
}

#[test]
fn reprocessing_the_same_trades_in_any_arrival_order_within_grace_gives_identical_candles() {
    let trades = identity_trades();
    let in_order: Vec<(Trade, i64)> = trades.iter().map(|t| (*t, t.time.0)).collect();
    for clock in [ClockMode::Wall, ClockMode::Event] {
        let (reference, late) = run(clock, &in_order);
        assert_eq!(late, 0);
        assert!(reference.len() > 20);
        assert!(reference.iter().all(|c| c.is_final));
        for seed in 1..20_u64 {
            // Delays of 0..=1.5 s (the grace), arriving in order of trade time + delay.
            let mut arrivals: Vec<(Trade, i64)> = trades
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    (
                        *t,
                        t.time.0 + ((i as u64 * 7919 + seed * 104_729) % 1_500_001) as i64,
                    )
                })
                .collect();
            arrivals.sort_by_key(|(_, a)| *a);
            let (again, late) = run(clock, &arrivals);
            assert_eq!(late, 0);
            assert_eq!(again, reference, "{clock:?} seed {seed}");
        }
        // Replayed all at once in reverse, the clock moved only at the end: also identical.
        let mut e = engine(clock);
        for t in trades.iter().rev() {
            assert_eq!(e.apply(t), Outcome::Applied);
        }
        assert_eq!(flush(&mut e), reference, "{clock:?} reversed");
    }
}

#[test]
fn final_candles_come_out_in_order_of_start_pair_source() {
    let mut e = engine(ClockMode::Event);
    for t in identity_trades() {
        e.apply(&t);
    }
    let out = flush(&mut e);
    let keys: Vec<_> = out.iter().map(|c| (c.start, c.pair, c.source)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted, "sorted, and each identity once");
}

#[test]
fn oldest_open_window_and_finalized_before_track_the_open_windows() {
    let mut e = engine(ClockMode::Wall);
    assert_eq!(e.oldest_open_window(), None);
    e.apply(&bt(1, "10", 7 * SEC));
    e.apply(&trade(
        Exchange::Kraken,
        eth(),
        1,
        "10",
        "1",
        Side::Buy,
        3 * SEC,
    ));
    assert_eq!(e.oldest_open_window(), Some(w(0)));
    advance(&mut e, 6_500_000);
    assert_eq!(e.oldest_open_window(), Some(w(1)));
    assert_eq!(e.finalized_before(), w(1));
    flush(&mut e);
    assert_eq!(e.oldest_open_window(), None);
}

#[test]
fn one_minute_windows_align_to_the_epoch() {
    let mut e = Engine::new(EngineConfig {
        interval: Interval::parse("1m").unwrap(),
        grace: Duration::from_millis(2_000),
        clock: ClockMode::Event,
    });
    e.apply(&bt(1, "1", 59 * SEC));
    e.apply(&bt(2, "2", 60 * SEC));
    let out = only(&flush(&mut e), btc(), COMPOSITE);
    assert_eq!(
        out.iter().map(|c| (c.start, c.end())).collect::<Vec<_>>(),
        vec![
            (Micros(T0), Micros(T0 + 60 * SEC)),
            (Micros(T0 + 60 * SEC), Micros(T0 + 120 * SEC))
        ]
    );
    assert_eq!(out[0].start.0 % 60_000_000, 0);
}

#[test]
fn interval_and_clock_parsing_cases_not_covered_by_unit_tests() {
    assert_eq!(Interval::parse("1min").unwrap().micros(), 60 * SEC);
    assert_eq!(Interval::parse("250µs").unwrap().micros(), 250);
    assert_eq!(Interval::parse("5 s").unwrap().micros(), 5 * SEC);
    assert_eq!(Interval::parse("500ms").unwrap().to_string(), "500ms");
    assert_eq!(Interval::parse("3600s").unwrap().to_string(), "1h");
    assert_eq!(Interval::parse("1500ms").unwrap().to_string(), "1500ms");
    assert_eq!("2s".parse::<Interval>().unwrap(), Interval::seconds(2));
    for (input, reason) in [
        ("0ms", "longer than zero"),
        ("+5s", "number"),
        ("5s5", "unit"),
        ("5S", "unit"),
        ("5 m s", "unit"),
        ("\t", "empty"),
    ] {
        let msg = Interval::parse(input).unwrap_err().to_string();
        assert!(
            msg.contains(reason) && msg.contains(&format!("{input:?}")),
            "{input}: {msg}"
        );
    }
    assert_eq!(Duration::parse("0s").unwrap(), Duration(0));
    assert_eq!(Duration::parse("2s").unwrap().to_string(), "2s");
    assert_eq!("Event".parse::<ClockMode>().unwrap(), ClockMode::Event);
    assert_eq!(" wall ".parse::<ClockMode>().unwrap(), ClockMode::Wall);
    let msg = "replay".parse::<ClockMode>().unwrap_err();
    assert!(
        msg.contains("\"replay\"") && msg.contains("wall") && msg.contains("event"),
        "{msg}"
    );
    assert_eq!(ClockMode::default(), ClockMode::Wall);
}

#[test]
fn many_pairs_keep_their_own_candles() {
    // More pairs than the engine scans linearly (it switches to a hash map): each pair's trades
    // stay in its own candles, whatever the interleaving.
    let pairs: Vec<Pair> = (0..40)
        .map(|i| Pair::parse(&format!("P{i}-USDT")).unwrap())
        .collect();
    let mut e = engine(ClockMode::Event);
    for round in 0..5_i64 {
        for (i, pair) in pairs.iter().enumerate().rev() {
            let price = format!("{}.{}", i + 1, round);
            let t = trade(
                Exchange::Coinbase,
                *pair,
                round as u64,
                &price,
                "1",
                Side::Buy,
                round * SEC,
            );
            assert_eq!(e.apply(&t), Outcome::Applied);
        }
    }
    let out = flush(&mut e);
    assert_eq!(out.len(), 80, "composite and coinbase for each of 40 pairs");
    for (i, pair) in pairs.iter().enumerate() {
        let c = only(&out, *pair, COMPOSITE)[0];
        let p = |r: u32| dec(&format!("{}.{r}", i + 1));
        assert_eq!(ohlc(&c), [p(0), p(4), p(0), p(4)], "{pair}");
        assert_eq!((c.trades, c.volume), (5, dec("5")));
    }
}

#[test]
fn wall_clock_rejects_trades_stamped_impossibly_far_in_the_future() {
    let mut e = engine(ClockMode::Wall);
    assert!(advance(&mut e, 0).is_empty());
    let hour = 3_600 * SEC;
    // Within the bound: accepted (an exchange clock a little ahead of ours).
    assert_eq!(e.apply(&bt(1, "100", 10 * SEC)), Outcome::Applied);
    // An hour or more ahead of the wall clock: rejected and counted, its window never opened.
    assert_eq!(e.apply(&bt(2, "200", hour)), Outcome::Late);
    assert_eq!(e.apply(&bt(3, "300", 1_000 * hour)), Outcome::Late);
    assert_eq!(e.late_trades(), 2);
    assert_eq!(e.oldest_open_window(), Some(w(2)));
    // Once the clock has moved on, the same time is fine.
    advance(&mut e, hour - 10 * SEC);
    assert_eq!(e.apply(&bt(4, "400", hour)), Outcome::Applied);
}
