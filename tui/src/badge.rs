//! The verification badge on a panel's bottom border (right-aligned): for an exchange's
//! candles its tally (`✓ 58/58 verified`, green when every verdict is a match; partial and
//! unavailable counted apart) and its latest mismatch in red (`✗ 10:31 close ours 1.5 theirs
//! 1.6 +1`); for the composite (which is not verified itself: each exchange checks its own
//! candles) one short tally per exchange and the newest mismatch of any, naming the exchange.
//! Words shorten until the badge fits the room given. Also the verdict on one candle for the
//! inspect readout ([`verdict_line`]). Pure: a [`Line`] out.

use crate::app::App;
use crate::verification::{
    Outcome, Tally, Verification, Verified, diffs_text, mismatch_text, tally_text,
};
use candles_core::{Exchange, Pair, Source};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};

/// The tally's colour: green when every verdict matched, red with a mismatch, else yellow.
pub fn tally_colour(t: &Tally) -> Color {
    if t.mismatched > 0 {
        Color::Red
    } else if t.matched == t.total() {
        Color::Green
    } else {
        Color::Yellow
    }
}

/// The colour of mismatches.
pub const MISMATCH: Color = Color::Red;

/// The badge of `pair`'s panel for the source shown, in at most `room` columns; `None` when
/// nothing was verified yet or nothing fits.
pub fn badge(app: &App, pair: Pair, room: usize) -> Option<Line<'static>> {
    let candidates = match app.source {
        Source::Exchange(e) => exchange_badges(app.verified.get(&(pair, e))?),
        Source::Composite => composite_badges(app, pair)?,
    };
    candidates.into_iter().find(|line| line.width() <= room)
}

/// An exchange's badge, longest first: full tally and mismatch, then shorter words.
fn exchange_badges(v: &Verified) -> Vec<Line<'static>> {
    let tally = |short| Span::styled(tally_text(&v.tally, short), tally_style(&v.tally));
    let mismatch = |short| {
        v.mismatch
            .as_ref()
            .map(|m| Span::styled(mismatch_text(m, short), Style::default().fg(MISMATCH)))
    };
    [
        (false, Some(false)),
        (true, Some(false)),
        (true, Some(true)),
        (true, None),
    ]
    .into_iter()
    .map(|(short_tally, short_mismatch)| {
        let mut spans = vec![Span::raw(" "), tally(short_tally)];
        if let Some(m) = short_mismatch.and_then(mismatch) {
            spans.push(Span::raw(" "));
            spans.push(m);
        }
        spans.push(Span::raw(" "));
        Line::from(spans)
    })
    .collect()
}

/// How the composite's badge is worded: exchange names in three letters, tallies without
/// their partial and unavailable counts, the mismatch (none, full or short words).
#[derive(Clone, Copy)]
struct Wording {
    short_names: bool,
    bare_tallies: bool,
    mismatch: Option<bool>,
}

/// The composite's wordings, longest first: the newest mismatch is the last thing to go.
const COMPOSITE: [Wording; 6] = [
    Wording {
        short_names: false,
        bare_tallies: false,
        mismatch: Some(false),
    },
    Wording {
        short_names: false,
        bare_tallies: false,
        mismatch: Some(true),
    },
    Wording {
        short_names: true,
        bare_tallies: false,
        mismatch: Some(true),
    },
    Wording {
        short_names: true,
        bare_tallies: true,
        mismatch: Some(true),
    },
    Wording {
        short_names: true,
        bare_tallies: false,
        mismatch: None,
    },
    Wording {
        short_names: true,
        bare_tallies: true,
        mismatch: None,
    },
];

/// The composite's badge in each of [`COMPOSITE`]'s wordings: each exchange's short tally and
/// the newest mismatch of any exchange, naming it. `None` when no exchange of `pair` has a
/// verdict.
fn composite_badges(app: &App, pair: Pair) -> Option<Vec<Line<'static>>> {
    let verified: Vec<(Exchange, &Verified)> = Exchange::ALL
        .iter()
        .filter_map(|e| Some((*e, app.verified.get(&(pair, *e))?)))
        .collect();
    if verified.is_empty() {
        return None;
    }
    let newest: Option<(Exchange, &Verification)> = verified
        .iter()
        .filter_map(|(e, v)| Some((*e, v.mismatch.as_ref()?)))
        .max_by_key(|(_, m)| m.start);
    let name = |e: Exchange, short: bool| if short { &e.as_str()[..3] } else { e.as_str() };
    let line = |w: Wording| {
        let mut spans = vec![Span::raw(" ")];
        for (e, v) in &verified {
            let tally = match w.bare_tallies {
                true => format!("✓{}/{} ", v.tally.matched, v.tally.total()),
                false => format!("{} ", tally_text(&v.tally, true)),
            };
            spans.push(Span::raw(format!("{} ", name(*e, w.short_names))));
            spans.push(Span::styled(tally, tally_style(&v.tally)));
        }
        if let (Some((e, m)), Some(short)) = (newest, w.mismatch) {
            let named = format!("✗ {} ", name(e, w.short_names));
            let text = mismatch_text(m, short).replacen("✗ ", &named, 1);
            spans.push(Span::styled(
                format!("{text} "),
                Style::default().fg(MISMATCH),
            ));
        }
        Line::from(spans)
    };
    Some(COMPOSITE.into_iter().map(line).collect())
}

