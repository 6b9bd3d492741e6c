//! What the export side needs from an index's metadata file: its length, the superblock's
//! block size and block count, and so the length the tar must have.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::erofs::error::ErofsError;
use crate::erofs::format::{INDEX_BLOCK_BITS, SUPER_MAGIC, SUPER_OFFSET};

/// The superblock of an index's metadata (`OUT` of `convert layer --index`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    pub path: PathBuf,
    /// Bytes of the metadata file (`M`).
    pub meta_bytes: u64,
    /// `blocks`: 512-byte blocks of metadata and tar together.
    pub blocks: u32,
    /// `extra_devices`: 0 for ours (a containerd tar-index blob has 1).
    pub extra_devices: u16,
}

impl IndexInfo {
    /// Reads and checks `meta`: EROFS magic, 512-byte blocks, a whole number of blocks,
    /// `blocks` covering at least the metadata.
    pub fn read(meta: &Path) -> Result<Self, ErofsError> {
        let f = File::open(meta).map_err(ErofsError::io("open", meta))?;
        let meta_bytes = f.metadata().map_err(ErofsError::io("stat", meta))?.len();
        let mut sb = [0u8; 128];
        f.read_exact_at(&mut sb, SUPER_OFFSET as u64)
            .map_err(|_| not_index(meta, "too short for an EROFS superblock".into()))?;
        if u32::from_le_bytes([sb[0], sb[1], sb[2], sb[3]]) != SUPER_MAGIC {
            return Err(ErofsError::NotErofs {
                path: meta.to_owned(),
            });
        }
        if sb[12] != INDEX_BLOCK_BITS {
            return Err(not_index(
                meta,
                format!("its blocks are 2^{} bytes, not 512", sb[12]),
            ));
        }
        let blocks = u32::from_le_bytes([sb[36], sb[37], sb[38], sb[39]]);
        if !meta_bytes.is_multiple_of(512) || u64::from(blocks) * 512 < meta_bytes {
            return Err(not_index(
                meta,
                format!("{meta_bytes} bytes do not fit its {blocks} blocks of 512 bytes"),
            ));
        }
        Ok(Self {
            path: meta.to_owned(),
            meta_bytes,
            blocks,
            extra_devices: u16::from_le_bytes([sb[86], sb[87]]),
        })
    }

    /// The tar's length rounded up to 512: `blocks * 512 - M`.
    pub fn tar_len_padded(&self) -> u64 {
        u64::from(self.blocks) * 512 - self.meta_bytes
    }
}

fn not_index(meta: &Path, reason: String) -> ErofsError {
    ErofsError::NotAnIndex {
        path: meta.to_owned(),
        reason,
    }
}
