//! Our own candlestick widget: bodies and wicks at half-cell vertical resolution, volume bars,
//! a fixed-width price axis and a time axis.
//!
//! Each candle is one column. Each cell row has a top and a bottom half; for each half we decide
//! whether it holds body, wick or nothing, and pick the glyph from [`glyph`]:
//!
//! | top \ bottom | nothing | wick | body |
//! |---|---|---|---|
//! | nothing | ` ` | `╷` | `╻` |
//! | wick    | `╵` | `│` | `╽` |
//! | body    | `╹` | `╿` | `┃` |
//!
//! Up candles (close ≥ open) are green, down candles red. Prices are exact decimals converted to
//! `f64` here, for drawing only.

use crate::labels::{label_every, short_volume, time_label};
use crate::scale::{Scale, format_price, nice_step, ticks};
use candles_core::{Candle, Decimal, Micros};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::bar::NINE_LEVELS;
use ratatui::widgets::Widget;
use rust_decimal::prelude::ToPrimitive;

/// Colour of up candles (close ≥ open).
pub const UP: Color = Color::Green;
/// Colour of down candles (close < open).
pub const DOWN: Color = Color::Red;
/// Colour of axes and labels.
pub const AXIS: Color = Color::DarkGray;

/// What one half of a cell holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    /// Empty.
    Nothing,
    /// The thin line from high to low.
    Wick,
    /// The thick part between open and close.
    Body,
}

/// The glyph for a cell whose top half holds `top` and bottom half `bottom`.
pub fn glyph(top: Half, bottom: Half) -> &'static str {
    use Half::*;
    match (top, bottom) {
        (Nothing, Nothing) => " ",
        (Nothing, Wick) => "╷",
        (Nothing, Body) => "╻",
        (Wick, Nothing) => "╵",
        (Wick, Wick) => "│",
        (Wick, Body) => "╽",
        (Body, Nothing) => "╹",
        (Body, Wick) => "╿",
        (Body, Body) => "┃",
    }
}

/// A decimal as `f64`, for drawing (NaN if it does not fit, which the scale guards against).
pub fn to_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// Whether a candle is drawn as up (green).
pub fn is_up(c: &Candle) -> bool {
    c.close >= c.open
}

/// The half-cell units (from the bottom) covered by a candle's body and wick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CandleUnits {
    /// Lowest and highest body unit (inclusive).
    pub body: (u32, u32),
    /// Lowest and highest wick unit (inclusive).
    pub wick: (u32, u32),
}

impl CandleUnits {
    /// Maps a candle's prices onto `scale`.
    pub fn of(c: &Candle, scale: &Scale) -> CandleUnits {
        let o = scale.price_to_unit(to_f64(c.open));
        let cl = scale.price_to_unit(to_f64(c.close));
        let h = scale.price_to_unit(to_f64(c.high));
        let l = scale.price_to_unit(to_f64(c.low));
        CandleUnits {
            body: (o.min(cl), o.max(cl)),
            wick: (l.min(h), l.max(h)),
        }
    }

    /// What unit `u` holds.
    pub fn half(&self, u: u32) -> Half {
        if (self.body.0..=self.body.1).contains(&u) {
            Half::Body
        } else if (self.wick.0..=self.wick.1).contains(&u) {
            Half::Wick
        } else {
            Half::Nothing
        }
    }

    /// The glyph for cell row `row` (from the top) of a chart with `rows` rows.
    pub fn glyph_at(&self, row: u16, rows: u16) -> &'static str {
        let from_bottom = u32::from(rows.saturating_sub(1).saturating_sub(row));
        glyph(self.half(from_bottom * 2 + 1), self.half(from_bottom * 2))
    }
}

/// How many candles fit in `width` columns at `step` columns per candle.
pub fn capacity(width: u16, step: u16) -> usize {
    usize::from(width / step.max(1))
}