/// The verdict on one candle, for the inspect readout: `✓ equal to kraken's own candle`
/// (green), `✗ kraken's differs: close ours 1.5 theirs 1.6, ...` (red), `◌ partial: ...` or
/// `? unavailable: ...` (yellow).
pub fn verdict_line(v: &Verification) -> Line<'static> {
    let e = v.exchange;
    let (text, colour) = match v.outcome {
        Outcome::Match => (format!("✓ equal to {e}'s own candle"), Color::Green),
        Outcome::Mismatch => (
            format!("✗ {e}'s differs: {}", diffs_text(&v.diffs)),
            MISMATCH,
        ),
        Outcome::Partial => (
            format!("◌ partial, not verified: {}", v.reason),
            Color::Yellow,
        ),
        Outcome::Unavailable => (
            format!("? {e}'s candle unavailable: {}", v.reason),
            Color::Yellow,
        ),
    };
    Line::styled(text, Style::default().fg(colour))
}

fn tally_style(t: &Tally) -> Style {
    Style::default().fg(tally_colour(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verification::Diff;
    use candles_core::{Interval, Micros};

    fn verdict(exchange: Exchange, minute: i64, outcome: Outcome, tally: Tally) -> Verification {
        let diffs = match outcome {
            Outcome::Mismatch => vec![
                Diff {
                    field: "close".into(),
                    ours: "1.5".into(),
                    theirs: "1.6".into(),
                },
                Diff {
                    field: "volume".into(),
                    ours: "2".into(),
                    theirs: "3".into(),
                },
            ],
            _ => Vec::new(),
        };
        Verification {
            pair: Pair::defaults()[0],
            exchange,
            interval: Interval::seconds(60),
            // 2026-11-26T10:00:00Z + minutes
            start: Micros(1_795_687_200_000_000 + minute * 60_000_000),
            outcome,
            diffs,
            reason: String::new(),
            tally,
            checked_at: Micros(1_795_687_200_000_000 + (minute + 1) * 60_000_000),
        }
    }

    fn text(line: &Line) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    fn app(source: Source, verdicts: Vec<Verification>) -> App {
        let mut app = App::new(Pair::defaults(), source, "test");
        for v in verdicts {
            app.handle(crate::app::Event::Verified(v), Micros(0));
        }
        app
    }

    #[test]
    fn an_exchange_badge_is_its_tally_then_its_latest_mismatch_in_red() {
        let pair = Pair::defaults()[0];
        let all = Tally {
            matched: 58,
            ..Tally::default()
        };
        let binance = Source::Exchange(Exchange::Binance);
        let a = app(
            binance,
            vec![verdict(Exchange::Binance, 1, Outcome::Match, all)],
        );
        let line = badge(&a, pair, 80).unwrap();
        assert_eq!(text(&line), " ✓ 58/58 verified ");
        assert_eq!(line.spans[1].style.fg, Some(Color::Green));

        let tally = Tally {
            matched: 57,
            mismatched: 1,
            partial: 1,
            unavailable: 0,
        };
        let a = app(
            binance,
            vec![verdict(Exchange::Binance, 31, Outcome::Mismatch, tally)],
        );
        let line = badge(&a, pair, 80).unwrap();
        assert_eq!(
            text(&line),
            " ✓ 57/59 verified · 1 partial ✗ 10:31 close ours 1.5 theirs 1.6 +1 "
        );
        assert_eq!(line.spans[3].style.fg, Some(MISMATCH));
        assert_eq!(
            text(&badge(&a, pair, 40).unwrap()),
            " ✓57/59 1p ✗ 10:31 close 1.5≠1.6 +1 "
        );
        assert_eq!(text(&badge(&a, pair, 15).unwrap()), " ✓57/59 1p ");
        assert_eq!(badge(&a, pair, 5), None, "nothing fits");
        let kraken = app(Source::Exchange(Exchange::Kraken), Vec::new());
        assert_eq!(badge(&kraken, pair, 80), None, "nothing verified yet");
    }

    #[test]
    fn the_composite_badge_sums_up_each_exchange_and_names_the_newest_mismatch() {
        let pair = Pair::defaults()[0];
        let ok = Tally {
            matched: 58,
            ..Tally::default()
        };
        let bad = Tally {
            matched: 57,
            mismatched: 1,
            ..Tally::default()
        };
        let a = app(
            Source::Composite,
            vec![
                verdict(Exchange::Binance, 2, Outcome::Match, ok),
                verdict(Exchange::Kraken, 31, Outcome::Mismatch, bad),
            ],
        );
        let line = badge(&a, pair, 80).unwrap();
        assert_eq!(
            text(&line),
            " binance ✓58/58 kraken ✓57/58 ✗ kraken 10:31 close ours 1.5 theirs 1.6 +1 "
        );
        let short = badge(&a, pair, 60).unwrap();
        assert!(short.width() <= 60, "{}", text(&short));
        assert!(text(&short).contains("close 1.5≠1.6"), "{}", text(&short));
        assert_eq!(
            text(&badge(&a, pair, 30).unwrap()),
            " bin ✓58/58 kra ✓57/58 "
        );
        let empty = app(Source::Composite, Vec::new());
        assert_eq!(badge(&empty, pair, 80), None);
    }
}
