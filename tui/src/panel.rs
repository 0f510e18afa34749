//! One pair's panel: a bordered box titled with the pair, source, interval, how many of its
//! candles are partial (`◌ 1 partial`: drawn dim, their trades known to be incomplete) and
//! state; a header
//! (last price, change over the visible candles, their high, low and trades, `● forming`); the
//! chart ([`crate::chart`]). Prices are shown at the pair's own precision everywhere (header,
//! axis, last-price tag), and the last price, its tag and the change share one colour. In
//! inspect mode the selected panel's header is the readout of the candle under the cursor
//! ([`crate::inspect`]) and, for a verified 1-minute candle, its verdict; the chart marks it. The bottom border holds the overlays' legend
//! on the left and the verification badge ([`crate::badge`]) on the right.

use crate::app::App;
use crate::badge::{badge, verdict_line};
use crate::chart::{CandleChart, DOWN, UP, price, price_decimals, rises};
use crate::inspect::readout;
use crate::labels::state_label;
use crate::overlay::{MA_COLOUR, Overlays, VWAP_COLOUR, moving_average, vwap_line};
use crate::venues;
use candles_core::{Candle, Decimal, Micros, Pair, Source};
use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph, Widget};

/// Draws `pair`'s panel (its place `index` in the tabs) into `area`.
pub fn panel(app: &App, index: usize, pair: Pair, area: Rect, buf: &mut Buffer) {
    let block = frame(app, index, pair);
    let inner = block.inner(area);
    let candles: Vec<&Candle> = app
        .series_for(pair)
        .map(|s| s.candles.values().collect())
        .unwrap_or_default();
    if inner.height == 0 || inner.width == 0 || candles.is_empty() {
        with_badge(block, app, pair, area.width, 0).render(area, buf);
        if !inner.is_empty() {
            waiting(app, pair, inner, buf);
        }
        return;
    }
    let decimals = price_decimals(&candles);
    // Inspecting this pair: the readout of the candle under the cursor replaces the header.
    let inspected = inspected_in(app, index);
    let lines = inspected.map(|c| inspect_lines(app, c, decimals));
    let head_rows = lines.as_ref().map_or(1, Vec::len) as u16;
    let overlays = overlay_lines(app.overlays, &candles);
    let (head, chart_area, pane_area, mut chart) = layout(app, index, &candles, inner, head_rows);
    chart.overlays = &overlays;
    let newest = chart.candles.len() - 1;
    let legend = legend(app.overlays, &overlays, newest, decimals);
    let used = legend.width();
    with_badge(block.title_bottom(legend), app, pair, area.width, used).render(area, buf);
    match lines {
        Some(lines) => Paragraph::new(lines).render(head, buf),
        None => {
            // The header summarises what the chart shows: the candles that fit.
            let shown = chart.plan(chart_area).map_or(1, |p| p.shown);
            header(
                &chart.candles[chart.candles.len().saturating_sub(shown)..],
                decimals,
                head,
                buf,
            );
        }
    }
    let placed = chart.placed(chart_area);
    chart.render(chart_area, buf);
    if let Some(pane_area) = pane_area {
        venues::pane(app.view(), pair, &placed, pane_area, buf);
    }
}

/// `block` with the verification badge ([`crate::badge`]) right-aligned on its bottom border,
/// in the room a border `width` wide leaves beside `used` columns of legend.
fn with_badge(
    block: Block<'static>,
    app: &App,
    pair: Pair,
    width: u16,
    used: usize,
) -> Block<'static> {
    let room = usize::from(width).saturating_sub(used + 3);
    match badge(app, pair, room) {
        Some(line) => block.title_bottom(line.right_aligned()),
        None => block,
    }
}

/// The inspect readout of `c` ([`crate::inspect`]), and the verdict on it when it is an
/// exchange's verified 1-minute candle ([`crate::badge::verdict_line`]).
fn inspect_lines(app: &App, c: &Candle, decimals: u32) -> Vec<Line<'static>> {
    let mut lines = readout(c, decimals);
    if let Source::Exchange(e) = c.source
        && let Some(v) = app
            .verified
            .get(&(c.pair, e))
            .and_then(|kept| kept.recent.get(&c.start))
            .filter(|v| v.interval == c.interval)
    {
        lines.push(verdict_line(v));
    }
    lines
}

/// The candle under the inspect cursor when `index` is the selected panel in inspect mode.
fn inspected_in(app: &App, index: usize) -> Option<&Candle> {
    app.inspect
        .and(app.inspected())
        .filter(|_| index == app.selected)
}