/// The price scale for a set of candles: their lowest low to their highest high.
pub fn scale_for(candles: &[&Candle], rows: u16) -> Scale {
    let lo = candles
        .iter()
        .map(|c| to_f64(c.low))
        .fold(f64::INFINITY, f64::min);
    let hi = candles
        .iter()
        .map(|c| to_f64(c.high))
        .fold(f64::NEG_INFINITY, f64::max);
    Scale::new(lo, hi, rows)
}

/// The chart of one pair: candles, price axis on the right, volume bars and time axis below.
///
/// The newest candle is drawn against the price axis; older ones extend to the left as far as
/// they fit. A candle is `step - 1` columns wide (one column at steps 1 and 2), with a gap of
/// one column; its wick runs in its middle column.
#[derive(Clone, Debug)]
pub struct CandleChart<'a> {
    /// Candles, oldest first (more than fit is fine: the newest are drawn).
    pub candles: &'a [&'a Candle],
    /// Columns per candle, gap included.
    pub step: u16,
    /// Rows of volume bars (0 for none).
    pub volume_rows: u16,
    /// Decimals of the pair's prices (see [`price_decimals`]): labels and the tag use them.
    pub decimals: u32,
    /// The unit of volume (the pair's base asset), shown by the volume scale.
    pub unit: String,
    /// The window start of the candle under the inspect cursor: its columns are highlighted.
    pub cursor: Option<Micros>,
    /// Lines over the candles ([`crate::overlay`]): one value per candle of `candles`, and
    /// the line's colour.
    pub overlays: &'a [(Vec<Option<f64>>, Color)],
}

/// Background of the candle under the inspect cursor.
pub const CURSOR: Color = Color::DarkGray;

/// Where things go in a chart's area: computed once, used by the chart and the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Rows of candles.
    pub rows: u16,
    /// Rows of volume bars.
    pub volume_rows: u16,
    /// Width of the price labels.
    pub label_w: usize,
    /// Columns left of the price axis.
    pub plot_w: u16,
    /// How many candles (the newest) are drawn.
    pub shown: usize,
}

/// The decimals prices are written with: the most any open, high, low or close of `candles`
/// carries (trailing zeros aside), at most 8.
pub fn price_decimals(candles: &[&Candle]) -> u32 {
    candles
        .iter()
        .flat_map(|c| [c.open, c.high, c.low, c.close])
        .map(|d| d.normalize().scale())
        .max()
        .unwrap_or(2)
        .min(8)
}

/// A price at `decimals` places: `2921.04`, `97000.10`.
pub fn price(d: Decimal, decimals: u32) -> String {
    let d = d.round_dp(decimals);
    format!("{d:.prec$}", prec = decimals as usize)
}

/// Whether the candles rose over their span (last close ≥ first open): the one rule for the
/// colour of the last price, its tag on the axis and the change.
pub fn rises(candles: &[&Candle]) -> bool {
    match (candles.first(), candles.last()) {
        (Some(first), Some(last)) => last.close >= first.open,
        _ => true,
    }
}

/// Labels are at most this wide; decimals are dropped before a label grows wider.
const MAX_LABEL: usize = 12;

/// The scale, label decimals and label width for `candles` on `rows` rows at `decimals`.
fn axis(candles: &[&Candle], rows: u16, decimals: u32) -> (Scale, usize, usize) {
    let scale = scale_for(candles, rows);
    let len = |d: usize| {
        [scale.min, scale.max]
            .iter()
            .map(|p| format!("{p:.d$}").len())
            .max()
            .unwrap_or(8)
    };
    let mut d = decimals as usize;
    while d > 0 && len(d) > MAX_LABEL {
        d -= 1;
    }
    (scale, d, len(d).clamp(6, MAX_LABEL))
}

