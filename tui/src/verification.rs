//! Verdicts on the exchanges' 1-minute candles (each checked against the exchange's own candle
//! from its REST API), as the dashboard and the line modes use them.
//!
//! - [`Verification`]: one verdict, decoded from the wire (`candles.v1.Verification`), the same
//!   from a server's stream and from the embedded verifier.
//! - [`Verified`]: what is kept per pair and exchange: the newest tally, the latest mismatch and
//!   the recent verdicts by window start (for the inspect readout).
//! - Text: [`tally_text`] (`✓ 57/58 verified · 1 partial`), [`mismatch_text`]
//!   (`✗ 10:31 close ours 1.5 theirs 1.6 +1`), [`plain_line`] and [`json_line`] for
//!   `--plain` / `--json`. Pure: no drawing here (the panel's badge is [`crate::badge`]).

use candles_core::{Exchange, Interval, Micros, Pair};
use candles_proto::v1;
use std::collections::BTreeMap;

/// What checking one candle found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every field the exchange publishes is equal.
    Match,
    /// At least one field differs.
    Mismatch,
    /// No comparison was possible within the patience.
    Unavailable,
    /// Our candle is marked partial: compared, not counted as a match.
    Partial,
}

impl Outcome {
    /// `match`, `mismatch`, `unavailable` or `partial`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Match => "match",
            Outcome::Mismatch => "mismatch",
            Outcome::Unavailable => "unavailable",
            Outcome::Partial => "partial",
        }
    }
}

/// One field that differs: ours and the exchange's, exact decimal text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diff {
    /// `open`, `close`, `volume`, `trades`, ...
    pub field: String,
    /// Our value.
    pub ours: String,
    /// The exchange's value.
    pub theirs: String,
}

/// The running count of verdicts for one pair and exchange.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Candles that matched.
    pub matched: u64,
    /// Candles with a field that differs.
    pub mismatched: u64,
    /// Candles the exchange gave no answer for.
    pub unavailable: u64,
    /// Candles of ours marked partial.
    pub partial: u64,
}

impl Tally {
    /// Every verdict counted.
    pub fn total(&self) -> u64 {
        self.matched + self.mismatched + self.unavailable + self.partial
    }
}

/// The verdict on one final 1-minute candle of one exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// The candle's pair.
    pub pair: Pair,
    /// The exchange (the candle's source).
    pub exchange: Exchange,
    /// The candle's interval (1 minute).
    pub interval: Interval,
    /// The candle's window start.
    pub start: Micros,
    /// What was found.
    pub outcome: Outcome,
    /// For a mismatch: every differing field.
    pub diffs: Vec<Diff>,
    /// For unavailable or partial: why.
    pub reason: String,
    /// The pair and exchange's tally including this verdict.
    pub tally: Tally,
    /// When the verdict was reached.
    pub checked_at: Micros,
}

impl TryFrom<&v1::Verification> for Verification {
    type Error = String;

    fn try_from(v: &v1::Verification) -> Result<Self, String> {
        let pair = Pair::parse(&v.pair).map_err(|e| format!("verification pair: {e}"))?;
        let exchange = v
            .source
            .parse::<Exchange>()
            .map_err(|e| format!("verification source: {e}"))?;
        let outcome = match v1::Outcome::try_from(v.outcome) {
            Ok(v1::Outcome::Match) => Outcome::Match,
            Ok(v1::Outcome::Mismatch) => Outcome::Mismatch,
            Ok(v1::Outcome::Unavailable) => Outcome::Unavailable,
            Ok(v1::Outcome::Partial) => Outcome::Partial,
            _ => return Err(format!("verification outcome {} is not known", v.outcome)),
        };
        let tally = v.tally.unwrap_or_default();
        Ok(Verification {
            pair,
            exchange,
            interval: candles_proto::interval_from(v.interval.as_ref())
                .map_err(|e| format!("verification {e}"))?,
            start: candles_proto::micros("start", v.start.as_ref())
                .map_err(|e| format!("verification {e}"))?,
            outcome,
            diffs: v
                .diffs
                .iter()
                .map(|d| Diff {
                    field: d.field.clone(),
                    ours: d.ours.clone(),
                    theirs: d.theirs.clone(),
                })
                .collect(),
            reason: v.reason.clone(),
            tally: Tally {
                matched: tally.matched,
                mismatched: tally.mismatched,
                unavailable: tally.unavailable,
                partial: tally.partial,
            },
            // An old verdict without the time sorts before every other.
            checked_at: candles_proto::micros("checked_at", v.checked_at.as_ref())
                .unwrap_or(Micros(0)),
        })
    }
}

impl From<&Verification> for v1::Verification {
    fn from(v: &Verification) -> Self {
        let outcome = match v.outcome {
            Outcome::Match => v1::Outcome::Match,
            Outcome::Mismatch => v1::Outcome::Mismatch,
            Outcome::Unavailable => v1::Outcome::Unavailable,
            Outcome::Partial => v1::Outcome::Partial,
        };
        v1::Verification {
            pair: v.pair.to_string(),
            source: v.exchange.as_str().to_string(),
            interval: Some(candles_proto::duration(v.interval)),
            start: Some(candles_proto::timestamp(v.start)),
            outcome: outcome as i32,
            diffs: v
                .diffs
                .iter()
                .map(|d| v1::FieldDiff {
                    field: d.field.clone(),
                    ours: d.ours.clone(),
                    theirs: d.theirs.clone(),
                })
                .collect(),
            reason: v.reason.clone(),
            tally: Some(v1::VerificationTally {
                matched: v.tally.matched,
                mismatched: v.tally.mismatched,
                unavailable: v.tally.unavailable,
                partial: v.tally.partial,
            }),
            checked_at: Some(candles_proto::timestamp(v.checked_at)),
        }
    }
}

