//! The words and colours for a link's state, in full (`reconnecting in 3s`) and short
//! (`retry 3s`), used by the title bar and each panel.

use crate::app::LinkState;
use candles_core::Micros;
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