impl CandleChart<'_> {
    /// The layout of this chart in `area`; `None` when nothing can be drawn.
    pub fn plan(&self, area: Rect) -> Option<Plan> {
        if area.width < 8 || area.height < 3 || self.candles.is_empty() {
            return None;
        }
        let step = self.step.max(1);
        let volume_rows = if area.height >= self.volume_rows + 4 {
            self.volume_rows
        } else {
            0
        };
        let rows = area.height - 1 - volume_rows;
        // The axis width depends on the candles shown, which depend on the width left: guess
        // with a typical axis, then settle.
        let guess = capacity(area.width.saturating_sub(10), step).clamp(1, self.candles.len());
        let recent = &self.candles[self.candles.len() - guess..];
        let (_, _, label_w) = axis(recent, rows, self.decimals);
        let plot_w = area.width.saturating_sub(label_w as u16 + 1);
        let shown = capacity(plot_w, step).min(self.candles.len());
        (shown > 0).then_some(Plan {
            rows,
            volume_rows,
            label_w,
            plot_w,
            shown,
        })
    }
}

/// Where a shown candle sits on screen: its window start, first column, width and the middle
/// column (where its wick runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The candle's window start.
    pub start: Micros,
    /// Its first column.
    pub left: u16,
    /// Its width in columns.
    pub width: u16,
    /// Its middle column.
    pub middle: u16,
}

impl CandleChart<'_> {
    /// Where each shown candle sits when the chart is drawn into `area`, oldest first (for
    /// panes aligned with the candles, and mouse clicks).
    pub fn placed(&self, area: Rect) -> Vec<Placed> {
        let Some(plan) = self.plan(area) else {
            return Vec::new();
        };
        let first = self.candles.len() - plan.shown;
        (0..plan.shown)
            .map(|i| {
                let cols = Columns::of(area, &plan, self.step.max(1), i);
                Placed {
                    start: self.candles[first + i].start,
                    left: cols.left,
                    width: cols.width,
                    middle: cols.middle(),
                }
            })
            .collect()
    }
}

/// Where candle `i` of `n` shown sits: its first column and its width.
#[derive(Clone, Copy, Debug)]
struct Columns {
    left: u16,
    width: u16,
}

impl Columns {
    fn of(area: Rect, plan: &Plan, step: u16, i: usize) -> Columns {
        Columns {
            left: area.x + plan.plot_w - step * (plan.shown - i) as u16,
            width: step.saturating_sub(1).max(1),
        }
    }

    /// The middle column, where the wick runs.
    fn middle(self) -> u16 {
        self.left + (self.width - 1) / 2
    }
}

/// The glyph for a cell of a candle wider than one column: blocks for the body, the thin
/// glyph in the middle column where the wick is.
fn wide_glyph(top: Half, bottom: Half, middle: bool) -> &'static str {
    let has_wick = top == Half::Wick || bottom == Half::Wick;
    if middle && has_wick {
        return glyph(top, bottom);
    }
    match (top == Half::Body, bottom == Half::Body) {
        (true, true) => "█",
        (true, false) => "▀",
        (false, true) => "▄",
        (false, false) => " ",
    }
}

impl Widget for CandleChart<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let Some(plan) = self.plan(area) else {
            return;
        };
        let shown = &self.candles[self.candles.len() - plan.shown..];
        let (scale, decimals, _) = axis(shown, plan.rows, self.decimals);
        self.draw_candles(shown, &scale, &plan, area, buf);
        self.draw_overlays(&scale, &plan, area, buf);
        draw_price_axis(shown, &scale, decimals, &plan, area, buf);
        self.draw_volume(shown, &plan, area, buf);
        self.draw_time_axis(shown, &plan, area, buf);
    }
}

