//! Mapping prices to terminal rows: pure functions, unit-tested, safe on any input.
//!
//! The chart has `rows` cell rows; each row has a top and a bottom half, so a price maps to one of
//! `2 * rows` half-cell units counted from the bottom (unit 0 is the bottom half of the lowest
//! row). Floats are used here only for drawing: candles carry exact decimals, converted to `f64`
//! at render time.
//!
//! Guards: a flat range (`max == min`) puts every price in the middle; NaN, infinities and
//! reversed ranges never panic and never produce an index outside the chart.

/// A vertical price scale over `rows` cell rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    /// Price at the bottom edge of the lowest row.
    pub min: f64,
    /// Price at the top edge of the highest row.
    pub max: f64,
    /// Number of cell rows (each split into two half-cell units).
    pub rows: u16,
}

impl Scale {
    /// A scale for prices between `lo` and `hi` drawn on `rows` rows.
    ///
    /// A flat range is widened symmetrically (by 0.1 % of the price, or 1 for a price of 0) so a
    /// flat series is drawn in the middle; non-finite bounds fall back to `0..1`; reversed bounds
    /// are swapped.
    pub fn new(lo: f64, hi: f64, rows: u16) -> Scale {
        let (mut lo, mut hi) = match (lo.is_finite(), hi.is_finite()) {
            (true, true) => (lo.min(hi), lo.max(hi)),
            (true, false) => (lo, lo),
            (false, true) => (hi, hi),
            (false, false) => (0.0, 1.0),
        };
        if hi - lo <= f64::EPSILON * hi.abs().max(lo.abs()) || !(hi - lo).is_finite() {
            let mid = lo / 2.0 + hi / 2.0;
            let pad = if mid == 0.0 {
                1.0
            } else {
                (mid.abs() * 0.001).max(f64::MIN_POSITIVE)
            };
            lo = mid - pad;
            hi = mid + pad;
            if !(hi - lo).is_finite() || hi <= lo {
                // Prices near f64::MAX: give up on padding rather than overflow.
                lo = mid.min(0.0);
                hi = mid.max(0.0).max(lo + 1.0);
            }
        }
        Scale {
            min: lo,
            max: hi,
            rows,
        }
    }

    /// Number of half-cell units: `2 * rows`.
    pub fn units(&self) -> u32 {
        u32::from(self.rows) * 2
    }

    /// The half-cell unit of `price`, counted from the bottom: `0..units()` (clamped).
    pub fn price_to_unit(&self, price: f64) -> u32 {
        price_to_unit(price, self.min, self.max, self.units())
    }

    /// The cell row of `price`, counted from the top: `0..rows` (clamped).
    pub fn price_to_row(&self, price: f64) -> u16 {
        price_to_row(price, self.min, self.max, self.rows)
    }

    /// The price at the vertical centre of cell row `row` (counted from the top).
    pub fn row_to_price(&self, row: u16) -> f64 {
        if self.rows == 0 {
            return self.min;
        }
        let from_bottom = f64::from(self.rows.saturating_sub(1).saturating_sub(row)) + 0.5;
        self.min + (self.max - self.min) * from_bottom / f64::from(self.rows)
    }
}

/// The half-cell unit (from the bottom, `0..units`) of `price` on a scale from `min` to `max`.
///
/// Flat range (`max == min`) → the middle unit; NaN → the bottom; values outside the range are
/// clamped to the edges; `units == 0` → 0.
pub fn price_to_unit(price: f64, min: f64, max: f64, units: u32) -> u32 {
    if units == 0 {
        return 0;
    }
    let top = units - 1;
    let range = max - min;
    if range.is_nan() || range <= 0.0 || !range.is_finite() {
        return units / 2;
    }
    if price.is_nan() {
        return 0;
    }
    let t = (price - min) / range;
    if t.is_nan() || t <= 0.0 {
        return 0;
    }
    if t >= 1.0 {
        return top;
    }
    // Truncation is the intent: each unit covers [k/units, (k+1)/units).
    ((t * f64::from(units)) as u32).min(top)
}

/// The cell row (from the top, `0..rows`) of `price` on a scale from `min` to `max`.
///
/// Flat range (`max == min`) → the middle row; out-of-range values clamp to the edges;
/// `rows == 0` → 0.
pub fn price_to_row(price: f64, min: f64, max: f64, rows: u16) -> u16 {
    if rows == 0 {
        return 0;
    }
    let unit = price_to_unit(price, min, max, u32::from(rows) * 2);
    let from_bottom = (unit / 2) as u16;
    rows - 1 - from_bottom.min(rows - 1)
}

