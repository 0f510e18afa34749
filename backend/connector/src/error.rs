//! Why an exchange message could not be used.
//!
//! Every error names what was being read and the offending value, so a rejected frame in a log
//! line says what was wrong without a debugger. The value is untrusted text: it is kept only as
//! a short [`candles_core::excerpt`] with its length, so one huge field cannot make a huge error.

use candles_core::excerpt;

/// A frame or REST body from an exchange that could not be parsed or normalized.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The text is not JSON of the expected shape.
    #[error("{what}: not the expected JSON: {}", bounded(source))]
    Json {
        /// What was being parsed, e.g. "binance trade".
        what: &'static str,
        /// The JSON error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A field is present but its value cannot be used.
    #[error("{what}: invalid {field} {value}: {reason}")]
    Field {
        /// What was being parsed.
        what: &'static str,
        /// The field name as the exchange spells it.
        field: &'static str,
        /// The offending value, as a short excerpt ([`candles_core::excerpt`]).
        value: String,
        /// What was expected (cut like the value when it is long).
        reason: String,
    },
    /// A message of a kind we do not know.
    #[error("{what}: unknown message: {detail}")]
    Unknown {
        /// What was being parsed.
        what: &'static str,
        /// What made it unknown.
        detail: String,
    },
}

impl ParseError {
    /// A JSON error while reading `what`.
    pub fn json(what: &'static str) -> impl FnOnce(serde_json::Error) -> ParseError {
        move |source| ParseError::Json { what, source }
    }

    /// An invalid field value.
    pub fn field(
        what: &'static str,
        field: &'static str,
        value: impl ToString,
        reason: impl ToString,
    ) -> ParseError {
        let reason = reason.to_string();
        ParseError::Field {
            what,
            field,
            value: excerpt(&value.to_string()),
            reason: if reason.len() > MAX_MESSAGE {
                excerpt(&reason)
            } else {
                reason
            },
        }
    }
}

/// Messages up to this many bytes are shown whole; longer ones as an excerpt.
const MAX_MESSAGE: usize = 160;

/// A serde error as a bounded message: serde quotes offending strings whole (`invalid type:
/// string "…"`), so a long message is cut, keeping the position.
fn bounded(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.len() <= MAX_MESSAGE {
        msg
    } else {
        format!(
            "{} (at line {} column {})",
            excerpt(&msg),
            e.line(),
            e.column()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_values_make_short_errors() {
        let huge = "\u{1}".repeat(1_000_000);
        let e = ParseError::field("binance frame", "p", &huge, "not a decimal");
        let msg = e.to_string();
        assert!(msg.len() < 600 && msg.contains("(1000000 bytes)"), "{msg}");
        let json = format!(r#"{{"t":"{}"}}"#, "x".repeat(1_000_000));
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            t: u64,
        }
        let e = serde_json::from_str::<T>(&json).map_err(ParseError::json("binance frame"));
        let msg = e.unwrap_err().to_string();
        assert!(msg.len() < 300 && msg.contains("column"), "{msg}");
    }
}
