//! Verification against a trusted root hash, naming the first bad block.
//!
//! The tree is checked from the root down: the top hash block against the root hash, then
//! every level against the already-checked level above, then every data block against
//! level 0. A corrupted block is therefore reported where it is, not as a symptom in a
//! block above it.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::Progress;
use super::build::{Blocks, batch_blocks, digest_blocks};
use super::error::VerityError;
use super::geometry::Geometry;
use super::hash::{BlockHash, RootHash};
use super::params::VerityParams;

/// The first block that does not match its parent hash (or the root hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadBlock {
    /// Data block `index` at byte `offset` of the data file.
    Data { index: u64, offset: u64 },
    /// Hash block `index` of tree level `level` (0 = leaves) at byte `offset` of the hash
    /// file.
    Hash {
        level: usize,
        index: u64,
        offset: u64,
    },
}

impl fmt::Display for BadBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Data { index, offset } => {
                write!(f, "data block {index} (byte offset {offset}) is corrupted")
            }
            Self::Hash {
                level,
                index,
                offset,
            } => write!(
                f,
                "hash block {index} of level {level} (byte offset {offset} of the hash area's \
                 file) is corrupted"
            ),
        }
    }
}

/// Where the data and the tree are.
#[derive(Debug, Clone, Copy)]
pub struct VerifyLocation<'a> {
    pub data: (&'a File, &'a Path),
    pub hash: (&'a File, &'a Path),
    /// Byte offset of the tree (after any superblock) in the hash file.
    pub tree_start: u64,
}

/// Checks every data and hash block against `root`. Returns
/// [`VerityError::Mismatch`] naming the first bad block.
pub fn verify_tree(
    loc: VerifyLocation<'_>,
    params: &VerityParams,
    geometry: &Geometry,
    root: &RootHash,
    progress: Option<Progress<'_>>,
) -> Result<(), VerityError> {
    let hbs = geometry.hash_block_size as usize;
    let digest = params.algorithm.digest_size();
    let data_src = Blocks {
        file: loc.data.0,
        path: loc.data.1,
        offset: 0,
        block_size: geometry.data_block_size as usize,
    };
    let mismatch = |b: BadBlock| Err(VerityError::Mismatch(b));

    let Some(top_index) = geometry.levels.len().checked_sub(1) else {
        let d = digest_blocks(data_src, 0, 1, params, progress)?;
        if d != root.as_bytes() {
            return mismatch(BadBlock::Data {
                index: 0,
                offset: 0,
            });
        }
        return Ok(());
    };

    let level_offset =
        |level: usize| loc.tree_start + geometry.levels[level].first_block * hbs as u64;
    let mut top = vec![0u8; hbs];
    loc.hash
        .0
        .read_exact_at(&mut top, level_offset(top_index))
        .map_err(VerityError::io("read", loc.hash.1))?;
    if params
        .algorithm
        .root_of(params.hash_type, params.salt.as_bytes(), &top)?
        != *root
    {
        return mismatch(BadBlock::Hash {
            level: top_index,
            index: 0,
            offset: level_offset(top_index),
        });
    }

    let hpb = geometry.hashes_per_block();
    for parent in (0..geometry.levels.len()).rev() {
        let (children, child_count, child_progress) = if parent == 0 {
            (data_src, geometry.data_blocks, progress)
        } else {
            let src = Blocks {
                file: loc.hash.0,
                path: loc.hash.1,
                offset: level_offset(parent - 1),
                block_size: hbs,
            };
            (src, geometry.levels[parent - 1].blocks, None)
        };
        let batch = batch_blocks(geometry, children.block_size);
        let mut parents = Vec::new();
        let mut first = 0u64;
        while first < child_count {
            let count = batch.min(child_count - first);
            let digests = digest_blocks(children, first, count, params, child_progress)?;
            let first_parent = first / hpb;
            parents.resize(count.div_ceil(hpb) as usize * hbs, 0);
            loc.hash
                .0
                .read_exact_at(
                    &mut parents,
                    level_offset(parent) + first_parent * hbs as u64,
                )
                .map_err(VerityError::io("read", loc.hash.1))?;
            for (i, d) in digests.chunks_exact(digest).enumerate() {
                let at = (i / hpb as usize) * hbs + (i % hpb as usize) * geometry.slot_size;
                if parents[at..at + digest] != *d {
                    let index = first + i as u64;
                    return mismatch(if parent == 0 {
                        BadBlock::Data {
                            index,
                            offset: index * u64::from(geometry.data_block_size),
                        }
                    } else {
                        BadBlock::Hash {
                            level: parent - 1,
                            index,
                            offset: level_offset(parent - 1) + index * hbs as u64,
                        }
                    });
                }
            }
            first += count;
        }
    }
    Ok(())
}
