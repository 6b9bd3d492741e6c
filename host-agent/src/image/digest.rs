//! Content digests of image blobs: the one strict parser of `layerpass-types`, plus the rule
//! of this module that a blob's digest is sha256 (the only one it verifies while reading).

use serde::{Deserialize, Deserializer};

use super::error::ImageError;

pub use layerpass_types::{Digest, DigestAlgorithm};

/// Parses a blob digest; `what` names where it came from in the error. Only sha256 is
/// accepted: a valid sha512 digest is named as unsupported.
pub fn parse(value: &str, what: &str) -> Result<Digest, ImageError> {
    match Digest::parse(value) {
        Ok(d) if d.algorithm() == DigestAlgorithm::Sha256 => Ok(d),
        Ok(d) => Err(ImageError::UnsupportedDigestAlgorithm {
            what: what.to_owned(),
            algorithm: d.algorithm().name().to_owned(),
        }),
        Err(_) => {
            let algorithm = value.split_once(':').map(|(a, _)| a);
            match algorithm {
                Some(a @ ("sha384" | "blake3")) => Err(ImageError::UnsupportedDigestAlgorithm {
                    what: what.to_owned(),
                    algorithm: a.to_owned(),
                }),
                _ => Err(ImageError::BadDigest {
                    what: what.to_owned(),
                    value: value.to_owned(),
                }),
            }
        }
    }
}

/// A sha256 digest from its bare hex (64 lower-case digits).
pub fn from_hex(hex: &str, what: &str) -> Result<Digest, ImageError> {
    parse(&format!("sha256:{hex}"), what).map_err(|_| ImageError::BadDigest {
        what: what.to_owned(),
        value: hex.to_owned(),
    })
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
        parse(&self.0, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn accepts_sha256() {
        let d = parse(&format!("sha256:{HEX}"), "t").unwrap();
        assert_eq!(d.hex(), HEX);
        assert_eq!(d.to_string(), format!("sha256:{HEX}"));
        assert_eq!(from_hex(HEX, "t").unwrap(), d);
    }

    /// The shared table of both agents: every bad digest is refused here too, naming where
    /// it came from; a good sha512 one is named as unsupported for blobs.
    #[test]
    fn follows_the_shared_table() {
        for (value, good) in layerpass_types::digest::VECTORS {
            match parse(value, "layer 0") {
                Ok(d) => assert!(*good && d.algorithm() == DigestAlgorithm::Sha256, "{value}"),
                Err(ImageError::UnsupportedDigestAlgorithm { algorithm, .. }) => {
                    assert!(value.starts_with(&format!("{algorithm}:")), "{value}");
                }
                Err(e) => {
                    assert!(!*good, "{value}: {e}");
                    assert!(e.to_string().contains("layer 0"), "{e}");
                }
            }
        }
    }

    #[test]
    fn names_unsupported_algorithm() {
        let e = parse(&format!("sha512:{HEX}{HEX}"), "config").unwrap_err();
        assert!(e.to_string().contains("sha512"), "{e}");
    }
}
