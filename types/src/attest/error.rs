//! What is wrong with a measurement or an event.

/// A measurement or an event that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    /// A field of a [`super::LayerMeasurement`] that breaks its rule.
    #[error("measurement field {field} {value:?}: {reason}")]
    Field {
        /// The JSON member name.
        field: &'static str,
        /// The value as given (cut to 200 bytes).
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A content longer than any measurement can be.
    #[error("measurement content is {len} bytes long, at most {max} allowed")]
    ContentTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A content that is not a JSON object of the measurement's members.
    #[error("measurement content is not a measurement object: {0}")]
    NotJson(String),
    /// A content that is a measurement but not its canonical (RFC 8785) text.
    #[error("measurement content is not canonical JSON (RFC 8785): expected {expected}")]
    NotCanonical {
        /// The canonical text of what was read.
        expected: String,
    },
    /// An event text that is not `<domain> <operation> <content>`.
    #[error("event text: {0}")]
    BadEventText(String),
}
