//! Rendering: a pure function of [`App`] (`impl Widget for &App`). Nothing here touches a
//! terminal, so tests render into ratatui's `TestBackend` and look at the buffer.
//!
//! Screen: a title bar (origin, link states, source, pause; shortened to fit, the source and
//! `PAUSED` always whole), pair tabs (naming pairs that did not fit), one panel per pair
//! ([`crate::panel`]), status lines while a link is down or a notice is fresh (the reason, what
//! to try, the log file), and a key-hint line. `?` draws the help overlay on top.

use crate::app::{App, Link, LinkState};
use crate::labels::{short_label, state_label};
use crate::panel::{candle_at as candle_at_in_panel, panel};
use crate::venues;
use candles_core::{Micros, Pair};
use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Layout, Position, Rect};
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
        let (reasons, rest) = status_lines(self);
        let [title, tabs, body, status_area, hints] = areas(area, &reasons, &rest);
        let shown = visible_pairs(self, body.height);
        title_bar(self, title, buf);
        tab_bar(self, &shown, tabs, buf);
        panels(self, &shown, body, buf);
        status_bar(reasons, rest, status_area, buf);
        hint_bar(self, hints, buf);
        if self.help {
            help_overlay(area, buf);
        }
    }
}

/// The screen's rows: title bar, tabs, panels, status lines (as many as `reasons` and `rest`
/// need, at most a sixth of the screen), key hints.
fn areas(area: Rect, reasons: &Option<Line>, rest: &[Line]) -> [Rect; 5] {
    let status_rows =
        (u16::from(reasons.is_some()) + wrapped_rows(rest, area.width)).min(area.height / 6);
    Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(status_rows),
        Constraint::Length(1),
    ])
    .areas(area)
}

/// The pair (its place in the tabs) and the window start of the candle drawn at (`x`, `y`)
/// when the dashboard is drawn into `area` (for mouse clicks).
pub fn candle_at(app: &App, area: Rect, x: u16, y: u16) -> Option<(usize, Micros)> {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT || app.help {
        return None;
    }
    let (reasons, rest) = status_lines(app);
    let [_, _, body, _, _] = areas(area, &reasons, &rest);
    let shown = visible_pairs(app, body.height);
    let rects = panel_rects(shown.len(), body);
    shown
        .iter()
        .zip(rects.iter())
        .find(|(_, rect)| rect.contains(Position { x, y }))
        .and_then(|((i, pair), rect)| Some((*i, candle_at_in_panel(app, *i, *pair, *rect, x, y)?)))
}

/// The panels' rectangles: `n` rows of equal height in `body`.
fn panel_rects(n: usize, body: Rect) -> std::rc::Rc<[Rect]> {
    let constraints = vec![Constraint::Ratio(1, n.max(1) as u32); n];
    Layout::vertical(constraints).split(body)
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

/// How much the title bar says: everything, shorter words, or the least that still informs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Detail {
    Full,
    Short,
    Tiny,
}

/// The origin in few characters: `127.0.0.1:8080`, `SIMULATED`, `embedded`.
fn short_origin(origin: &str) -> &str {
    if origin.contains("SIMULATED") {
        "SIMULATED"
    } else if origin.starts_with("embedded") {
        "embedded"
    } else {
        origin.split_once("://").map_or(origin, |(_, rest)| rest)
    }
}

/// The left part of the title bar (origin and links) at a level of detail.
fn title_left(app: &App, detail: Detail, bar: Style) -> Vec<Span<'static>> {
    let mut spans = match detail {
        Detail::Full => vec![
            Span::styled(" candles ", bar.add_modifier(Modifier::BOLD)),
            Span::styled(format!("│ {} ", app.origin), bar),
        ],
        _ => vec![Span::styled(
            format!(" {} ", short_origin(&app.origin)),
            bar.add_modifier(Modifier::BOLD),
        )],
    };
    for (link, (state, since)) in &app.links {
        let colour = state_label(*state, *since, app.now).1;
        let name = match (link, detail) {
            (Link::Server, _) => String::new(),
            (Link::Exchange(e), Detail::Tiny) => e.as_str()[..3].to_string(),
            (Link::Exchange(e), _) => format!("{e} "),
        };
        let separator = if detail == Detail::Full {
            "│ "
        } else {
            "│"
        };
        spans.push(Span::styled(format!("{separator}{name}"), bar));
        let text = match detail {
            Detail::Full => format!("● {} ", state_label(*state, *since, app.now).0),
            Detail::Short => format!("●{} ", short_label(*state, *since, app.now)),
            Detail::Tiny => "● ".into(),
        };
        spans.push(Span::styled(text, bar.fg(colour)));
    }
    spans
}