/// How many recent verdicts per pair and exchange are kept for the inspect readout.
pub const RECENT: usize = 2_000;

/// What the dashboard keeps per pair and exchange.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// The tally of the newest verdict (by the time it was reached).
    pub tally: Tally,
    /// When that verdict was reached.
    pub tally_at: Option<Micros>,
    /// The mismatch of the latest window.
    pub mismatch: Option<Verification>,
    /// Recent verdicts by window start (the newest [`RECENT`]).
    pub recent: BTreeMap<Micros, Verification>,
}

impl Verified {
    /// Takes in a verdict: its tally when it is the newest reached (a replayed older one does
    /// not turn the count back), the mismatch when its window is the latest mismatched.
    pub fn record(&mut self, v: Verification) {
        if self.tally_at.is_none_or(|at| v.checked_at >= at) {
            self.tally = v.tally;
            self.tally_at = Some(v.checked_at);
        }
        if v.outcome == Outcome::Mismatch
            && self.mismatch.as_ref().is_none_or(|m| v.start >= m.start)
        {
            self.mismatch = Some(v.clone());
        }
        self.recent.insert(v.start, v);
        while self.recent.len() > RECENT {
            self.recent.pop_first();
        }
    }
}

/// `HH:MM` (UTC) of a window start.
pub fn minute_label(t: Micros) -> String {
    // `2026-11-26T10:31:00Z`: the hour and minute are characters 11..16.
    t.to_rfc3339_short().get(11..16).unwrap_or("?").to_string()
}

/// The tally as a badge: `✓ 58/58 verified`, then what was neither a match nor a mismatch
/// counted apart (`· 1 partial · 2 unavailable`); `short`: `✓57/58 1p 2u`.
pub fn tally_text(t: &Tally, short: bool) -> String {
    let mut text = if short {
        format!("✓{}/{}", t.matched, t.total())
    } else {
        format!("✓ {}/{} verified", t.matched, t.total())
    };
    for (n, word) in [(t.partial, "partial"), (t.unavailable, "unavailable")] {
        if n == 0 {
        } else if short {
            text.push_str(&format!(" {n}{}", &word[..1]));
        } else {
            text.push_str(&format!(" · {n} {word}"));
        }
    }
    text
}

/// A mismatch in a few words: its minute, the first differing field with both values, and how
/// many more differ: `✗ 10:31 close ours 1.5 theirs 1.6 +1`; `short`: `✗ 10:31 close 1.5≠1.6 +1`.
pub fn mismatch_text(v: &Verification, short: bool) -> String {
    let mut text = format!("✗ {}", minute_label(v.start));
    if let Some(d) = v.diffs.first() {
        if short {
            text.push_str(&format!(" {} {}≠{}", d.field, d.ours, d.theirs));
        } else {
            text.push_str(&format!(" {} ours {} theirs {}", d.field, d.ours, d.theirs));
        }
    }
    if v.diffs.len() > 1 {
        text.push_str(&format!(" +{}", v.diffs.len() - 1));
    }
    text
}

/// Every differing field: `close ours 1.5 theirs 1.6, volume ours 2 theirs 3`.
pub fn diffs_text(diffs: &[Diff]) -> String {
    diffs
        .iter()
        .map(|d| format!("{} ours {} theirs {}", d.field, d.ours, d.theirs))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `--plain` line of a verdict worth a line (a mismatch, naming every field), else `None`:
/// `2026-11-26T10:31:00Z BTC-USDT binance 1m mismatch close ours 1.5 theirs 1.6 (verified 57/58)`.
pub fn plain_line(v: &Verification) -> Option<String> {
    (v.outcome == Outcome::Mismatch).then(|| {
        format!(
            "{} {} {} {} mismatch {} (verified {}/{})",
            v.start.to_rfc3339_short(),
            v.pair,
            v.exchange,
            v.interval,
            diffs_text(&v.diffs),
            v.tally.matched,
            v.tally.total()
        )
    })
}

/// The `--json` object of a verdict (no newline): `"type":"verification"`, the proto's field
/// names, decimals as strings, times RFC 3339 UTC.
pub fn json_line(v: &Verification) -> String {
    let diffs: Vec<serde_json::Value> = v
        .diffs
        .iter()
        .map(|d| serde_json::json!({"field": d.field, "ours": d.ours, "theirs": d.theirs}))
        .collect();
    serde_json::json!({
        "type": "verification",
        "pair": v.pair.to_string(),
        "source": v.exchange.as_str(),
        "interval": v.interval.to_string(),
        "start": v.start.to_rfc3339_short(),
        "outcome": v.outcome.name(),
        "diffs": diffs,
        "reason": v.reason,
        "tally": {
            "matched": v.tally.matched,
            "mismatched": v.tally.mismatched,
            "unavailable": v.tally.unavailable,
            "partial": v.tally.partial,
        },
        "checked_at": v.checked_at.to_rfc3339_short(),
    })
    .to_string()
}

#[cfg(test)]
mod tests;