/// Where a panel's parts go inside its border (`inner`): the header (`head_rows` high), the
/// chart and the venue pane; and the chart (no overlays yet), scrolled back so the inspect
/// cursor is in view.
fn layout<'a>(
    app: &App,
    index: usize,
    candles: &'a [&'a Candle],
    inner: Rect,
    head_rows: u16,
) -> (Rect, Rect, Option<Rect>, CandleChart<'a>) {
    let [head, body] =
        Layout::vertical([Constraint::Length(head_rows), Constraint::Min(0)]).areas(inner);
    let (chart_area, pane_area) = split_venues(app, index, body);
    let mut chart = CandleChart {
        candles,
        step: app.step,
        volume_rows: volume_rows(chart_area.height),
        decimals: price_decimals(candles),
        unit: candles
            .first()
            .map_or(String::new(), |c| c.pair.base.to_string()),
        cursor: inspected_in(app, index).map(|c| c.start),
        overlays: &[],
    };
    // A cursor left of what fits scrolls the chart back, the cursor in the middle.
    if let (Some(cursor), Some(plan)) = (chart.cursor, chart.plan(chart_area)) {
        let at = candles.iter().position(|c| c.start == cursor).unwrap_or(0);
        chart.candles = &candles[..scroll_end(at, plan.shown, candles.len())];
    }
    (head, chart_area, pane_area, chart)
}

/// The window start of the candle drawn at (`x`, `y`) in `pair`'s panel (place `index`) drawn
/// into `area`, if a candle's columns (or the gap after it) are there.
pub fn candle_at(
    app: &App,
    index: usize,
    pair: Pair,
    area: Rect,
    x: u16,
    y: u16,
) -> Option<Micros> {
    let inner = Block::default().borders(Borders::ALL).inner(area);
    let candles: Vec<&Candle> = app.series_for(pair)?.candles.values().collect();
    let head_rows = inspected_in(app, index).map_or(1, |c| inspect_lines(app, c, 0).len()) as u16;
    let (_, chart_area, _, chart) = layout(app, index, &candles, inner, head_rows);
    if !(chart_area.top()..chart_area.bottom()).contains(&y) {
        return None;
    }
    chart
        .placed(chart_area)
        .into_iter()
        .find(|p| (p.left..=p.left + p.width).contains(&x))
        .map(|p| p.start)
}

/// Rows of volume bars under a chart `height` rows high.
fn volume_rows(height: u16) -> u16 {
    match height {
        h if h >= 20 => 4,
        h if h >= 12 => 3,
        h if h >= 8 => 2,
        h if h >= 6 => 1,
        _ => 0,
    }
}

/// The chart's area and, when the venue pane is on for this (the selected) panel and there is
/// room for both, the pane's area below it.
fn split_venues(app: &App, index: usize, body: Rect) -> (Rect, Option<Rect>) {
    let rows = venues::height();
    if !app.venues || index != app.selected || body.height < rows + 6 {
        return (body, None);
    }
    let [chart, pane] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(rows)]).areas(body);
    (chart, Some(pane))
}

/// The overlay lines that are on, over all of `candles` (so the first visible ones have a
/// moving average too), with their colours.
fn overlay_lines(on: Overlays, candles: &[&Candle]) -> Vec<(Vec<Option<f64>>, Color)> {
    let mut lines = Vec::new();
    if on.vwap {
        lines.push((vwap_line(candles), VWAP_COLOUR));
    }
    if on.ma {
        lines.push((moving_average(candles, on.ma_period), MA_COLOUR));
    }
    lines
}

/// The legend on the panel's bottom border: each overlay that is on, its value at candle
/// `at`, in its colour (`VWAP 2921.20  MA20 2920.11`).
fn legend(
    on: Overlays,
    lines: &[(Vec<Option<f64>>, Color)],
    at: usize,
    decimals: u32,
) -> Line<'static> {
    let names = [
        on.vwap.then(|| "VWAP".to_string()),
        on.ma.then(|| format!("MA{}", on.ma_period)),
    ];
    let mut spans = Vec::new();
    for (name, (values, colour)) in names.into_iter().flatten().zip(lines) {
        let value = values
            .get(at)
            .copied()
            .flatten()
            .map_or("-".to_string(), |v| {
                format!("{v:.prec$}", prec = decimals as usize)
            });
        spans.push(Span::styled(
            format!(" ⠒ {name} {value} "),
            Style::default().fg(*colour),
        ));
    }
    Line::from(spans)
}

