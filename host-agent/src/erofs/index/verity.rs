//! The index's UUIDs and its dm-verity tree over `[metadata][tar][zeros to 4096]`: the
//! tar's digests were recorded while it was read; the metadata's are added in front of
//! them, the padding's after.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use super::{INDEX_BLOCK_SIZE, temp_in, uuids};
use crate::erofs::error::ErofsError;
use crate::erofs::format::{SUPER_END, reseal_superblock};
use crate::verity::{
    FormatOptions, HashTarget, LeafDigests, Salt, VerityParams, format_hash_file_from_leaves,
};

/// Bytes of metadata read back at a time.
const CHUNK: usize = 1 << 20;
/// The served disk pads `[metadata][tar]` to this (the tree's hash block size), so the
/// tree starts on a hash block.
const DISK_ALIGN: u64 = 4096;

/// dm-verity parameters of an index: sha256, format 1, 512-byte data blocks, 4096-byte
/// hash blocks, 32 zero bytes of salt.
pub fn index_verity_params() -> VerityParams {
    VerityParams {
        data_block_size: INDEX_BLOCK_SIZE as u32,
        hash_block_size: 4096,
        salt: Salt::zero32(),
        ..VerityParams::containerd()
    }
}

/// Gives the metadata (written with a zero UUID) its UUID, derived from its bytes and the
/// tar's length; returns that fingerprint.
pub fn seal_superblock(
    meta: &File,
    path: &Path,
    meta_bytes: u64,
    tar_bytes: u64,
) -> Result<Vec<u8>, ErofsError> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    while at < meta_bytes {
        let n = (meta_bytes - at).min(CHUNK as u64) as usize;
        meta.read_exact_at(&mut buf[..n], at)
            .map_err(ErofsError::io("read back", path))?;
        h.update(&buf[..n]);
        at += n as u64;
    }
    h.update(tar_bytes.to_le_bytes());
    let fingerprint = h.finalize().to_vec();
    let (erofs_uuid, _) = uuids(&fingerprint);
    let mut head = vec![0u8; SUPER_END.next_multiple_of(INDEX_BLOCK_SIZE) as usize];
    meta.read_exact_at(&mut head, 0)
        .map_err(ErofsError::io("read back", path))?;
    reseal_superblock(&mut head, *erofs_uuid.as_bytes());
    meta.write_all_at(&head, 0)
        .map_err(ErofsError::io("write", path))?;
    Ok(fingerprint)
}

/// The tree, in a temporary file, and where it goes on the disk.
#[derive(Debug)]
pub struct Tree {
    pub tree: NamedTempFile,
    pub root_hash: String,
    /// `M + tar_bytes` rounded up to 4096.
    pub hash_offset: u64,
    pub data_blocks: u64,
    pub tree_bytes: u64,
}

/// Completes `leaves` (the tar's blocks from 0) with the metadata's blocks in front and
/// the padding after, and writes the tree into a temporary file in `dir`.
pub fn write_tree(
    meta: &File,
    path: &Path,
    mut leaves: LeafDigests,
    meta_bytes: u64,
    tar_bytes: u64,
    fingerprint: &[u8],
    dir: &Path,
) -> Result<Tree, ErofsError> {
    let bs = INDEX_BLOCK_SIZE;
    let meta_blocks = meta_bytes / bs;
    let tar_blocks = tar_bytes.div_ceil(bs);
    leaves.shift(meta_blocks)?;
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    while at < meta_bytes {
        let n = (meta_bytes - at).min(CHUNK as u64) as usize;
        meta.read_exact_at(&mut buf[..n], at)
            .map_err(ErofsError::io("read back", path))?;
        leaves.record(at / bs, &buf[..n])?;
        at += n as u64;
    }
    let hash_offset = (meta_bytes + tar_bytes).next_multiple_of(DISK_ALIGN);
    let data_blocks = hash_offset / bs;
    let padding = data_blocks - meta_blocks - tar_blocks;
    if padding > 0 {
        leaves.record(
            meta_blocks + tar_blocks,
            &vec![0u8; (padding * bs) as usize],
        )?;
    }
    let tmp = temp_in(dir, ".tree.tmp")?;
    let (_, verity_uuid) = uuids(fingerprint);
    let opts = FormatOptions {
        params: index_verity_params(),
        superblock: true,
        uuid: Some(verity_uuid),
        hash_offset: Some(0),
        data_blocks: Some(data_blocks),
        target: HashTarget::File(tmp.path().to_owned()),
        pad: false,
        sidecar: false,
    };
    let report = format_hash_file_from_leaves(Path::new("[metadata][tar]"), &opts, &leaves)?;
    let tree_bytes = std::fs::metadata(tmp.path())
        .map_err(ErofsError::io("stat", tmp.path()))?
        .len();
    Ok(Tree {
        tree: tmp,
        root_hash: report.root_hash,
        hash_offset,
        data_blocks,
        tree_bytes,
    })
}