fn title_bar(app: &App, area: Rect, buf: &mut Buffer) {
    let bar = Style::default().bg(Color::Blue).fg(Color::White);
    buf.set_style(area, bar);
    let paused = app.paused.is_some().then(|| {
        Span::styled(
            " PAUSED ",
            Style::default()
                .bg(Color::Yellow)
                .fg(Color::Black)
                .add_modifier(Modifier::BOLD),
        )
    });
    let width = usize::from(area.width);
    let mut chosen = None;
    for detail in [Detail::Full, Detail::Short, Detail::Tiny] {
        let source = match detail {
            Detail::Full => format!("│ source {} ", app.source),
            _ => format!("│{} ", app.source),
        };
        let mut right = vec![Span::styled(source, bar.add_modifier(Modifier::BOLD))];
        right.extend(paused.clone());
        let left = title_left(app, detail, bar);
        let fits = Line::from(left.clone()).width() + Line::from(right.clone()).width() <= width;
        chosen = Some((left, right));
        if fits {
            break;
        }
    }
    let Some((left, right)) = chosen else {
        return;
    };
    // The right part (source, PAUSED) is never cut; the left gives way if it must.
    let right = Line::from(right);
    let right_w = (right.width() as u16).min(area.width);
    Line::from(left).render(
        Rect {
            width: area.width - right_w,
            ..area
        },
        buf,
    );
    right.render(
        Rect {
            x: area.x + area.width - right_w,
            width: right_w,
            ..area
        },
        buf,
    );
}

fn tab_bar(app: &App, shown: &[(usize, Pair)], area: Rect, buf: &mut Buffer) {
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
        } else if shown.iter().any(|(j, _)| *j == i) {
            spans.push(Span::raw(text));
        } else {
            spans.push(Span::styled(text, Style::default().fg(Color::DarkGray)));
        }
        spans.push(Span::raw(" "));
    }
    if app.inspect.is_some() {
        spans.push(Span::styled("[inspect]", Style::default().fg(Color::Cyan)));
    } else if app.zoomed {
        spans.push(Span::styled("[zoom]", Style::default().fg(Color::Cyan)));
    } else if shown.len() < app.pairs.len() {
        let hidden = app.pairs.len() - shown.len();
        spans.push(Span::styled(
            format!("+{hidden} not shown: Tab or its number"),
            Style::default().fg(Color::Yellow),
        ));
    } else if app.venues {
        spans.push(Span::styled("[venues]", Style::default().fg(Color::Cyan)));
    }
    Line::from(spans).render(area, buf);
}

/// The status lines: why the links that are down are down (one line, cut to fit; the whole
/// reasons are in the log and on stderr in line modes), then the log file and what to try, and
/// a fresh notice (these two wrapped). Empty when all is well.
pub fn status_lines(app: &App) -> (Option<Line<'static>>, Vec<Line<'static>>) {
    let any_down = app
        .links
        .values()
        .any(|(s, _)| matches!(s, LinkState::Reconnecting { .. } | LinkState::Stopped));
    let down: Vec<String> = app
        .problems
        .iter()
        .filter(|(link, _)| !matches!(app.links.get(link), Some((LinkState::Live, _))))
        .map(|(link, reason)| format!("{}: {reason}", link.name()))
        .collect();
    let refused = app
        .refused
        .iter()
        .map(|r| format!("{r} (< / > pick another)"));
    let down: Vec<String> = refused.chain(down).collect();
    let reasons =
        (!down.is_empty()).then(|| Line::from(format!(" ⚠ {}", down.join(" · "))).fg(Color::Red));
    let mut rest = Vec::new();
    if (reasons.is_some() || any_down)
        && let Some(hint) = &app.hint
    {
        rest.push(Line::from(format!(" {hint}")).fg(Color::Yellow));
    }
    if let Some(notice) = app.current_notice() {
        rest.push(Line::from(format!(" ℹ {notice}")).fg(Color::Cyan));
    }
    (reasons, rest)
}

/// Draws the status lines (see [`status_lines`]) into `area`.
fn status_bar(reasons: Option<Line>, rest: Vec<Line>, area: Rect, buf: &mut Buffer) {
    let mut area = area;
    if let Some(reasons) = reasons
        && area.height > 0
    {
        reasons.render(Rect { height: 1, ..area }, buf);
        area.y += 1;
        area.height -= 1;
    }
    Paragraph::new(rest)
        .wrap(Wrap { trim: false })
        .render(area, buf);
}

/// How many rows `lines` take when wrapped at `width` columns.
fn wrapped_rows(lines: &[Line], width: u16) -> u16 {
    let width = usize::from(width.max(1));
    lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(width) as u16)
        .sum()
}

/// The key hints: the essential ones always; the others, in this order, while they fit.
const HINTS: [(&str, &str, bool); 11] = [
    ("Tab/←→", "pair", true),
    ("Enter", "zoom", true),
    ("s", "source", true),
    ("+/-", "width", true),
    ("p", "pause", true),
    ("i", "inspect", true),
    ("v/m", "overlays", false),
    ("d", "venues", false),
    ("</>", "interval", false),
    ("?", "help", true),
    ("q", "quit", true),
];