/// How many of `len` candles to draw (the newest first) so candle `at` is on screen when
/// `shown` fit: all of them, or up to half a screen past `at` when `at` would be cut off.
pub fn scroll_end(at: usize, shown: usize, len: usize) -> usize {
    if at + shown >= len {
        len
    } else {
        (at + shown / 2 + 1).min(len)
    }
}

/// The panel's border and titles: number, pair, source, interval; the state on the right.
fn frame(app: &App, index: usize, pair: Pair) -> Block<'static> {
    let border = if index == app.selected {
        Style::default().fg(Color::Cyan)
    } else {
        Style::default().fg(Color::DarkGray)
    };
    let interval = app
        .series_for(pair)
        .and_then(|s| s.interval())
        .or(app.interval)
        .map(|i| format!(" · {i}"))
        .unwrap_or_default();
    let mut title = Line::from(vec![
        Span::styled(format!(" {} ", index + 1), border),
        Span::styled(
            pair.to_string(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(" · {}{interval} ", app.source)),
    ]);
    let partial = app
        .series_for(pair)
        .map_or(0, |s| s.candles.values().filter(|c| c.partial).count());
    if partial > 0 {
        title.push_span(Span::raw(format!("◌ {partial} partial ")).dark_gray());
    }
    let mut block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(border)
        .title(title);
    if let Some((state, since)) = app.state_for(pair) {
        let (mut text, colour) = state_label(state, since, app.now);
        if let Some(quiet) = app.quiet_for(pair) {
            text = format!("{text}: no trades for {}s", quiet / 1_000_000);
        }
        block = block.title(
            Line::from(vec![
                Span::raw(" "),
                Span::styled("● ", Style::default().fg(colour)),
                Span::raw(format!("{text} ")),
            ])
            .right_aligned(),
        );
    }
    block
}

/// The line shown before any candle: waiting, or the server has no candles for the pair.
fn waiting(app: &App, pair: Pair, inner: Rect, buf: &mut Buffer) {
    let msg = match &app.known {
        Some(known) if app.unknown_to_server(pair) => format!(
            "the server has no candles for {pair}; it has {}",
            known
                .iter()
                .map(Pair::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => format!("waiting for {pair} {} candles…", app.source),
    };
    let y = inner.y + inner.height / 2;
    Paragraph::new(msg)
        .alignment(Alignment::Center)
        .fg(Color::DarkGray)
        .render(
            Rect {
                y,
                height: 1,
                ..inner
            },
            buf,
        );
}

fn header(candles: &[&Candle], decimals: u32, area: Rect, buf: &mut Buffer) {
    let (Some(first), Some(last)) = (candles.first(), candles.last()) else {
        return;
    };
    let change = last.close - first.open;
    let pct = if first.open.is_zero() {
        Decimal::ZERO
    } else {
        (change / first.open * Decimal::ONE_HUNDRED).round_dp(2)
    };
    let up = rises(candles);
    let colour = if up { UP } else { DOWN };
    let (arrow, sign) = if up { ("▲", "+") } else { ("▼", "") };
    let high = candles.iter().map(|c| c.high).max().unwrap_or_default();
    let low = candles.iter().map(|c| c.low).min().unwrap_or_default();
    let trades: u64 = candles.iter().map(|c| c.trades).sum();
    let mut spans = vec![
        Span::styled(
            price(last.close, decimals),
            Style::default().fg(colour).add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            format!(
                "  {arrow} {sign}{} ({sign}{pct:.2}%)",
                price(change, decimals)
            ),
            Style::default().fg(colour),
        ),
        Span::raw("  H ").dark_gray(),
        Span::raw(price(high, decimals)),
        Span::raw("  L ").dark_gray(),
        Span::raw(price(low, decimals)),
        Span::raw("  trades ").dark_gray(),
        Span::raw(trades.to_string()),
    ];
    if !last.is_final {
        spans.push(Span::styled(
            "  ● forming",
            Style::default().fg(Color::Cyan),
        ));
    }
    Line::from(spans).render(area, buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_out_of_view_scrolls_the_chart_back() {
        assert_eq!(
            scroll_end(95, 10, 100),
            100,
            "in view: the newest are drawn"
        );
        assert_eq!(scroll_end(90, 10, 100), 100);
        assert_eq!(
            scroll_end(50, 10, 100),
            56,
            "candles 46..56: the cursor in the middle"
        );
        assert_eq!(scroll_end(0, 10, 100), 6);
    }
}
