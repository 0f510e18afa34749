//! Our candles against Binance's own, on real recorded data.
//!
//! `testdata/reference-data/binance-xrpeth/` (in the repository) holds
//! 12,477 real XRPETH aggregate trades of 2019-10-11 00:00 to 2019-10-13 11:19 UTC and the 3,560
//! one-minute and 712 five-minute klines Binance published for the same time. We replay the
//! trades through the engine in event-time mode and require every kline to equal both our
//! composite and our Binance candle of the same window: start, open, high, low, close and
//! volume, compared as exact decimals parsed from the JSON number text, empty minutes (flat at
//! the previous close, volume 0) included.
//!
//! What is compared, precisely: the first trade falls in the first kline's window and the last
//! trade in the last kline's, so the engine produces a candle for every kline and no other; the
//! counts must be exactly 3,560 and 712. The test fails (it does not skip) if the data is missing.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure with its message.

use candles_core::engine::{ClockMode, Engine, EngineConfig, Outcome};
use candles_core::time::Duration;
use candles_core::{Candle, Decimal, Exchange, Interval, Micros, Pair, Side, Source, Trade};
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/reference-data/binance-xrpeth")
}

fn read(name: &str) -> String {
    let path = data_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}. The reference data is part of the repository \
             (testdata/reference-data/binance-xrpeth/); restore it with `git checkout testdata`",
            path.display()
        )
    })
}

/// An exact decimal from a number's text, plain (`0.00141342`) or scientific (`1e-05`).
fn exact(text: &str) -> Decimal {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .unwrap_or_else(|e| panic!("not an exact decimal: {text:?}: {e}"))
}

fn xrp_eth() -> Pair {
    Pair::parse("XRP-ETH").unwrap()
}

/// The aggregate trades, in file (trade id) order.
fn trades() -> Vec<Trade> {
    let text = read("binance_XRPETH_aggTrades_2019-10-11_13.csv");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,is_best_match"
        )
    );
    let trades: Vec<Trade> = lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 8, "{line}");
            // The buyer was the maker: the taker sold.
            let side = match f[6] {
                "true" => Side::Sell,
                "false" => Side::Buy,
                other => panic!("is_buyer_maker {other:?} in {line}"),
            };
            let time = Micros::from_millis(f[5].parse().unwrap());
            Trade::new(
                Exchange::Binance,
                xrp_eth(),
                f[0].parse().unwrap(),
                f[1],
                f[2],
                side,
                time,
            )
            .unwrap()
        })
        .collect();
    assert_eq!(trades.len(), 12_477);
    trades
}

/// One Binance kline: `[open_time_ms, open, high, low, close, volume]`.
#[derive(Debug, PartialEq, Eq)]
struct Kline {
    start: Micros,
    ohlcv: [Decimal; 5],
}

fn klines(name: &str) -> Vec<Kline> {
    let rows: Vec<Vec<serde_json::Value>> = serde_json::from_str(&read(name)).unwrap();
    rows.into_iter()
        .map(|row| {
            assert_eq!(row.len(), 6, "{row:?}");
            // With serde_json's arbitrary_precision, a number's text is kept exactly as written.
            let text: Vec<String> = row
                .iter()
                .map(|v| match v {
                    serde_json::Value::Number(n) => n.to_string(),
                    other => panic!("not a number: {other}"),
                })
                .collect();
            Kline {
                start: Micros::from_millis(text[0].parse().unwrap()),
                ohlcv: [
                    exact(&text[1]),
                    exact(&text[2]),
                    exact(&text[3]),
                    exact(&text[4]),
                    exact(&text[5]),
                ],
            }
        })
        .collect()
}

fn as_kline(c: &Candle) -> Kline {
    Kline {
        start: c.start,
        ohlcv: [c.open, c.high, c.low, c.close, c.volume],
    }
}

