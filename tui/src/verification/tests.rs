//! Unit tests of the verdicts: decoding, the tally kept, and their texts and lines.

use super::*;
use std::str::FromStr;

fn minute(m: i64) -> Micros {
    // 2026-11-26T10:00:00Z + m minutes
    Micros(1_795_687_200_000_000 + m * 60_000_000)
}

fn verdict(m: i64, outcome: Outcome, tally: Tally) -> Verification {
    let diffs = match outcome {
        Outcome::Mismatch => vec![
            Diff {
                field: "close".into(),
                ours: "1.5".into(),
                theirs: "1.6".into(),
            },
            Diff {
                field: "trades".into(),
                ours: "41".into(),
                theirs: "42".into(),
            },
        ],
        _ => Vec::new(),
    };
    Verification {
        pair: Pair::from_str("BTC-USDT").unwrap(),
        exchange: Exchange::Kraken,
        interval: Interval::seconds(60),
        start: minute(m),
        outcome,
        diffs,
        reason: String::new(),
        tally,
        checked_at: minute(m + 1),
    }
}

fn tally(matched: u64, mismatched: u64, unavailable: u64, partial: u64) -> Tally {
    Tally {
        matched,
        mismatched,
        unavailable,
        partial,
    }
}

#[test]
fn a_verdict_survives_the_wire_and_a_bad_one_is_named() {
    let v = verdict(31, Outcome::Mismatch, tally(57, 1, 0, 0));
    let wire = v1::Verification::from(&v);
    assert_eq!(wire.outcome, v1::Outcome::Mismatch as i32);
    assert_eq!(Verification::try_from(&wire).unwrap(), v);
    let bad = v1::Verification {
        source: "composite".into(),
        ..wire.clone()
    };
    let err = Verification::try_from(&bad).unwrap_err();
    assert!(err.contains("source"), "{err}");
    let bad = v1::Verification { outcome: 0, ..wire };
    assert!(
        Verification::try_from(&bad)
            .unwrap_err()
            .contains("outcome")
    );
}

#[test]
fn the_newest_tally_wins_and_the_latest_mismatch_is_kept() {
    let mut kept = Verified::default();
    kept.record(verdict(30, Outcome::Match, tally(57, 0, 0, 0)));
    kept.record(verdict(31, Outcome::Mismatch, tally(57, 1, 0, 0)));
    kept.record(verdict(32, Outcome::Partial, tally(57, 1, 0, 1)));
    assert_eq!(kept.tally, tally(57, 1, 0, 1));
    // A replay of older verdicts (after a reconnect) changes neither.
    kept.record(verdict(29, Outcome::Mismatch, tally(56, 1, 0, 0)));
    assert_eq!(kept.tally, tally(57, 1, 0, 1));
    assert_eq!(kept.mismatch.as_ref().unwrap().start, minute(31));
    assert_eq!(kept.recent.len(), 4);
    assert_eq!(kept.recent[&minute(32)].outcome, Outcome::Partial);
}

#[test]
fn the_texts_name_the_counts_the_field_and_both_values() {
    assert_eq!(tally_text(&tally(58, 0, 0, 0), false), "✓ 58/58 verified");
    assert_eq!(
        tally_text(&tally(57, 0, 2, 1), false),
        "✓ 57/60 verified · 1 partial · 2 unavailable"
    );
    assert_eq!(tally_text(&tally(57, 0, 2, 1), true), "✓57/60 1p 2u");
    let v = verdict(31, Outcome::Mismatch, tally(57, 1, 0, 0));
    assert_eq!(
        mismatch_text(&v, false),
        "✗ 10:31 close ours 1.5 theirs 1.6 +1"
    );
    assert_eq!(mismatch_text(&v, true), "✗ 10:31 close 1.5≠1.6 +1");
    let one = Verification {
        diffs: v.diffs[..1].to_vec(),
        ..v
    };
    assert_eq!(
        mismatch_text(&one, false),
        "✗ 10:31 close ours 1.5 theirs 1.6"
    );
}

#[test]
fn plain_prints_mismatches_only_and_json_every_verdict() {
    let v = verdict(31, Outcome::Mismatch, tally(57, 1, 0, 0));
    assert_eq!(
        plain_line(&v).unwrap(),
        "2026-11-26T10:31:00Z BTC-USDT kraken 1m mismatch close ours 1.5 theirs 1.6, \
         trades ours 41 theirs 42 (verified 57/58)"
    );
    assert_eq!(
        plain_line(&verdict(32, Outcome::Match, tally(58, 1, 0, 0))),
        None
    );
    let j: serde_json::Value = serde_json::from_str(&json_line(&v)).unwrap();
    assert_eq!(j["type"], "verification");
    assert_eq!(j["pair"], "BTC-USDT");
    assert_eq!(j["source"], "kraken");
    assert_eq!(j["interval"], "1m");
    assert_eq!(j["start"], "2026-11-26T10:31:00Z");
    assert_eq!(j["outcome"], "mismatch");
    assert_eq!(j["diffs"][0]["field"], "close");
    assert_eq!(j["diffs"][0]["ours"], "1.5");
    assert_eq!(j["diffs"][0]["theirs"], "1.6");
    assert_eq!(j["diffs"][1]["field"], "trades");
    assert_eq!(j["tally"]["matched"], 57);
    assert_eq!(j["tally"]["mismatched"], 1);
    assert_eq!(j["checked_at"], "2026-11-26T10:32:00Z");
    let p: serde_json::Value = serde_json::from_str(&json_line(&verdict(
        33,
        Outcome::Partial,
        tally(57, 1, 0, 1),
    )))
    .unwrap();
    assert_eq!(p["outcome"], "partial");
    assert_eq!(p["diffs"].as_array().unwrap().len(), 0);
}
