//! Rendering: a pure function of [`App`] (`impl Widget for &App`). Nothing here touches a
//! terminal, so tests render into ratatui's `TestBackend` and look at the buffer.
//!
//! Screen: a title bar (origin, link states, source, pause), pair tabs, one panel per pair
//! (header with last price, change over the visible range, high/low, trades; the candle chart
//! with volume and axes), and a key-hint line. `?` draws the help overlay on top.

use crate::app::{App, Link, LinkState};
use crate::chart::{CandleChart, DOWN, UP};
use candles_core::{Candle, Decimal, Micros, Pair};
use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Widget, Wrap};

/// The smallest terminal the dashboard draws in; below it, it says so.
pub const MIN_WIDTH: u16 = 40;
/// See [`MIN_WIDTH`].
pub const MIN_HEIGHT: u16 = 12;
/// The smallest height of one pair's panel when several are shown.
pub const MIN_PANEL_HEIGHT: u16 = 9;

/// Draws the whole dashboard into a frame.
pub fn render(app: &App, frame: &mut ratatui::Frame) {
    frame.render_widget(app, frame.area());
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            too_small(area, buf);
            return;
        }
        let [title, tabs, body, hints] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(area);
        title_bar(self, title, buf);
        tab_bar(self, tabs, buf);
        panels(self, body, buf);
        hint_bar(self, hints, buf);
        if self.help {
            help_overlay(area, buf);
        }
    }
}

fn too_small(area: Rect, buf: &mut Buffer) {
    let text = vec![
        Line::from("Terminal too small"),
        Line::from(format!(
            "{}×{}, need {MIN_WIDTH}×{MIN_HEIGHT}",
            area.width, area.height
        )),
    ];
    let y = area.y + area.height.saturating_sub(2) / 2;
    let rect = Rect {
        x: area.x,
        y,
        width: area.width,
        height: area.height.min(2),
    };
    Paragraph::new(text)
        .alignment(Alignment::Center)
        .wrap(Wrap { trim: true })
        .render(rect, buf);
}

/// The text and colour of a link state at time `now` (a reconnect counts down).
pub fn state_label(state: LinkState, since: Micros, now: Micros) -> (String, Color) {
    match state {
        LinkState::Connecting => ("connecting".into(), Color::Yellow),
        LinkState::Live => ("live".into(), Color::Green),
        LinkState::Stale => ("stale".into(), Color::Yellow),
        LinkState::Reconnecting { in_ms, .. } => {
            let waited = now.0.saturating_sub(since.0).max(0) / 1_000;
            let left = (in_ms as i64).saturating_sub(waited);
            if left > 0 {
                (
                    format!("reconnecting in {}s", (left + 999) / 1_000),
                    Color::Red,
                )
            } else {
                ("reconnecting".into(), Color::Red)
            }
        }
        LinkState::Stopped => ("stopped".into(), Color::Red),
    }
}

fn title_bar(app: &App, area: Rect, buf: &mut Buffer) {
    let bar = Style::default().bg(Color::Blue).fg(Color::White);
    buf.set_style(area, bar);
    let mut spans = vec![
        Span::styled(" candles ", bar.add_modifier(Modifier::BOLD)),
        Span::styled(format!("│ {} ", app.origin), bar),
    ];
    for (link, (state, since)) in &app.links {
        let (text, colour) = state_label(*state, *since, app.now);
        let name = match link {
            Link::Server => String::new(),
            Link::Exchange(e) => format!("{e} "),
        };
        spans.push(Span::styled(format!("│ {name}"), bar));
        spans.push(Span::styled("● ", bar.fg(colour)));
        spans.push(Span::styled(format!("{text} "), bar));
    }
    spans.push(Span::styled(
        format!("│ source {} ", app.source),
        bar.add_modifier(Modifier::BOLD),
    ));
    if app.paused.is_some() {
        spans.push(Span::styled(
            " PAUSED ",
            Style::default()
                .bg(Color::Yellow)
                .fg(Color::Black)
                .add_modifier(Modifier::BOLD),
        ));
    }
    Line::from(spans).render(area, buf);
}

fn tab_bar(app: &App, area: Rect, buf: &mut Buffer) {
    let mut spans = Vec::new();
    for (i, pair) in app.pairs.iter().enumerate() {
        let text = format!(" {} {} ", i + 1, pair);
        if i == app.selected {
            spans.push(Span::styled(
                text,
                Style::default()
                    .bg(Color::Cyan)
                    .fg(Color::Black)
                    .add_modifier(Modifier::BOLD),
            ));
        } else {
            spans.push(Span::raw(text));
        }
        spans.push(Span::raw(" "));
    }
    if app.zoomed {
        spans.push(Span::styled("[zoom]", Style::default().fg(Color::Cyan)));
    }
    Line::from(spans).render(area, buf);
}

fn hint_bar(app: &App, area: Rect, buf: &mut Buffer) {
    let key = Style::default().fg(Color::Cyan);
    let mut spans = vec![];
    for (k, what) in [
        ("Tab/←→", "pair"),
        ("Enter", "zoom"),
        ("s", "source"),
        ("+/-", "width"),
        ("p", "pause"),
        ("?", "help"),
        ("q", "quit"),
    ] {
        spans.push(Span::styled(format!(" {k}"), key));
        spans.push(Span::raw(format!(" {what}")));
    }
    Line::from(spans).render(area, buf);
    if app.bad_data > 0 {
        let text = format!(" bad candles skipped: {} ", app.bad_data);
        let w = text.chars().count() as u16;
        if w < area.width {
            let x = area.x + area.width - w;
            buf.set_string(
                x,
                area.y,
                text,
                Style::default().fg(Color::Black).bg(Color::Yellow),
            );
        }
    }
}

