//! Overlays over the candles: a VWAP line and a simple moving average (MA) of closes.
//!
//! Pure parts: the values per candle ([`vwap_line`], [`moving_average`]) and the MA periods
//! `[`/`]` step through ([`next_period`]). Drawing: [`draw_line`] rasterises a line through the
//! candles' centres onto braille dots (2×4 per cell, finer than the candles' half cells) and
//! puts them only in cells the candles left empty, so the line passes behind the candles.

use candles_core::{Candle, Decimal};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

/// Colour of the VWAP line and its legend.
pub const VWAP_COLOUR: Color = Color::Yellow;
/// Colour of the moving-average line and its legend.
pub const MA_COLOUR: Color = Color::Magenta;
/// The MA period at start when none is given.
pub const DEFAULT_MA: usize = 20;
/// The periods `[` and `]` step through.
pub const MA_PERIODS: [usize; 6] = [5, 10, 20, 50, 100, 200];
/// Bounds of a settable MA period (`--ma`).
pub const MA_RANGE: std::ops::RangeInclusive<usize> = 2..=500;

/// Which overlays are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlays {
    /// The VWAP line (`v`).
    pub vwap: bool,
    /// The moving average of closes (`m`).
    pub ma: bool,
    /// Candles averaged by the MA (`[` / `]`).
    pub ma_period: usize,
}

impl Default for Overlays {
    fn default() -> Overlays {
        Overlays {
            vwap: false,
            ma: false,
            ma_period: DEFAULT_MA,
        }
    }
}

/// The period after `current` in [`MA_PERIODS`] (`by > 0`) or before it (`by < 0`); a period
/// between two of them moves to the neighbour in that direction; stops at either end.
pub fn next_period(current: usize, by: isize) -> usize {
    if by > 0 {
        MA_PERIODS
            .iter()
            .copied()
            .find(|p| *p > current)
            .unwrap_or(current)
    } else {
        MA_PERIODS
            .iter()
            .rev()
            .copied()
            .find(|p| *p < current)
            .unwrap_or(current)
    }
}

fn f64_of(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// The VWAP up to each candle: quote volume over base volume of all candles so far (anchored
/// at the first candle held), `None` until something traded.
pub fn vwap_line(candles: &[&Candle]) -> Vec<Option<f64>> {
    let (mut quote, mut base) = (Decimal::ZERO, Decimal::ZERO);
    candles
        .iter()
        .map(|c| {
            quote += c.quote_volume;
            base += c.volume;
            (!base.is_zero()).then(|| f64_of(quote / base))
        })
        .collect()
}

/// The mean of the last `period` closes at each candle, `None` for the first `period - 1`.
pub fn moving_average(candles: &[&Candle], period: usize) -> Vec<Option<f64>> {
    let period = period.max(1);
    let mut sum = Decimal::ZERO;
    (0..candles.len())
        .map(|i| {
            sum += candles[i].close;
            if i >= period {
                sum -= candles[i - period].close;
            }
            (i + 1 >= period).then(|| f64_of(sum / Decimal::from(period)))
        })
        .collect()
}

/// Braille dots over a grid of cells: 2 dots wide and 4 high per cell.
#[derive(Clone, Debug)]
pub struct Dots {
    width: u16,
    height: u16,
    bits: Vec<u8>,
}

impl Dots {
    /// An empty grid of `width`×`height` cells.
    pub fn new(width: u16, height: u16) -> Dots {
        Dots {
            width,
            height,
            bits: vec![0; usize::from(width) * usize::from(height)],
        }
    }

    /// Sets the dot at (`x`, `y`) in dots from the top left; outside the grid is ignored.
    pub fn set(&mut self, x: i64, y: i64) {
        if x < 0 || y < 0 || x >= i64::from(self.width) * 2 || y >= i64::from(self.height) * 4 {
            return;
        }
        let (cx, cy) = ((x / 2) as usize, (y / 4) as usize);
        const BIT: [[u8; 4]; 2] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]];
        self.bits[cy * usize::from(self.width) + cx] |= BIT[(x % 2) as usize][(y % 4) as usize];
    }

    /// Sets the dots of a straight line from (`x0`, `y0`) to (`x1`, `y1`), both ends included.
    pub fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64)) {
        let n = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
        for k in 0..=n {
            let x = x0 + (x1 - x0) * k / n;
            let y = y0 + ((y1 - y0) as f64 * k as f64 / n as f64).round() as i64;
            self.set(x, y);
        }
    }

    /// The braille glyph of cell (`col`, `row`), `None` when it has no dot.
    pub fn glyph(&self, col: u16, row: u16) -> Option<char> {
        let bits = *self
            .bits
            .get(usize::from(row) * usize::from(self.width) + usize::from(col))?;
        (bits != 0).then(|| char::from_u32(0x2800 + u32::from(bits)).unwrap_or(' '))
    }
}

