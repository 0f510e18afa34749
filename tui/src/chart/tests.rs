//! Unit tests of [`super`] (kept apart so `chart.rs` reads as the code it is).

use super::*;
use candles_core::{Interval, Pair, Source};

fn candle(o: i64, h: i64, l: i64, c: i64) -> Candle {
    let mut k = Candle::flat(
        Pair::defaults()[0],
        Source::Composite,
        Interval::seconds(5),
        Micros(0),
        Decimal::from(o),
    );
    k.high = Decimal::from(h);
    k.low = Decimal::from(l);
    k.close = Decimal::from(c);
    k
}

#[test]
fn prices_keep_their_decimals() {
    let d = |s: &str| Decimal::from_str_exact(s).unwrap();
    assert_eq!(price(d("2921.04"), 2), "2921.04");
    assert_eq!(price(d("2921"), 2), "2921.00");
    assert_eq!(price(d("2921.046"), 2), "2921.05");
    assert_eq!(price(d("-0.5"), 1), "-0.5");
}

#[test]
fn glyph_table_covers_every_combination() {
    use Half::*;
    let all = [Nothing, Wick, Body];
    let glyphs: Vec<&str> = all
        .iter()
        .flat_map(|t| all.iter().map(move |b| glyph(*t, *b)))
        .collect();
    assert_eq!(glyphs.concat(), " ╷╻╵│╽╹╿┃");
}

#[test]
fn a_candle_maps_to_half_cells() {
    // 4 rows from 0 to 8: one unit per price step.
    let scale = Scale::new(0.0, 8.0, 4);
    let k = candle(3, 7, 0, 5);
    let u = CandleUnits::of(&k, &scale);
    assert_eq!(
        u,
        CandleUnits {
            body: (3, 5),
            wick: (0, 7)
        }
    );
    let column: Vec<&str> = (0..4).map(|r| u.glyph_at(r, 4)).collect();
    assert_eq!(column, ["│", "┃", "╿", "│"]);
    let doji = CandleUnits::of(&candle(4, 4, 4, 4), &scale);
    assert_eq!(
        (0..4).map(|r| doji.glyph_at(r, 4)).collect::<String>(),
        " ╻  "
    );
}

#[test]
fn capacity_and_labels() {
    assert_eq!(capacity(100, 2), 50);
    assert_eq!(capacity(5, 0), 5);
    assert_eq!(
        time_label(Micros(1_795_675_205_000_000), Interval::seconds(5)),
        "06:40:05"
    );
    assert_eq!(
        time_label(Micros(1_795_675_205_000_000), Interval::seconds(60)),
        "06:40"
    );
    assert_eq!(label_every(Interval::seconds(5), 5), 6, "30 s");
    assert_eq!(label_every(Interval::seconds(5), 3), 3, "15 s");
    assert_eq!(label_every(Interval::seconds(60), 3), 5, "5 m");
    assert_eq!(
        label_every(Interval::from_micros(700_000).unwrap(), 4),
        4,
        "no round span: as computed"
    );
    assert_eq!(short_volume(12_345.0), "12.3k");
    assert_eq!(short_volume(1.23456), "1.23");
    assert_eq!(short_volume(f64::NAN), "0.00");
}
