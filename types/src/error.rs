//! What is wrong with a value: each error names the parameter and the rule it breaks.

/// A value that breaks a rule of the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// A digest that is not `<algorithm>:<lower-case hex>` of the right length.
    #[error("digest {value:?}: {reason}")]
    BadDigest {
        /// The value as given.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A hash algorithm dm-verity (as layerpass supports it) does not know.
    #[error("unknown hash algorithm {0:?} (sha256, sha512 or sha1)")]
    UnknownAlgorithm(String),
    /// A root hash that is not hex, or of the wrong length for its algorithm.
    #[error("root hash {value:?}: {reason}")]
    BadRootHash {
        /// The value as given (hex, or the length of raw bytes).
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A dm-verity parameter out of the supported envelope.
    #[error("verity {parameter} {value}: {reason}")]
    Verity {
        /// The parameter, e.g. `data_block_size`.
        parameter: &'static str,
        /// Its value.
        value: String,
        /// The rule it breaks (with the limit).
        reason: String,
    },
    /// A name (container id, serial, partition name) that breaks its rule.
    #[error("{what} {value:?}: {reason}")]
    BadName {
        /// Which kind of name.
        what: &'static str,
        /// The value as given.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
}