impl CandleChart<'_> {
    /// The overlay lines through the shown candles' middle columns, behind the candles;
    /// values off the price scale are not drawn.
    fn draw_overlays(&self, scale: &Scale, plan: &Plan, area: Rect, buf: &mut Buffer) {
        let dot_rows = f64::from(plan.rows) * 4.0 - 1.0;
        let span = scale.max - scale.min;
        let to_dot_y = |v: f64| {
            let off = span * 1e-9;
            if !v.is_finite() || v < scale.min - off || v > scale.max + off {
                return None;
            }
            let from_top = if span > 0.0 {
                (scale.max - v) / span
            } else {
                0.5
            };
            Some((from_top * dot_rows).round() as i64)
        };
        let first = self.candles.len() - plan.shown;
        let plot = Rect {
            width: plan.plot_w,
            height: plan.rows,
            ..area
        };
        for (values, colour) in self.overlays {
            let points: Vec<(u16, Option<f64>)> = (0..plan.shown)
                .map(|i| {
                    let x = Columns::of(area, plan, self.step.max(1), i).middle() - area.x;
                    (x, values.get(first + i).copied().flatten())
                })
                .collect();
            crate::overlay::draw_line(&points, to_dot_y, *colour, plot, buf);
        }
    }

    fn draw_candles(
        &self,
        shown: &[&Candle],
        scale: &Scale,
        plan: &Plan,
        area: Rect,
        buf: &mut Buffer,
    ) {
        let step = self.step.max(1);
        for (i, c) in shown.iter().enumerate() {
            let units = CandleUnits::of(c, scale);
            let mut style = Style::default().fg(if is_up(c) { UP } else { DOWN });
            if !c.is_final {
                style = style.add_modifier(Modifier::BOLD);
            }
            if c.partial {
                // Its trades are known to be incomplete: drawn dim.
                style = style.add_modifier(Modifier::DIM);
            }
            let cols = Columns::of(area, plan, step, i);
            if self.cursor == Some(c.start) {
                for y in area.y..area.y + plan.rows + plan.volume_rows {
                    for x in cols.left..cols.left + cols.width {
                        buf[(x, y)].set_bg(CURSOR);
                    }
                }
            }
            for row in 0..plan.rows {
                let from_bottom = u32::from(plan.rows - 1 - row);
                let (top, bottom) = (units.half(from_bottom * 2 + 1), units.half(from_bottom * 2));
                for x in cols.left..cols.left + cols.width {
                    let g = if cols.width == 1 {
                        units.glyph_at(row, plan.rows)
                    } else {
                        wide_glyph(top, bottom, x == cols.middle())
                    };
                    if g != " " {
                        buf[(x, area.y + row)].set_symbol(g).set_style(style);
                    }
                }
            }
        }
    }

    /// Volume bars (eighths of a cell) scaled to the largest visible volume; its value and the
    /// unit (the base asset) beside them.
    fn draw_volume(&self, shown: &[&Candle], plan: &Plan, area: Rect, buf: &mut Buffer) {
        let volume_rows = plan.volume_rows;
        if volume_rows == 0 {
            return;
        }
        let step = self.step.max(1);
        let top = area.y + plan.rows;
        let axis_x = area.x + plan.plot_w;
        let max = shown.iter().map(|c| to_f64(c.volume)).fold(0.0, f64::max);
        for (i, c) in shown.iter().enumerate() {
            let v = to_f64(c.volume);
            let eighths = if max > 0.0 && v > 0.0 {
                ((v / max * f64::from(volume_rows) * 8.0).round() as u32).max(1)
            } else {
                0
            };
            let style = Style::default()
                .fg(if is_up(c) { UP } else { DOWN })
                .add_modifier(Modifier::DIM);
            let cols = Columns::of(area, plan, step, i);
            for r in 0..volume_rows {
                let Some(sym) = eighth_bar(eighths.saturating_sub(u32::from(r) * 8).min(8)) else {
                    continue;
                };
                for x in cols.left..cols.left + cols.width {
                    buf[(x, top + volume_rows - 1 - r)]
                        .set_symbol(sym)
                        .set_style(style);
                }
            }
        }
        let axis_style = Style::default().fg(AXIS);
        for r in 0..volume_rows {
            buf[(axis_x, top + r)].set_symbol("│").set_style(axis_style);
        }
        let w = plan.label_w;
        let short = short_volume(max);
        let both = format!("{short} {}", self.unit);
        let labels = if volume_rows >= 2 || both.len() > w {
            vec![short, self.unit.clone()]
        } else {
            vec![both]
        };
        for (r, text) in labels
            .into_iter()
            .take(usize::from(volume_rows))
            .enumerate()
        {
            let text: String = text.chars().take(w).collect();
            buf.set_string(
                axis_x + 1,
                top + r as u16,
                format!("{text:>w$}"),
                axis_style,
            );
        }
    }

    /// Time axis: labels at window starts that are multiples of k intervals, so they stay put
    /// as new candles arrive.
    fn draw_time_axis(&self, shown: &[&Candle], plan: &Plan, area: Rect, buf: &mut Buffer) {
        let step = self.step.max(1);
        let n = shown.len();
        let y = area.y + area.height - 1;
        let axis_x = area.x + plan.plot_w;
        let axis_style = Style::default().fg(AXIS);
        let interval = shown[n - 1].interval;
        let label_len = time_label(shown[n - 1].start, interval).len() as u16;
        let every = label_every(interval, i64::from((label_len + 2).div_ceil(step).max(1)));
        let mut next_free = area.x;
        for (i, c) in shown.iter().enumerate() {
            let idx = c.start.0.div_euclid(interval.micros());
            if idx.rem_euclid(every) != 0 {
                continue;
            }
            let x = Columns::of(area, plan, step, i).middle();
            let start = x.saturating_sub(label_len / 2);
            if start < next_free || start + label_len > axis_x {
                continue;
            }
            buf.set_string(start, y, time_label(c.start, interval), axis_style);
            next_free = start + label_len + 1;
        }
        buf.set_string(
            axis_x,
            y,
            format!("{:>w$}", "UTC", w = plan.label_w + 1),
            axis_style,
        );
    }
}