/// Replays the trades in trade-id order; the wall clock (if used) reads each trade's time, as
/// if it arrived the instant it happened. Returns (composite, binance) final candles.
fn replay(trades: &[Trade], interval: Interval, clock: ClockMode) -> (Vec<Candle>, Vec<Candle>) {
    let mut engine = Engine::new(EngineConfig {
        interval,
        grace: Duration::from_millis(2_000),
        clock,
    });
    let mut out = Vec::new();
    for t in trades {
        engine.advance(t.time, &mut out);
        assert_eq!(engine.apply(t), Outcome::Applied, "{t:?}");
    }
    engine.flush(&mut out);
    assert_eq!(engine.late_trades(), 0);
    let of = |s: Source| {
        out.iter()
            .filter(|c| c.source == s)
            .copied()
            .collect::<Vec<_>>()
    };
    let composite = of(Source::Composite);
    let binance = of(Source::Exchange(Exchange::Binance));
    assert_eq!(
        composite.len() + binance.len(),
        out.len(),
        "no other source"
    );
    (composite, binance)
}

fn compare(interval: &str, file: &str, expected_count: usize, expected_empty: Option<usize>) {
    let interval = Interval::parse(interval).unwrap();
    let trades = trades();
    let klines = klines(file);
    assert_eq!(
        klines.len(),
        expected_count,
        "{file}: Binance's kline count"
    );
    // Every kline is in reach: the first trade is in the first kline's window, the last trade in
    // the last kline's, and the klines are consecutive windows.
    assert_eq!(interval.window_start(trades[0].time), klines[0].start);
    assert_eq!(
        interval.window_start(trades[trades.len() - 1].time),
        klines[klines.len() - 1].start
    );
    for pair in klines.windows(2) {
        assert_eq!(
            pair[1].start,
            interval.window_end(pair[0].start),
            "{file}: klines are consecutive"
        );
    }
    for clock in [ClockMode::Event, ClockMode::Wall] {
        let (composite, binance) = replay(&trades, interval, clock);
        for (source, candles) in [("composite", &composite), ("binance", &binance)] {
            assert_eq!(
                candles.len(),
                klines.len(),
                "{clock:?} {source}: one candle per kline"
            );
            for (i, (c, k)) in candles.iter().zip(&klines).enumerate() {
                assert_eq!(&as_kline(c), k, "{clock:?} {source} {interval} candle #{i}");
                assert!(c.is_final);
                assert_eq!(c.buy_volume + c.sell_volume, c.volume);
            }
            assert_eq!(
                candles.iter().map(|c| c.trades).sum::<u64>(),
                trades.len() as u64
            );
            let empty = candles.iter().filter(|c| c.trades == 0).count();
            assert_eq!(
                empty,
                klines.iter().filter(|k| k.ohlcv[4].is_zero()).count()
            );
            if let Some(n) = expected_empty {
                assert_eq!(empty, n, "{source}: empty windows (flat candles)");
            }
        }
        assert!(composite.iter().zip(&binance).all(|(c, b)| Candle {
            source: b.source,
            ..*c
        } == *b));
    }
}

#[test]
fn one_minute_candles_equal_binances_3560_klines() {
    // The data's README: 1,091 of the minutes have no trade.
    compare(
        "1m",
        "binance_XRPETH_klines_1m_2019-10-11_13.json",
        3_560,
        Some(1_091),
    );
}

#[test]
fn five_minute_candles_equal_binances_712_klines() {
    compare(
        "5m",
        "binance_XRPETH_klines_5m_2019-10-11_13.json",
        712,
        None,
    );
}

#[test]
fn kline_numbers_are_read_exactly() {
    // Guards the comparison itself: the JSON text is parsed as decimals, not through f64.
    let k = &klines("binance_XRPETH_klines_1m_2019-10-11_13.json")[0];
    assert_eq!(k.start, Micros::from_millis(1_570_752_000_000));
    assert_eq!(k.ohlcv[0].to_string(), "0.00141342");
    assert_eq!(k.ohlcv[4].to_string(), "1482.0");
    let v: serde_json::Value =
        serde_json::from_str("[0.1000000000000000055511151231257827]").unwrap();
    assert_eq!(
        v[0].to_string(),
        "0.1000000000000000055511151231257827",
        "arbitrary_precision is on"
    );
}
