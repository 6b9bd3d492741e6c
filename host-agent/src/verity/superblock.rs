//! The 512-byte veritysetup superblock (cryptsetup `lib/verity/verity.c`, `struct verity_sb`).

use std::path::Path;

use uuid::Uuid;

use super::error::VerityError;
use super::hash::HashAlgorithm;
use super::params::{HashType, Salt, VerityParams};

/// Size of the on-disk superblock; the tree starts at the next hash block boundary.
pub const SUPERBLOCK_SIZE: usize = 512;
const SIGNATURE: &[u8; 8] = b"verity\0\0";

/// A parsed veritysetup superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub params: VerityParams,
    pub data_blocks: u64,
    pub uuid: Uuid,
}

impl Superblock {
    /// Serialises exactly as veritysetup writes it.
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        b[0..8].copy_from_slice(SIGNATURE);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&self.params.hash_type.number().to_le_bytes());
        b[16..32].copy_from_slice(self.uuid.as_bytes());
        let name = self.params.algorithm.name().as_bytes();
        b[32..32 + name.len()].copy_from_slice(name);
        b[64..68].copy_from_slice(&self.params.data_block_size.to_le_bytes());
        b[68..72].copy_from_slice(&self.params.hash_block_size.to_le_bytes());
        b[72..80].copy_from_slice(&self.data_blocks.to_le_bytes());
        let salt = self.params.salt.as_bytes();
        // Salt::new caps the length at 256, so it fits in u16 and in the 256-byte field.
        b[80..82].copy_from_slice(&(salt.len() as u16).to_le_bytes());
        b[88..88 + salt.len()].copy_from_slice(salt);
        b
    }

    /// Parses and validates a superblock read from `path` at byte `offset`.
    pub fn parse(
        bytes: &[u8; SUPERBLOCK_SIZE],
        path: &Path,
        offset: u64,
    ) -> Result<Self, VerityError> {
        let bad = |reason: String| VerityError::BadSuperblock {
            path: path.to_owned(),
            offset,
            reason,
        };
        if &bytes[0..8] != SIGNATURE {
            return Err(bad("signature is not \"verity\"".into()));
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = u32_at(8);
        if version != 1 {
            return Err(bad(format!("unsupported superblock version {version}")));
        }
        let hash_type =
            HashType::from_number(u64::from(u32_at(12))).map_err(|e| bad(e.to_string()))?;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&bytes[16..32]);
        let name_bytes = &bytes[32..64];
        let end = name_bytes
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(name_bytes.len());
        let name = std::str::from_utf8(&name_bytes[..end])
            .map_err(|_| bad("algorithm name is not text".into()))?;
        let algorithm: HashAlgorithm = name
            .parse()
            .map_err(|e: layerpass_types::TypeError| bad(e.to_string()))?;
        let mut data_blocks_bytes = [0u8; 8];
        data_blocks_bytes.copy_from_slice(&bytes[72..80]);
        let data_blocks = u64::from_le_bytes(data_blocks_bytes);
        let salt_size = usize::from(u16::from_le_bytes([bytes[80], bytes[81]]));
        if salt_size > Salt::MAX_LEN {
            return Err(bad(format!("salt size {salt_size} exceeds 256")));
        }
        let params = VerityParams {
            algorithm,
            hash_type,
            data_block_size: u32_at(64),
            hash_block_size: u32_at(68),
            salt: Salt::new(bytes[88..88 + salt_size].to_vec()).map_err(|e| bad(e.to_string()))?,
        };
        params.validate().map_err(|e| bad(e.to_string()))?;
        if data_blocks == 0 {
            return Err(bad("data block count is 0".into()));
        }
        Ok(Self {
            params,
            data_blocks,
            uuid: Uuid::from_bytes(uuid),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let sb = Superblock {
            params: VerityParams {
                salt: Salt::new((0..32).collect()).unwrap(),
                ..VerityParams::containerd()
            },
            data_blocks: 256,
            uuid: Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
        };
        let b = sb.to_bytes();
        assert_eq!(&b[0..16], b"verity\0\0\x01\0\0\0\x01\0\0\0");
        assert_eq!(&b[32..39], b"sha256\0");
        assert_eq!(&b[64..72], &[0, 0x10, 0, 0, 0, 0x10, 0, 0]);
        assert_eq!(&b[72..82], &[0, 1, 0, 0, 0, 0, 0, 0, 32, 0]);
        assert_eq!(b[88], 0);
        assert_eq!(b[88 + 31], 31);
        assert!(b[120..].iter().all(|&x| x == 0));
        assert_eq!(Superblock::parse(&b, Path::new("x"), 0).unwrap(), sb);
    }

    #[test]
    fn rejects_garbage() {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        assert!(matches!(
            Superblock::parse(&b, Path::new("x"), 0),
            Err(VerityError::BadSuperblock { .. })
        ));
        b[0..8].copy_from_slice(SIGNATURE);
        b[8] = 1;
        b[12] = 1;
        b[32..38].copy_from_slice(b"md5sum");
        let err = Superblock::parse(&b, Path::new("x"), 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("md5sum"), "{err}");
    }
}
