//! The dm-verity mapping of a layer on a disk: what the guest loads into a `verity` target,
//! and its one validation.

use serde::{Deserialize, Serialize};

use crate::envelope::{self, MAX_SALT_LEN};
use crate::{HashAlgorithm, RootHash, TypeError};

/// What the kernel does when a block fails verification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CorruptionMode {
    /// The read fails with EIO (dm-verity's default).
    #[default]
    Eio,
    /// `restart_on_corruption`: the guest restarts.
    Restart,
    /// `panic_on_corruption`: the guest kernel panics.
    Panic,
}

/// dm-verity parameters of a layer whose hash tree follows the data on the same device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VerityMapping {
    /// Hash algorithm.
    pub algorithm: HashAlgorithm,
    /// Hash format: 0 (Chrome OS) or 1 (salt first, veritysetup's default).
    pub format: u32,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Number of data blocks (the data is the device's first `data_blocks` blocks).
    pub data_blocks: u64,
    /// Block (in hash-block units) of the root hash block on the same device.
    pub hash_start_block: u64,
    /// Salt (at most 256 bytes; may be empty).
    pub salt: Vec<u8>,
    /// Root hash, `algorithm.digest_size()` bytes.
    pub root_hash: Vec<u8>,
    /// What a corrupted block does.
    pub on_corruption: CorruptionMode,
}

impl VerityMapping {
    /// The root hash in lower-case hex.
    #[must_use]
    pub fn root_hash_hex(&self) -> String {
        hex::encode(&self.root_hash)
    }

    /// The root hash, checked against the algorithm.
    ///
    /// # Errors
    /// When its length does not match the algorithm.
    pub fn root_hash(&self) -> Result<RootHash, TypeError> {
        RootHash::from_bytes(self.root_hash.clone(), self.algorithm)
    }

    /// Checks what any guest kernel would reject late (or accept wrongly): block sizes
    /// from 512 to the page size, a hash block that holds two digests, the root hash's
    /// length, the salt's length, a tree after the data. The guest runs this on every plan.
    ///
    /// # Errors
    /// [`TypeError`] naming the parameter and the rule.
    pub fn validate(&self) -> Result<(), TypeError> {
        self.validate_on(envelope::LOGICAL_BLOCK_SIZES[0])
    }

    /// [`Self::validate`], and that both block sizes are at least the logical block size
    /// of the disk the layer is exported on (dm-verity refuses smaller ones). The host's
    /// plan builder runs this with each disk's block size.
    ///
    /// # Errors
    /// [`TypeError`] naming the parameter and the rule.
    pub fn validate_on(&self, logical_block_size: u32) -> Result<(), TypeError> {
        let bad = |parameter, value: String, reason: String| TypeError::Verity {
            parameter,
            value,
            reason,
        };
        if self.format > 1 {
            return Err(bad(
                "format",
                self.format.to_string(),
                "must be 0 or 1".into(),
            ));
        }
        envelope::check_logical_block_size(logical_block_size)?;
        envelope::check_guest_block_size(
            "data_block_size",
            self.data_block_size,
            logical_block_size,
        )?;
        envelope::check_guest_block_size(
            "hash_block_size",
            self.hash_block_size,
            logical_block_size,
        )?;
        let digest = self.algorithm.digest_size();
        if (self.hash_block_size as usize) < 2 * digest {
            return Err(bad(
                "hash_block_size",
                self.hash_block_size.to_string(),
                format!("smaller than two {} digests", self.algorithm),
            ));
        }
        self.root_hash()?;
        if self.salt.len() > MAX_SALT_LEN {
            return Err(bad(
                "salt",
                format!("of {} bytes", self.salt.len()),
                format!("at most {MAX_SALT_LEN} bytes"),
            ));
        }
        if self.data_blocks == 0 {
            return Err(bad("data_blocks", "0".into(), "a layer has data".into()));
        }
        let data_bytes = self
            .data_blocks
            .checked_mul(u64::from(self.data_block_size))
            .ok_or_else(|| {
                bad(
                    "data_blocks",
                    self.data_blocks.to_string(),
                    "overflows".into(),
                )
            })?;
        let hash_bytes = self
            .hash_start_block
            .checked_mul(u64::from(self.hash_block_size))
            .ok_or_else(|| {
                bad(
                    "hash_start_block",
                    self.hash_start_block.to_string(),
                    "overflows".into(),
                )
            })?;
        if hash_bytes < data_bytes {
            return Err(bad(
                "hash_start_block",
                self.hash_start_block.to_string(),
                format!(
                    "(byte {hash_bytes}) lies inside the data ({} blocks of {} bytes); the \
                     tree must follow the data",
                    self.data_blocks, self.data_block_size
                ),
            ));
        }
        Ok(())
    }
}