/// The bar glyph for `level` eighths of a cell (`None` for 0).
pub(crate) fn eighth_bar(level: u32) -> Option<&'static str> {
    Some(match level {
        0 => return None,
        1 => NINE_LEVELS.one_eighth,
        2 => NINE_LEVELS.one_quarter,
        3 => NINE_LEVELS.three_eighths,
        4 => NINE_LEVELS.half,
        5 => NINE_LEVELS.five_eighths,
        6 => NINE_LEVELS.three_quarters,
        7 => NINE_LEVELS.seven_eighths,
        _ => NINE_LEVELS.full,
    })
}

/// The price axis: a tick and a label at each round price ([`nice_step`]), the last price
/// tagged in the colour of the change over the shown candles ([`rises`]).
fn draw_price_axis(
    shown: &[&Candle],
    scale: &Scale,
    decimals: usize,
    plan: &Plan,
    area: Rect,
    buf: &mut Buffer,
) {
    let axis_x = area.x + plan.plot_w;
    let axis_style = Style::default().fg(AXIS);
    for row in 0..plan.rows {
        buf[(axis_x, area.y + row)]
            .set_symbol("│")
            .set_style(axis_style);
    }
    let gap = (plan.rows / 6).max(2);
    let step = nice_step(
        (scale.max - scale.min) / f64::from(plan.rows / gap).max(1.0),
        decimals,
    );
    let mut last_row = None;
    for tick in ticks(scale.min, scale.max, step) {
        let row = scale.price_to_row(tick);
        if last_row.is_some_and(|r: u16| r.abs_diff(row) < 2) {
            continue;
        }
        last_row = Some(row);
        let y = area.y + row;
        buf[(axis_x, y)].set_symbol("┤").set_style(axis_style);
        buf.set_string(
            axis_x + 1,
            y,
            format_price(tick, decimals, plan.label_w),
            axis_style,
        );
    }
    if let Some(last) = shown.last() {
        let row = scale.price_to_row(to_f64(last.close));
        let colour = if rises(shown) { UP } else { DOWN };
        let text = format_price(to_f64(last.close), decimals, plan.label_w);
        let style = Style::default().fg(Color::Black).bg(colour);
        buf[(axis_x, area.y + row)]
            .set_symbol("◀")
            .set_style(Style::default().fg(colour));
        buf.set_string(axis_x + 1, area.y + row, text, style);
    }
}

#[cfg(test)]
mod tests;