/// The pairs whose panels are drawn in `height` rows: the selected one when zoomed, else as
/// many as fit around it.
pub fn visible_pairs(app: &App, height: u16) -> Vec<(usize, Pair)> {
    if app.pairs.is_empty() {
        return Vec::new();
    }
    if app.zoomed {
        return vec![(app.selected, app.pairs[app.selected])];
    }
    let fit = usize::from((height / MIN_PANEL_HEIGHT).max(1));
    let n = app.pairs.len();
    let count = fit.min(n);
    let first = app.selected.saturating_sub(count - 1).min(n - count);
    (first..first + count).map(|i| (i, app.pairs[i])).collect()
}

fn panels(app: &App, area: Rect, buf: &mut Buffer) {
    let shown = visible_pairs(app, area.height);
    if shown.is_empty() {
        return;
    }
    let constraints = vec![Constraint::Ratio(1, shown.len() as u32); shown.len()];
    let rects = Layout::vertical(constraints).split(area);
    for ((i, pair), rect) in shown.into_iter().zip(rects.iter()) {
        panel(app, i, pair, *rect, buf);
    }
}

fn panel(app: &App, index: usize, pair: Pair, area: Rect, buf: &mut Buffer) {
    let selected = index == app.selected;
    let border = if selected {
        Style::default().fg(Color::Cyan)
    } else {
        Style::default().fg(Color::DarkGray)
    };
    let series = app.series_for(pair);
    let interval = series
        .and_then(|s| s.interval())
        .map(|i| format!(" · {i}"))
        .unwrap_or_default();
    let title = Line::from(vec![
        Span::styled(format!(" {} ", index + 1), border),
        Span::styled(
            pair.to_string(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(" · {}{interval} ", app.source)),
    ]);
    let mut block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(border)
        .title(title);
    if let Some((state, since)) = app.state_for(pair) {
        let (text, colour) = state_label(state, since, app.now);
        block = block.title(
            Line::from(vec![
                Span::raw(" "),
                Span::styled("● ", Style::default().fg(colour)),
                Span::raw(format!("{text} ")),
            ])
            .right_aligned(),
        );
    }
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let candles: Vec<&Candle> = series
        .map(|s| s.candles.values().collect())
        .unwrap_or_default();
    if candles.is_empty() {
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
        return;
    }
    let [head, chart_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    let volume_rows = match chart_area.height {
        h if h >= 20 => 4,
        h if h >= 12 => 3,
        h if h >= 8 => 2,
        h if h >= 6 => 1,
        _ => 0,
    };
    let chart = CandleChart {
        candles: &candles,
        step: app.step,
        volume_rows,
    };
    // The header summarises what the chart shows: the candles that fit.
    let shown = chart.plan(chart_area).map_or(1, |p| p.shown);
    header(&candles[candles.len().saturating_sub(shown)..], head, buf);
    chart.render(chart_area, buf);
}

/// Decimal text without trailing zeros.
fn dec(d: Decimal) -> String {
    d.normalize().to_string()
}

fn header(candles: &[&Candle], area: Rect, buf: &mut Buffer) {
    let (Some(first), Some(last)) = (candles.first(), candles.last()) else {
        return;
    };
    let change = last.close - first.open;
    let pct = if first.open.is_zero() {
        Decimal::ZERO
    } else {
        (change / first.open * Decimal::ONE_HUNDRED).round_dp(2)
    };
    let colour = if change >= Decimal::ZERO { UP } else { DOWN };
    let arrow = if change >= Decimal::ZERO {
        "▲"
    } else {
        "▼"
    };
    let sign = if change >= Decimal::ZERO { "+" } else { "" };
    let high = candles.iter().map(|c| c.high).max().unwrap_or_default();
    let low = candles.iter().map(|c| c.low).min().unwrap_or_default();
    let trades: u64 = candles.iter().map(|c| c.trades).sum();
    let mut spans = vec![
        Span::styled(
            dec(last.close),
            Style::default().fg(colour).add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            format!("  {arrow} {sign}{} ({sign}{pct:.2}%)", dec(change)),
            Style::default().fg(colour),
        ),
        Span::raw("  H ").dark_gray(),
        Span::raw(dec(high)),
        Span::raw("  L ").dark_gray(),
        Span::raw(dec(low)),
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

fn help_overlay(area: Rect, buf: &mut Buffer) {
    let rows = [
        ("Tab / → / ←", "next / previous pair"),
        ("1-9", "select pair by number"),
        ("Enter / z", "zoom into the selected pair (others hidden)"),
        (
            "s / S",
            "next / previous source: composite → binance → kraken → coinbase",
        ),
        ("+ / -", "wider candles (fewer fit) / narrower (more fit)"),
        ("p", "pause / resume the view (data keeps arriving)"),
        ("?", "this help"),
        ("q / Esc / Ctrl-C", "quit"),
    ];
    let mut lines: Vec<Line> = rows
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:>16}  "), Style::default().fg(Color::Cyan)),
                Span::raw(*v),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(
        Line::from(" green: close ≥ open · red: close < open · bold: the forming candle")
            .dark_gray(),
    );
    lines.push(
        Line::from(" times are window starts in UTC; stale = no candle for 2 intervals")
            .dark_gray(),
    );
    let width = area.width.saturating_sub(4).min(90);
    let height = (lines.len() as u16 + 2).min(area.height.saturating_sub(2));
    let rect = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    Clear.render(rect, buf);
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Double)
                .title(" help — ? or Esc to close "),
        )
        .render(rect, buf);
}
