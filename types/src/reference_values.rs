//! Reference values: the dm-verity root hashes a layer may have, optionally bound to layer
//! digests. One parser for the guest agent (which refuses unlisted layers before mounting)
//! and the host's verifier (which checks measured layers against the same file). TOML:
//!
//! ```toml
//! # any digest may use these root hashes
//! root_hashes = ["3f5a...", "9c1e..."]
//!
//! # this root hash only for this digest
//! [[layers]]
//! root_hash = "d56e..."
//! digest = "sha256:0b1c..."
//! ```
//!
//! Root hashes are 40, 64 or 128 hex digits (either case, kept in lower case); digests are
//! strict ([`crate::Digest::parse`]); unknown keys are refused; at least one root hash must
//! be listed. A root hash listed once without a digest is allowed for any digest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Deserialize;

use crate::{Digest, TypeError};

/// A reference-values file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceValuesError {
    /// Not TOML of the documented shape (the TOML parser's message).
    #[error("{0}")]
    Toml(String),
    /// A root hash that is not 40, 64 or 128 hex digits.
    #[error("{origin}: root hash {value:?} is not 40, 64 or 128 hex digits")]
    BadRootHash {
        /// Where: `root_hashes` or `layers[i]`.
        origin: String,
        /// The value as given.
        value: String,
    },
    /// A digest that is not a valid digest.
    #[error("{origin}: {reason}")]
    BadDigest {
        /// Where: `layers[i]`.
        origin: String,
        /// Why.
        reason: TypeError,
    },
    /// A file that lists nothing.
    #[error("no root hashes listed")]
    Empty,
}

/// Why a layer is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusalReason {
    /// The root hash is not listed.
    #[error("root hash {root_hash} is not in the reference values")]
    NotListed {
        /// The root hash.
        root_hash: String,
    },
    /// The root hash is listed for other digests only.
    #[error(
        "root hash {root_hash} is listed for {} only, not for {}",
        listed.join(", "),
        digest.as_deref().map_or("a layer of unknown digest", |_| "this digest")
    )]
    OtherDigest {
        /// The root hash.
        root_hash: String,
        /// The layer's digest (`None`: unknown).
        digest: Option<String>,
        /// The digests the root hash is listed for.
        listed: Vec<String>,
    },
}

/// Root hashes a layer may have, optionally bound to layer digests (see the module
/// documentation for the file format).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceValues {
    /// root hash (lower-case hex) → digests it is bound to (`None`: any digest).
    allowed: BTreeMap<String, Option<BTreeSet<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefFile {
    #[serde(default)]
    root_hashes: Vec<String>,
    #[serde(default)]
    layers: Vec<RefLayer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefLayer {
    root_hash: String,
    digest: Option<String>,
}

fn check_root_hash(origin: &str, hash: &str) -> Result<String, ReferenceValuesError> {
    let lower = hash.to_ascii_lowercase();
    let ok = matches!(lower.len(), 40 | 64 | 128) && lower.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(ReferenceValuesError::BadRootHash {
            origin: origin.to_owned(),
            value: hash.to_owned(),
        });
    }
    Ok(lower)
}

impl ReferenceValues {
    /// Parses reference values from TOML text.
    ///
    /// # Errors
    /// [`ReferenceValuesError`] naming the entry and the rule.
    pub fn parse(text: &str) -> Result<Self, ReferenceValuesError> {
        let file: RefFile =
            toml::from_str(text).map_err(|e| ReferenceValuesError::Toml(e.message().to_owned()))?;
        let mut values = Self::default();
        for h in &file.root_hashes {
            let h = check_root_hash("root_hashes", h)?;
            values.allowed.insert(h, None);
        }
        for (i, l) in file.layers.iter().enumerate() {
            let origin = format!("layers[{i}]");
            let h = check_root_hash(&origin, &l.root_hash)?;
            match &l.digest {
                None => {
                    values.allowed.insert(h, None);
                }
                Some(d) => {
                    Digest::parse(d)
                        .map_err(|reason| ReferenceValuesError::BadDigest { origin, reason })?;
                    values.insert_for(h, d);
                }
            }
        }
        if values.allowed.is_empty() {
            return Err(ReferenceValuesError::Empty);
        }
        Ok(values)
    }

    fn insert_for(&mut self, root_hash: String, digest: &str) {
        match self
            .allowed
            .entry(root_hash)
            .or_insert_with(|| Some(BTreeSet::new()))
        {
            None => {} // already allowed for any digest
            Some(set) => {
                set.insert(digest.to_owned());
            }
        }
    }

    /// Allows a root hash (hex, kept in lower case) for any digest.
    pub fn allow(&mut self, root_hash_hex: &str) {
        self.allowed
            .insert(root_hash_hex.to_ascii_lowercase(), None);
    }

    /// Allows a root hash (hex, kept in lower case) for `digest`, unless it is allowed for
    /// any digest already.
    pub fn allow_for(&mut self, root_hash_hex: &str, digest: &str) {
        self.insert_for(root_hash_hex.to_ascii_lowercase(), digest);
    }

    /// Number of listed root hashes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.allowed.len()
    }

    /// True when nothing is listed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Every listed root hash (lower-case hex, sorted) with the digests it is bound to
    /// (`None`: any digest).
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&BTreeSet<String>>)> {
        self.allowed.iter().map(|(h, d)| (h.as_str(), d.as_ref()))
    }

    /// Whether a layer with `root_hash_hex` (lower-case hex) and `digest` (if known) may be
    /// used; `Err` says why not.
    ///
    /// # Errors
    /// [`RefusalReason`].
    pub fn allows(&self, root_hash_hex: &str, digest: Option<&str>) -> Result<(), RefusalReason> {
        match self.allowed.get(root_hash_hex) {
            None => Err(RefusalReason::NotListed {
                root_hash: root_hash_hex.to_owned(),
            }),
            Some(None) => Ok(()),
            Some(Some(digests)) if digest.is_some_and(|d| digests.contains(d)) => Ok(()),
            Some(Some(digests)) => Err(RefusalReason::OtherDigest {
                root_hash: root_hash_hex.to_owned(),
                digest: digest.map(str::to_owned),
                listed: digests.iter().cloned().collect(),
            }),
        }
    }

    /// The values as TOML in the documented format: `root_hashes` for those allowed for any
    /// digest, one `[[layers]]` per bound (root hash, digest) pair. [`Self::parse`] reads it
    /// back to the same values.
    #[must_use]
    pub fn to_toml(&self) -> String {
        let mut out = String::from("root_hashes = [");
        let any: Vec<&str> = self
            .iter()
            .filter(|(_, d)| d.is_none())
            .map(|(h, _)| h)
            .collect();
        for (i, h) in any.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { "" });
            // Writing into a String cannot fail.
            let _ = writeln!(out, "    \"{h}\",");
        }
        out.push_str("]\n");
        for (h, digests) in self.iter() {
            for d in digests.into_iter().flatten() {
                let _ = write!(out, "\n[[layers]]\nroot_hash = \"{h}\"\ndigest = \"{d}\"\n");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
