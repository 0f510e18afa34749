//! Why an exchange message could not be used.
//!
//! Every error names what was being read and the offending value, so a rejected frame in a log
//! line says what was wrong without a debugger.

/// A frame or REST body from an exchange that could not be parsed or normalized.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The text is not JSON of the expected shape.
    #[error("{what}: not the expected JSON: {source}")]
    Json {
        /// What was being parsed, e.g. "binance trade".
        what: &'static str,
        /// The JSON error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A field is present but its value cannot be used.
    #[error("{what}: invalid {field} {value:?}: {reason}")]
    Field {
        /// What was being parsed.
        what: &'static str,
        /// The field name as the exchange spells it.
        field: &'static str,
        /// The offending value (as text).
        value: String,
        /// What was expected.
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
        ParseError::Field {
            what,
            field,
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }
}
