//! Content digests: `sha256:` followed by 64 lower-case hex digits, nothing else.

use std::fmt;

use serde::{Deserialize, Deserializer};

use super::error::ImageError;

const PREFIX: &str = "sha256:";
const HEX_LEN: usize = 64;

/// A validated sha256 digest (`sha256:<64 lower hex>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `value`; `what` names where it came from in the error.
    pub fn parse(value: &str, what: &str) -> Result<Self, ImageError> {
        let Some((algorithm, hex)) = value.split_once(':') else {
            return Err(bad(value, what));
        };
        if algorithm != "sha256" {
            let known = ["sha512", "sha384", "blake3"].contains(&algorithm);
            if known {
                return Err(ImageError::UnsupportedDigestAlgorithm {
                    what: what.to_owned(),
                    algorithm: algorithm.to_owned(),
                });
            }
            return Err(bad(value, what));
        }
        if !is_hex64(hex) {
            return Err(bad(value, what));
        }
        Ok(Self(value.to_owned()))
    }

    /// The digest of `bytes`' sha256 (`hash` is 32 bytes).
    pub(crate) fn from_sha256(hash: &[u8]) -> Self {
        Self(format!("{PREFIX}{}", hex::encode(hash)))
    }

    /// From a bare hex string (64 lower-case digits).
    pub fn from_hex(hex: &str, what: &str) -> Result<Self, ImageError> {
        if is_hex64(hex) {
            Ok(Self(format!("{PREFIX}{hex}")))
        } else {
            Err(bad(hex, what))
        }
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0[PREFIX.len()..]
    }

    /// The algorithm name, always `sha256`.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }
}

fn is_hex64(hex: &str) -> bool {
    hex.len() == HEX_LEN && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

fn bad(value: &str, what: &str) -> ImageError {
    ImageError::BadDigest {
        what: what.to_owned(),
        value: value.to_owned(),
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A digest as it appears in a JSON document, validated after parsing (so that the error can
/// say which document and field held it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDigest(pub String);

impl<'de> Deserialize<'de> for RawDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

impl RawDigest {
    pub fn validate(&self, what: &str) -> Result<Digest, ImageError> {
        Digest::parse(&self.0, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn accepts_sha256() {
        let d = Digest::parse(&format!("sha256:{HEX}"), "t").unwrap();
        assert_eq!(d.hex(), HEX);
        assert_eq!(d.to_string(), format!("sha256:{HEX}"));
    }

    #[test]
    fn rejects_bad_syntax() {
        for v in [
            String::new(),
            HEX.to_owned(),
            format!("sha256:{}", &HEX[1..]),
            format!("sha256:{}", HEX.to_uppercase()),
            format!("sha256:{HEX}0"),
            format!("SHA256:{HEX}"),
            format!("sha256:{}g", &HEX[1..]),
            format!("sha256:../../{}", &HEX[6..]),
        ] {
            let e = Digest::parse(&v, "layer 0").unwrap_err();
            assert!(matches!(e, ImageError::BadDigest { .. }), "{v}: {e}");
            assert!(e.to_string().contains("layer 0"), "{e}");
        }
    }

    #[test]
    fn names_unsupported_algorithm() {
        let e = Digest::parse(&format!("sha512:{HEX}{HEX}"), "config").unwrap_err();
        assert!(e.to_string().contains("sha512"), "{e}");
    }
}
