//! Tree parameters: algorithm, format, block sizes, salt.

use std::fmt;
use std::str::FromStr;

use super::error::VerityError;
use layerpass_types::envelope::check_format_block_size;

use super::hash::HashAlgorithm;

/// dm-verity hash type ("format" in veritysetup, "version" in the kernel table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashType {
    /// Original Chrome OS format: salt appended, digests packed.
    V0,
    /// Normal format: salt prepended, digests in power-of-two slots.
    #[default]
    V1,
}

impl HashType {
    /// The number used by veritysetup `--format`, the superblock and the kernel table.
    pub const fn number(self) -> u32 {
        match self {
            Self::V0 => 0,
            Self::V1 => 1,
        }
    }

    /// Parses the veritysetup `--format` number.
    pub fn from_number(n: u64) -> Result<Self, VerityError> {
        match n {
            0 => Ok(Self::V0),
            1 => Ok(Self::V1),
            other => Err(VerityError::UnknownFormat(other)),
        }
    }
}

/// A salt of at most 256 bytes (possibly empty: veritysetup `--salt=-`).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Salt(Vec<u8>);

impl Salt {
    /// Largest salt the superblock can hold.
    pub const MAX_LEN: usize = 256;

    /// Wraps salt bytes, refusing more than [`Self::MAX_LEN`].
    pub fn new(bytes: Vec<u8>) -> Result<Self, VerityError> {
        if bytes.len() > Self::MAX_LEN {
            return Err(VerityError::SaltTooLong { len: bytes.len() });
        }
        Ok(Self(bytes))
    }

    /// No salt.
    pub const fn none() -> Self {
        Self(Vec::new())
    }

    /// 32 zero bytes: the salt containerd and Kata use.
    pub fn zero32() -> Self {
        Self(vec![0; 32])
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Hex as the kernel table wants it: `-` for no salt.
    pub fn to_table_hex(&self) -> String {
        if self.0.is_empty() {
            "-".to_owned()
        } else {
            hex::encode(&self.0)
        }
    }
}

impl FromStr for Salt {
    type Err = VerityError;

    /// Hex, or `-` for no salt (veritysetup's spelling).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "-" || s.is_empty() {
            return Ok(Self::none());
        }
        let bytes = hex::decode(s).map_err(|_| VerityError::BadHex {
            what: "salt",
            value: s.to_owned(),
        })?;
        Self::new(bytes)
    }
}

impl fmt::Display for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_table_hex())
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Salt({})", self.to_table_hex())
    }
}

/// Everything that decides the tree bytes, apart from the data and the data block count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParams {
    pub algorithm: HashAlgorithm,
    pub hash_type: HashType,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub salt: Salt,
}

impl VerityParams {
    /// containerd's and Kata's parameters: sha256, format 1, 4096/4096, 32 zero bytes.
    pub fn containerd() -> Self {
        Self {
            algorithm: HashAlgorithm::Sha256,
            hash_type: HashType::V1,
            data_block_size: 4096,
            hash_block_size: 4096,
            salt: Salt::zero32(),
        }
    }

    /// Checks block sizes (what can be *formatted*: powers of two, 512..=65536, see
    /// `layerpass_types::envelope`; what a guest maps is narrower and checked when a plan
    /// is built) and that a hash block holds at least two digests, as the kernel requires.
    pub fn validate(&self) -> Result<(), VerityError> {
        check_format_block_size("data_block_size", self.data_block_size)?;
        check_format_block_size("hash_block_size", self.hash_block_size)?;
        let digest = self.algorithm.digest_size();
        if (self.hash_block_size as usize) < 2 * digest {
            return Err(VerityError::HashBlockTooSmall {
                hash_block_size: self.hash_block_size,
                algorithm: self.algorithm.name(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salt_parsing() {
        assert!(Salt::from_str("-").unwrap().is_empty());
        assert_eq!(Salt::from_str("00ff").unwrap().as_bytes(), &[0, 255]);
        assert!(matches!(
            Salt::from_str("0g"),
            Err(VerityError::BadHex { .. })
        ));
        assert!(matches!(
            Salt::from_str("abc"),
            Err(VerityError::BadHex { .. })
        ));
        assert!(matches!(
            Salt::from_str(&"00".repeat(257)),
            Err(VerityError::SaltTooLong { len: 257 })
        ));
        assert_eq!(
            Salt::from_str(&"00".repeat(256)).unwrap().as_bytes().len(),
            256
        );
    }

    #[test]
    fn block_sizes_are_checked() {
        let mut p = VerityParams::containerd();
        for bad in [0, 256, 1000, 4095, 131_072] {
            p.data_block_size = bad;
            assert!(
                matches!(
                    p.validate(),
                    Err(VerityError::Contract(layerpass_types::TypeError::Verity {
                        parameter: "data_block_size",
                        ..
                    }))
                ),
                "{bad}"
            );
        }
        p.data_block_size = 512;
        p.hash_block_size = 65536;
        p.validate().unwrap();
        p.algorithm = HashAlgorithm::Sha512;
        p.hash_block_size = 512;
        p.validate().unwrap();
    }
}