/// The round step between price labels: the smallest 1, 2 or 5 × 10^k that is at least `raw`
/// and at least one unit in the last of `decimals` places (no label shows digits it lacks).
pub fn nice_step(raw: f64, decimals: usize) -> f64 {
    let least = 10f64.powi(-(decimals.min(12) as i32));
    let raw = if raw.is_finite() && raw > least {
        raw
    } else {
        least
    };
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

/// The multiples of `step` from `min` to `max` (inclusive), lowest first; none for a bad step
/// or range, or when there would be more than 200.
pub fn ticks(min: f64, max: f64, step: f64) -> Vec<f64> {
    if step.is_nan() || step <= 0.0 || !min.is_finite() || !max.is_finite() {
        return Vec::new();
    }
    let first = (min / step).ceil();
    let last = (max / step).floor();
    if !(last - first).is_finite() || last < first || last - first > 200.0 {
        return Vec::new();
    }
    (0..=(last - first) as u32)
        .map(|k| (first + f64::from(k)) * step)
        .collect()
}

/// A price label of exactly `width` characters (right-aligned), switching to scientific
/// notation when the plain form would not fit.
pub fn format_price(price: f64, decimals: usize, width: usize) -> String {
    let plain = format!("{price:.decimals$}");
    let text = if plain.len() <= width {
        plain
    } else {
        let mut sci = format!("{price:.3e}");
        if sci.len() > width {
            sci = format!("{price:.0e}");
        }
        sci
    };
    let text: String = text.chars().take(width).collect();
    format!("{text:>width$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_range_onto_rows_top_down() {
        // 10 rows from 100 to 200: each row covers 10.
        assert_eq!(price_to_row(200.0, 100.0, 200.0, 10), 0);
        assert_eq!(price_to_row(195.0, 100.0, 200.0, 10), 0);
        assert_eq!(price_to_row(189.9, 100.0, 200.0, 10), 1);
        assert_eq!(price_to_row(100.0, 100.0, 200.0, 10), 9);
        assert_eq!(price_to_row(150.0, 100.0, 200.0, 10), 4);
        assert_eq!(price_to_row(149.9, 100.0, 200.0, 10), 5);
    }

    #[test]
    fn half_units_give_twice_the_resolution() {
        assert_eq!(price_to_unit(100.0, 100.0, 200.0, 20), 0);
        assert_eq!(price_to_unit(104.9, 100.0, 200.0, 20), 0);
        assert_eq!(price_to_unit(105.0, 100.0, 200.0, 20), 1);
        assert_eq!(price_to_unit(200.0, 100.0, 200.0, 20), 19);
        assert_eq!(price_to_unit(199.99, 100.0, 200.0, 20), 19);
    }

    #[test]
    fn flat_range_is_the_middle() {
        assert_eq!(price_to_row(5.0, 5.0, 5.0, 10), 4);
        assert_eq!(price_to_unit(5.0, 5.0, 5.0, 20), 10);
        assert_eq!(price_to_row(7.0, 5.0, 5.0, 1), 0);
        let s = Scale::new(97_000.0, 97_000.0, 10);
        assert!(s.min < 97_000.0 && s.max > 97_000.0);
        assert_eq!(s.price_to_row(97_000.0), 4);
        let zero = Scale::new(0.0, 0.0, 4);
        assert!(zero.min < 0.0 && zero.max > 0.0);
    }

    #[test]
    fn out_of_range_and_non_finite_values_clamp() {
        assert_eq!(price_to_row(1e300, 0.0, 1.0, 10), 0);
        assert_eq!(price_to_row(-1e300, 0.0, 1.0, 10), 9);
        assert_eq!(price_to_row(f64::INFINITY, 0.0, 1.0, 10), 0);
        assert_eq!(price_to_row(f64::NEG_INFINITY, 0.0, 1.0, 10), 9);
        assert_eq!(price_to_row(f64::NAN, 0.0, 1.0, 10), 9);
        assert_eq!(price_to_row(0.5, f64::NAN, 1.0, 10), 4);
        assert_eq!(price_to_row(0.5, 0.0, f64::INFINITY, 10), 4);
        assert_eq!(
            price_to_row(0.5, 1.0, 0.0, 10),
            4,
            "reversed range is treated as flat"
        );
        assert_eq!(price_to_row(1.0, 0.0, 1.0, 0), 0);
        assert_eq!(price_to_unit(1.0, 0.0, 1.0, 0), 0);
    }

    #[test]
    fn scale_guards_extremes() {
        let s = Scale::new(f64::NAN, f64::INFINITY, 10);
        assert!(s.min.is_finite() && s.max.is_finite() && s.max > s.min);
        let s = Scale::new(200.0, 100.0, 10);
        assert_eq!((s.min, s.max), (100.0, 200.0));
        let s = Scale::new(f64::MAX, f64::MAX, 10);
        assert!(s.max > s.min, "{s:?}");
        assert!(s.price_to_row(f64::MAX) < 10);
        let tiny = Scale::new(0.000_000_01, 0.000_000_02, 10);
        assert_eq!(tiny.price_to_row(0.000_000_02), 0);
        assert_eq!(tiny.price_to_row(0.000_000_01), 9);
        let huge = Scale::new(1e15, 1e15 + 1.0, 10);
        assert_eq!(huge.price_to_row(1e15 + 1.0), 0);
    }

    #[test]
    fn row_to_price_is_the_row_centre() {
        let s = Scale::new(100.0, 200.0, 10);
        assert_eq!(s.row_to_price(0), 195.0);
        assert_eq!(s.row_to_price(9), 105.0);
        for row in 0..10 {
            assert_eq!(s.price_to_row(s.row_to_price(row)), row);
        }
    }

    #[test]
    fn ticks_are_on_round_steps_at_the_pairs_precision() {
        assert_eq!(nice_step(13.0, 2), 20.0);
        assert_eq!(nice_step(0.3, 2), 0.5);
        assert_eq!(nice_step(100.0, 0), 100.0);
        assert_eq!(
            nice_step(0.001, 2),
            0.01,
            "no finer than a cent for a 2-decimal pair"
        );
        assert_eq!(nice_step(f64::NAN, 0), 1.0);
        assert_eq!(
            ticks(2905.3, 2951.9, 10.0),
            [2910.0, 2920.0, 2930.0, 2940.0, 2950.0]
        );
        assert!(ticks(0.0, 1e300, 1.0).is_empty());
        assert!(ticks(0.0, 1.0, 0.0).is_empty());
    }

    #[test]
    fn labels_have_a_fixed_width() {
        assert_eq!(format_price(97_000.123, 1, 9), "  97000.1");
        assert_eq!(format_price(1.5e20, 2, 9).len(), 9);
        assert!(format_price(1.5e20, 2, 9).contains('e'));
        assert_eq!(format_price(-3.0, 0, 4), "  -3");
    }
}
