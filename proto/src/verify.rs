//! Verdicts on the wire: the conversions of `candles_core::verify`'s field differences and the
//! names of the outcomes (metric labels, `--json`).

use crate::v1;
use candles_core::verify::FieldDiff;

impl From<&FieldDiff> for v1::FieldDiff {
    fn from(d: &FieldDiff) -> Self {
        v1::FieldDiff {
            field: d.field.name().to_string(),
            ours: d.ours.normalize().to_string(),
            theirs: d.theirs.normalize().to_string(),
        }
    }
}

/// The outcome's name as users see it: `match`, `mismatch`, `unavailable`, `partial`
/// (`unspecified` for none).
pub fn outcome_name(outcome: v1::Outcome) -> &'static str {
    match outcome {
        v1::Outcome::Unspecified => "unspecified",
        v1::Outcome::Match => "match",
        v1::Outcome::Mismatch => "mismatch",
        v1::Outcome::Unavailable => "unavailable",
        v1::Outcome::Partial => "partial",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candles_core::verify::Field;

    #[test]
    fn a_difference_travels_as_normalized_decimal_text() {
        let d = FieldDiff {
            field: Field::QuoteVolume,
            ours: "1.50000000".parse().unwrap(),
            theirs: "1.6".parse().unwrap(),
        };
        let wire = v1::FieldDiff::from(&d);
        assert_eq!(
            (
                wire.field.as_str(),
                wire.ours.as_str(),
                wire.theirs.as_str()
            ),
            ("quote_volume", "1.5", "1.6")
        );
    }

    #[test]
    fn outcomes_have_the_names_users_see() {
        let names: Vec<&str> = [
            v1::Outcome::Match,
            v1::Outcome::Mismatch,
            v1::Outcome::Unavailable,
            v1::Outcome::Partial,
        ]
        .into_iter()
        .map(outcome_name)
        .collect();
        assert_eq!(names, ["match", "mismatch", "unavailable", "partial"]);
    }
}
