//! Content digests: `sha256:` + 64 or `sha512:` + 128 lower-case hex digits, nothing else.
//! The one parser of both agents (OCI blobs, diff IDs, plan fields, partition names).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::TypeError;

/// The algorithms a [`Digest`] may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    /// SHA-256: 64 hex digits.
    Sha256,
    /// SHA-512: 128 hex digits.
    Sha512,
}

impl DigestAlgorithm {
    /// The name before the colon.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// The number of hex digits after the colon.
    #[must_use]
    pub const fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }
}

/// A validated digest, e.g. `sha256:e3b0c442…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: DigestAlgorithm,
    text: String,
}

impl Digest {
    /// Parses `value` strictly: a known algorithm, a colon, exactly the right number of
    /// lower-case hex digits.
    ///
    /// # Errors
    /// [`TypeError::BadDigest`] naming the rule broken.
    pub fn parse(value: &str) -> Result<Self, TypeError> {
        let bad = |reason: String| TypeError::BadDigest {
            value: value.to_owned(),
            reason,
        };
        let (alg, hex) = value
            .split_once(':')
            .ok_or_else(|| bad("not <algorithm>:<hex>".into()))?;
        let algorithm = match alg {
            "sha256" => DigestAlgorithm::Sha256,
            "sha512" => DigestAlgorithm::Sha512,
            _ => return Err(bad(format!("algorithm {alg:?} is not sha256 or sha512"))),
        };
        if !is_lower_hex(hex, algorithm.hex_len()) {
            return Err(bad(format!(
                "expected {} lower-case hex digits after {alg}:",
                algorithm.hex_len()
            )));
        }
        Ok(Self {
            algorithm,
            text: value.to_owned(),
        })
    }

    /// The digest with `algorithm` of raw hash bytes (32 for sha256, 64 for sha512).
    ///
    /// # Errors
    /// When `hash` has the wrong length for `algorithm`.
    pub fn from_bytes(algorithm: DigestAlgorithm, hash: &[u8]) -> Result<Self, TypeError> {
        Self::parse(&format!("{}:{}", algorithm.name(), hex::encode(hash)))
    }

    /// The sha256 digest whose hash is `hash`.
    #[must_use]
    pub fn sha256(hash: &[u8; 32]) -> Self {
        Self {
            algorithm: DigestAlgorithm::Sha256,
            text: format!("sha256:{}", hex::encode(hash)),
        }
    }

    /// The sha512 digest whose hash is `hash`.
    #[must_use]
    pub fn sha512(hash: &[u8; 64]) -> Self {
        Self {
            algorithm: DigestAlgorithm::Sha512,
            text: format!("sha512:{}", hex::encode(hash)),
        }
    }

    /// The algorithm.
    #[must_use]
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// `<algorithm>:<hex>`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The hex digits.
    #[must_use]
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.name().len() + 1..]
    }
}

/// `len` lower-case hex digits exactly.
#[must_use]
pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Digest {
    type Err = TypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Good and bad digests, shared by both agents' tests: every parser of a digest in
/// layerpass must agree with this table (`true`: accepted).
pub const VECTORS: &[(&str, bool)] = &[
    (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        true,
    ),
    (
        "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
        true,
    ),
    ("", false),
    ("sha256:", false),
    (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        false,
    ),
    (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
        false,
    ),
    (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
        false,
    ),
    (
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        false,
    ),
    (
        "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        false,
    ),
    (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
        false,
    ),
    (
        "sha256:../../c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        false,
    ),
    (
        "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
        false,
    ),
    (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n",
        false,
    ),
    (
        "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        false,
    ),
    (
        "sha384:38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b",
        false,
    ),
    (
        "blake3:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        false,
    ),
    (
        ":e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        false,
    ),
    (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:x",
        false,
    ),
];

#[cfg(test)]
mod tests;
