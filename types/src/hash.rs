//! dm-verity's hash algorithms and root hashes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::TypeError;

/// Hash algorithms veritysetup and the kernel accept that layerpass supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum HashAlgorithm {
    /// SHA-1 (legacy).
    Sha1,
    /// SHA-256: what containerd, Kata and veritysetup use by default.
    #[default]
    Sha256,
    /// SHA-512.
    Sha512,
}

impl HashAlgorithm {
    /// Every algorithm.
    pub const ALL: [Self; 3] = [Self::Sha1, Self::Sha256, Self::Sha512];

    /// Digest size in bytes (a root hash's length).
    #[must_use]
    pub const fn digest_size(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// The name as veritysetup, the superblock and the kernel's verity table spell it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgorithm {
    type Err = TypeError;

    /// `sha1`, `sha256` or `sha512`, in any case (veritysetup's `--hash` is case-blind).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| TypeError::UnknownAlgorithm(s.to_owned()))
    }
}

/// A dm-verity root hash: the digest of the top hash block, as many bytes as its
/// algorithm's digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RootHash(Vec<u8>);

impl RootHash {
    /// Parses a root hash given in hex (either case) for `algorithm`.
    ///
    /// # Errors
    /// [`TypeError::BadRootHash`] when it is not hex or has the wrong length.
    pub fn parse(hex_str: &str, algorithm: HashAlgorithm) -> Result<Self, TypeError> {
        let expected = algorithm.digest_size() * 2;
        if hex_str.len() != expected {
            return Err(TypeError::BadRootHash {
                value: hex_str.to_owned(),
                reason: format!(
                    "{} hex digits, {} needs {expected}",
                    hex_str.len(),
                    algorithm.name()
                ),
            });
        }
        hex::decode(hex_str)
            .map(Self)
            .map_err(|_| TypeError::BadRootHash {
                value: hex_str.to_owned(),
                reason: "not hex".into(),
            })
    }

    /// Wraps raw digest bytes, checking their length for `algorithm`.
    ///
    /// # Errors
    /// [`TypeError::Verity`] (`root_hash`) on a wrong length.
    pub fn from_bytes(bytes: Vec<u8>, algorithm: HashAlgorithm) -> Result<Self, TypeError> {
        if bytes.len() == algorithm.digest_size() {
            Ok(Self(bytes))
        } else {
            Err(TypeError::Verity {
                parameter: "root_hash",
                value: format!("of {} bytes", bytes.len()),
                reason: format!("{} needs {}", algorithm.name(), algorithm.digest_size()),
            })
        }
    }

    /// The raw digest bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lower-case hex, as veritysetup prints it.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl fmt::Display for RootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for RootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootHash({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms() {
        assert_eq!("SHA256".parse::<HashAlgorithm>(), Ok(HashAlgorithm::Sha256));
        assert_eq!("sha1".parse::<HashAlgorithm>(), Ok(HashAlgorithm::Sha1));
        assert!(matches!(
            "md5".parse::<HashAlgorithm>(),
            Err(TypeError::UnknownAlgorithm(_))
        ));
        for a in HashAlgorithm::ALL {
            assert_eq!(a.name().parse::<HashAlgorithm>(), Ok(a));
        }
    }

    #[test]
    fn root_hashes() {
        let good = "ab".repeat(32);
        let r = RootHash::parse(&good, HashAlgorithm::Sha256).unwrap();
        assert_eq!(r.to_hex(), good);
        assert_eq!(
            RootHash::parse(&good.to_uppercase(), HashAlgorithm::Sha256).unwrap(),
            r
        );
        let e = RootHash::parse("abcd", HashAlgorithm::Sha256).unwrap_err();
        assert!(e.to_string().contains("sha256 needs 64"), "{e}");
        let bad = format!("{}zz", "ab".repeat(31));
        assert!(RootHash::parse(&bad, HashAlgorithm::Sha256).is_err());
        assert!(RootHash::from_bytes(vec![0; 20], HashAlgorithm::Sha1).is_ok());
        let e = RootHash::from_bytes(vec![0; 20], HashAlgorithm::Sha256).unwrap_err();
        assert_eq!(
            e.to_string(),
            "verity root_hash of 20 bytes: sha256 needs 32"
        );
    }
}