/// Draws a line through `points` (column of a candle's centre within `area`, value) where
/// `to_dot_y` maps a value to a dot row from the top (`None`: off the scale, not drawn), in
/// `colour`, into the cells of `area` that hold nothing or only other braille dots.
pub fn draw_line(
    points: &[(u16, Option<f64>)],
    to_dot_y: impl Fn(f64) -> Option<i64>,
    colour: Color,
    area: Rect,
    buf: &mut Buffer,
) {
    let mut dots = Dots::new(area.width, area.height);
    let at = |(col, value): (u16, Option<f64>)| Some((i64::from(col) * 2, to_dot_y(value?)?));
    let mut previous = None;
    for point in points {
        let here = at(*point);
        match (previous, here) {
            (Some(a), Some(b)) => dots.line(a, b),
            (None, Some(b)) => dots.set(b.0, b.1),
            _ => {}
        }
        previous = here;
    }
    for row in 0..area.height {
        for col in 0..area.width {
            let Some(mine) = dots.glyph(col, row) else {
                continue;
            };
            let cell = &mut buf[(area.x + col, area.y + row)];
            let old = cell.symbol().chars().next().unwrap_or(' ');
            let merged = match old {
                ' ' => mine,
                '\u{2800}'..='\u{28ff}' => {
                    char::from_u32(u32::from(old) | u32::from(mine)).unwrap_or(mine)
                }
                _ => continue,
            };
            cell.set_char(merged).set_fg(colour);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candles_core::{Interval, Micros, Pair, Source};

    fn candle(close: i64, volume: i64, quote: i64) -> Candle {
        let mut c = Candle::flat(
            Pair::defaults()[0],
            Source::Composite,
            Interval::seconds(5),
            Micros(0),
            Decimal::from(close),
        );
        c.volume = Decimal::from(volume);
        c.quote_volume = Decimal::from(quote);
        c
    }

    #[test]
    fn vwap_is_cumulative_quote_over_base_volume() {
        let cs = [candle(10, 0, 0), candle(10, 2, 20), candle(13, 1, 13)];
        let refs: Vec<&Candle> = cs.iter().collect();
        assert_eq!(vwap_line(&refs), [None, Some(10.0), Some(11.0)]);
    }

    #[test]
    fn moving_average_starts_after_a_full_period() {
        let cs: Vec<Candle> = [1, 2, 3, 4, 5]
            .into_iter()
            .map(|c| candle(c, 1, c))
            .collect();
        let refs: Vec<&Candle> = cs.iter().collect();
        assert_eq!(
            moving_average(&refs, 3),
            [None, None, Some(2.0), Some(3.0), Some(4.0)]
        );
        assert_eq!(moving_average(&refs, 1)[4], Some(5.0));
    }

    #[test]
    fn periods_step_through_the_list_and_stop_at_the_ends() {
        assert_eq!(next_period(20, 1), 50);
        assert_eq!(next_period(20, -1), 10);
        assert_eq!(next_period(7, 1), 10);
        assert_eq!(next_period(7, -1), 5);
        assert_eq!(next_period(200, 1), 200);
        assert_eq!(next_period(5, -1), 5);
    }

    #[test]
    fn a_line_is_braille_dots_and_passes_behind_the_candles() {
        let mut dots = Dots::new(2, 1);
        dots.line((0, 0), (3, 3));
        assert_eq!(dots.glyph(0, 0), Some('⠑'));
        assert_eq!(dots.glyph(1, 0), Some('⢄'));
        let area = Rect::new(0, 0, 3, 1);
        let mut buf = Buffer::empty(area);
        buf[(1, 0)].set_symbol("┃");
        draw_line(
            &[(0, Some(1.0)), (1, Some(1.0)), (2, Some(1.0))],
            |_| Some(1),
            Color::Yellow,
            area,
            &mut buf,
        );
        assert_eq!(buf[(0, 0)].symbol(), "⠒");
        assert_eq!(buf[(1, 0)].symbol(), "┃", "the candle stays");
        assert_eq!(buf[(2, 0)].fg, Color::Yellow);
    }
}
