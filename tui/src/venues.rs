//! The venue pane (`d`): for the selected pair, each exchange's close against the composite's,
//! in basis points, over the visible candles, with the widest spread named.
//!
//! Pure parts: [`basis_points`], [`spreads`], [`widest`]. [`pane`] draws one row per exchange,
//! a bar per candle under that candle's column (height: the size of the spread against the
//! widest; green above the composite, red below), the exchange's name on the left and its
//! latest spread on the right, under a heading naming the widest spread.

use crate::app::Series;
use crate::chart::{AXIS, DOWN, Placed, UP, eighth_bar};
use crate::labels::time_label;
use candles_core::{Decimal, Exchange, Micros, Pair, Source};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use rust_decimal::prelude::ToPrimitive;
use std::collections::HashMap;

/// `(venue - composite) / composite` in basis points (1 bp = 0.01 %); `None` for a zero
/// composite.
pub fn basis_points(venue: Decimal, composite: Decimal) -> Option<f64> {
    if composite.is_zero() {
        return None;
    }
    ((venue - composite) / composite * Decimal::from(10_000)).to_f64()
}

/// The spread of `venue`'s close against `composite`'s for each window start in `starts`
/// (`None` where either has no candle).
pub fn spreads(starts: &[Micros], venue: &Series, composite: &Series) -> Vec<Option<f64>> {
    starts
        .iter()
        .map(|start| {
            let v = venue.candles.get(start)?;
            let c = composite.candles.get(start)?;
            basis_points(v.close, c.close)
        })
        .collect()
}

/// The widest spread, by size: which exchange, how many bp, and the window start.
pub fn widest(
    rows: &[(Exchange, Vec<Option<f64>>)],
    starts: &[Micros],
) -> Option<(Exchange, f64, Micros)> {
    rows.iter()
        .flat_map(|(e, bps)| {
            bps.iter()
                .zip(starts)
                .filter_map(move |(bp, start)| Some((*e, (*bp)?, *start)))
        })
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
}

/// A spread as text: `+3.2bp`, `-12bp`, `0.0bp`.
pub fn bp_text(bp: f64) -> String {
    let sign = if bp > 0.0 { "+" } else { "" };
    if bp.abs() >= 100.0 {
        format!("{sign}{bp:.0}bp")
    } else {
        format!("{sign}{bp:.1}bp")
    }
}

/// The bar for a spread of `bp` against the widest `max` (at least one eighth when not zero;
/// `·` for none).
fn bar(bp: f64, max: f64) -> &'static str {
    let level = if max > 0.0 && bp != 0.0 {
        (bp.abs() / max * 8.0).round().clamp(1.0, 8.0) as u32
    } else {
        0
    };
    eighth_bar(level).unwrap_or("·")
}

/// Rows the pane needs: a heading and one row per exchange.
pub fn height() -> u16 {
    Exchange::ALL.len() as u16 + 1
}

/// Draws the pane for `pair` into `area`, its bars under the candles `placed` (the chart
/// above, drawn in the same columns); the right `label_w` columns hold each latest spread.
pub fn pane(
    view: &HashMap<(Pair, Source), Series>,
    pair: Pair,
    placed: &[Placed],
    area: Rect,
    buf: &mut Buffer,
) {
    let starts: Vec<Micros> = placed.iter().map(|p| p.start).collect();
    let empty = Series::default();
    let composite = view.get(&(pair, Source::Composite)).unwrap_or(&empty);
    let rows: Vec<(Exchange, Vec<Option<f64>>)> = Exchange::ALL
        .iter()
        .map(|e| {
            let venue = view.get(&(pair, Source::Exchange(*e))).unwrap_or(&empty);
            (*e, spreads(&starts, venue, composite))
        })
        .collect();
    let axis = Style::default().fg(AXIS);
    let heading = match widest(&rows, &starts) {
        Some((e, bp, start)) => {
            let at = composite
                .interval()
                .map_or(String::new(), |i| time_label(start, i));
            format!("venues vs composite · widest: {e} {} at {at}", bp_text(bp))
        }
        None => "venues vs composite: no exchange candles in view".to_string(),
    };
    buf.set_stringn(area.x, area.y, heading, usize::from(area.width), axis);
    let max = rows
        .iter()
        .flat_map(|(_, bps)| bps.iter().flatten())
        .fold(0.0f64, |m, bp| m.max(bp.abs()));
    let right = area.x + area.width;
    for ((exchange, bps), y) in rows.iter().zip(area.y + 1..area.y + area.height) {
        let name = format!("{:<9}", exchange.as_str());
        let name_end = area.x + name.len() as u16;
        for (p, bp) in placed.iter().zip(bps) {
            let Some(bp) = bp else { continue };
            if p.left < name_end || p.left + p.width > right {
                continue;
            }
            let colour = if *bp >= 0.0 { UP } else { DOWN };
            for x in p.left..p.left + p.width {
                buf[(x, y)]
                    .set_symbol(bar(*bp, max))
                    .set_style(Style::default().fg(colour));
            }
        }
        buf.set_stringn(area.x, y, name, usize::from(area.width), axis);
        if let Some(last) = bps.iter().rev().flatten().next() {
            let text = bp_text(*last);
            let w = text.len() as u16;
            if area.width > w + name_end - area.x {
                let style = Style::default()
                    .fg(if *last >= 0.0 { UP } else { DOWN })
                    .add_modifier(Modifier::BOLD);
                buf.set_string(right - w, y, text, style);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candles_core::{Candle, Interval};

    fn series(source: Source, closes: &[i64]) -> Series {
        let mut s = Series::default();
        for (i, close) in closes.iter().enumerate() {
            s.upsert(Candle::flat(
                Pair::defaults()[0],
                source,
                Interval::seconds(5),
                Micros(i as i64 * 5_000_000),
                Decimal::from(*close),
            ));
        }
        s
    }

    #[test]
    fn spreads_are_basis_points_against_the_composite_per_window() {
        let composite = series(Source::Composite, &[10_000, 10_000, 10_000]);
        let kraken = series(Source::Exchange(Exchange::Kraken), &[10_001, 9_990]);
        let starts = [Micros(0), Micros(5_000_000), Micros(10_000_000)];
        let bps = spreads(&starts, &kraken, &composite);
        assert_eq!(bps, [Some(1.0), Some(-10.0), None]);
        let rows = vec![
            (Exchange::Binance, vec![Some(3.0), Some(-2.0), None]),
            (Exchange::Kraken, bps),
        ];
        assert_eq!(
            widest(&rows, &starts),
            Some((Exchange::Kraken, -10.0, Micros(5_000_000)))
        );
        assert_eq!(widest(&[], &starts), None);
        assert_eq!(basis_points(Decimal::ONE, Decimal::ZERO), None);
        assert_eq!(bp_text(-10.0), "-10.0bp");
        assert_eq!(bp_text(123.4), "+123bp");
        assert_eq!(
            (bar(0.0, 5.0), bar(0.1, 5.0), bar(-5.0, 5.0)),
            ("·", "▁", "█")
        );
    }
}
