//! The words and colours for a link's state, in full (`reconnecting in 3s`) and short
//! (`retry 3s`), used by the title bar and each panel; time-axis labels and short volumes.

use crate::app::LinkState;
use candles_core::{Interval, Micros};
use ratatui::style::Color;

/// The text and colour of a link state at time `now` (a reconnect counts down).
pub fn state_label(state: LinkState, since: Micros, now: Micros) -> (String, Color) {
    match state {
        LinkState::Connecting => ("connecting".into(), Color::Yellow),
        LinkState::Live => ("live".into(), Color::Green),
        LinkState::Stale => ("stale".into(), Color::Yellow),
        LinkState::Reconnecting { in_ms, .. } => match seconds_left(in_ms, since, now) {
            Some(s) => (format!("reconnecting in {s}s"), Color::Red),
            None => ("reconnecting".into(), Color::Red),
        },
        LinkState::Stopped => ("stopped".into(), Color::Red),
    }
}

/// Whole seconds (rounded up) until a reconnect reported at `since` with `in_ms`, if any left.
fn seconds_left(in_ms: u64, since: Micros, now: Micros) -> Option<i64> {
    let waited = now.0.saturating_sub(since.0).max(0) / 1_000;
    let left = (in_ms as i64).saturating_sub(waited);
    (left > 0).then_some((left + 999) / 1_000)
}

/// A short form of [`state_label`] for narrow title bars: `live`, `conn`, `retry 3s`, `stop`.
pub fn short_label(state: LinkState, since: Micros, now: Micros) -> String {
    match state {
        LinkState::Connecting => "conn".into(),
        LinkState::Live => "live".into(),
        LinkState::Stale => "stale".into(),
        LinkState::Reconnecting { in_ms, .. } => match seconds_left(in_ms, since, now) {
            Some(s) => format!("retry {s}s"),
            None => "retry".into(),
        },
        LinkState::Stopped => "stop".into(),
    }
}

/// A time label for a window start: `HH:MM:SS` under a minute, `HH:MM` under a day, else `MM-DD`.
pub fn time_label(t: Micros, interval: Interval) -> String {
    let secs = t.0.div_euclid(1_000_000);
    let Ok(dt) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return "?".into();
    };
    if interval.micros() < 60_000_000 {
        format!("{:02}:{:02}:{:02}", dt.hour(), dt.minute(), dt.second())
    } else if interval.micros() < 86_400_000_000 {
        format!("{:02}:{:02}", dt.hour(), dt.minute())
    } else {
        format!("{:02}-{:02}", u8::from(dt.month()), dt.day())
    }
}

/// Label every k-th window, where k ≥ `min_k` and k intervals make a round time span
/// (10 s, 30 s, 1 m, 5 m, ...), so labels read `06:41:00  06:41:30` rather than odd steps.
pub fn label_every(interval: Interval, min_k: i64) -> i64 {
    const NICE_SECS: [i64; 17] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 21_600, 43_200, 86_400,
    ];
    let us = interval.micros();
    let min_k = min_k.max(1);
    NICE_SECS
        .iter()
        .map(|s| s * 1_000_000)
        .filter(|span| span % us == 0)
        .map(|span| span / us)
        .find(|k| *k >= min_k)
        .unwrap_or(min_k)
}

/// A volume in at most six characters: `12.35`, `1.2k`, `3.4M`.
pub fn short_volume(v: f64) -> String {
    let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
    if v >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