fn hint_bar(app: &App, area: Rect, buf: &mut Buffer) {
    let key = Style::default().fg(Color::Cyan);
    let width = |(k, what, _): &(&str, &str, bool)| k.chars().count() + what.len() + 2;
    let essential: usize = HINTS.iter().filter(|h| h.2).map(width).sum();
    let mut room = usize::from(area.width).saturating_sub(essential);
    let shown: Vec<bool> = HINTS
        .iter()
        .map(|h| {
            let fits = h.2 || width(h) <= room;
            if !h.2 && fits {
                room -= width(h);
            }
            fits
        })
        .collect();
    let mut spans = vec![];
    for ((k, what, _), _) in HINTS.iter().zip(&shown).filter(|(_, s)| **s) {
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

/// The pairs whose panels are drawn in `height` rows: the selected one when zoomed or
/// inspecting, else as many as fit around it (taller panels with the venue pane on, so the
/// selected one has room for it).
pub fn visible_pairs(app: &App, height: u16) -> Vec<(usize, Pair)> {
    if app.pairs.is_empty() {
        return Vec::new();
    }
    if app.zoomed || app.inspect.is_some() {
        return vec![(app.selected, app.pairs[app.selected])];
    }
    let min = if app.venues {
        MIN_PANEL_HEIGHT + venues::height()
    } else {
        MIN_PANEL_HEIGHT
    };
    let fit = usize::from((height / min).max(1));
    let n = app.pairs.len();
    let count = fit.min(n);
    let first = app.selected.saturating_sub(count - 1).min(n - count);
    (first..first + count).map(|i| (i, app.pairs[i])).collect()
}

fn panels(app: &App, shown: &[(usize, Pair)], area: Rect, buf: &mut Buffer) {
    if shown.is_empty() {
        return;
    }
    let rects = panel_rects(shown.len(), area);
    for ((i, pair), rect) in shown.iter().zip(rects.iter()) {
        panel(app, *i, *pair, *rect, buf);
    }
}

/// The help overlay's rows: key, what it does (every key the dashboard knows), then what the
/// verification badge's marks mean.
pub const HELP: [(&str, &str); 15] = [
    ("Tab / → / ←", "next / previous pair"),
    ("1-9", "select pair by number"),
    ("Enter / z", "zoom into the selected pair (others hidden)"),
    ("s / S", "next / previous source (composite, each exchange)"),
    ("+ / -", "wider candles (fewer fit) / narrower (more fit)"),
    ("p / Space", "pause / resume the view (data keeps arriving)"),
    ("i", "inspect: ←/→ or h/l move over the candles, Esc leaves"),
    ("mouse click", "inspect the candle clicked"),
    ("v", "VWAP line (volume-weighted average price) on / off"),
    (
        "m / [ / ]",
        "moving average of closes on / off; shorter / longer",
    ),
    ("d", "venues: each exchange's close vs the composite, in bp"),
    (
        "< / >",
        "finer / coarser candles (intervals the server builds)",
    ),
    ("? / F1", "this help"),
    ("q / Esc / Ctrl-C", "quit"),
    (
        "✓ n/m / ✗ badge",
        "1m candles equal to the exchange's own / a mismatch",
    ),
];

/// The help overlay's notes below the keys (dropped first when the terminal is short).
const HELP_NOTES: [&str; 2] = [
    "green: close ≥ open · red: close < open · bold: forming · dim: partial",
    "times are window starts, UTC · stale: nothing new for 2 intervals",
];

/// The help box: every key on one line each, never wrapped; opaque, centred; the notes only
/// when there is room.
fn help_overlay(area: Rect, buf: &mut Buffer) {
    let key_w = HELP
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!(" {k:>key_w$}  "), Style::default().fg(Color::Cyan)),
                Span::raw(*v),
            ])
        })
        .collect();
    let room = usize::from(area.height.saturating_sub(2));
    if lines.len() + 1 + HELP_NOTES.len() <= room {
        lines.push(Line::from(""));
        lines.extend(
            HELP_NOTES
                .iter()
                .map(|n| Line::from(format!(" {n}")).dark_gray()),
        );
    }
    lines.truncate(room);
    let content_w = lines.iter().map(Line::width).max().unwrap_or(0) + 1;
    let width = (content_w as u16 + 2).min(area.width);
    let height = (lines.len() as u16 + 2).min(area.height);
    let rect = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    Clear.render(rect, buf);
    Paragraph::new(lines)
        .style(Style::default().bg(Color::Black).fg(Color::White))
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Double)
                .title(" help — ? or Esc to close "),
        )
        .render(rect, buf);
}
