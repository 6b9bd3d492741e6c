//! Streaming, parallel tree construction.
//!
//! Data is read once with positioned reads in chunks of about 256 KiB, one chunk per rayon
//! task, and hashed on all cores; each batch of digests (about 64 MiB of data) is packed into
//! hash blocks and written at its final place. Upper levels are read back from the output the
//! same way. Memory use is a few MiB whatever the input size.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rayon::prelude::*;

use super::Progress;
use super::error::VerityError;
use super::geometry::Geometry;
use super::hash::{BlockHash, RootHash};
use super::leaves::LeafDigests;
use super::params::VerityParams;

/// Bytes of source data one parallel task reads and hashes at a time.
const TASK_BYTES: usize = 256 * 1024;
/// Bytes of source data per batch (one pwrite of packed hash blocks per batch).
const BATCH_BYTES: u64 = 64 * 1024 * 1024;

/// A run of equal-sized blocks in a file.
#[derive(Clone, Copy)]
pub(super) struct Blocks<'a> {
    pub file: &'a File,
    pub path: &'a Path,
    /// Byte offset of block 0.
    pub offset: u64,
    pub block_size: usize,
}

impl Blocks<'_> {
    pub(super) fn read(&self, index: u64, buf: &mut [u8]) -> Result<(), VerityError> {
        let at = self.offset + index * self.block_size as u64;
        self.file
            .read_exact_at(buf, at)
            .map_err(VerityError::io("read", self.path))
    }
}

/// Digests of blocks `first..first + count` of `src`, back to back (`digest_size` each).
pub(super) fn digest_blocks(
    src: Blocks<'_>,
    first: u64,
    count: u64,
    params: &VerityParams,
    progress: Option<Progress<'_>>,
) -> Result<Vec<u8>, VerityError> {
    let digest = params.algorithm.digest_size();
    let per_task = (TASK_BYTES / src.block_size).max(1);
    let count_usize =
        usize::try_from(count).map_err(|_| VerityError::TooManyLevels { data_blocks: count })?;
    let mut out = vec![0u8; count_usize * digest];
    out.par_chunks_mut(per_task * digest)
        .enumerate()
        .try_for_each_init(
            || vec![0u8; per_task * src.block_size],
            |buf, (task, digests)| {
                let blocks = digests.len() / digest;
                let bytes = blocks * src.block_size;
                src.read(first + (task * per_task) as u64, &mut buf[..bytes])?;
                params.algorithm.hash_blocks(
                    params.hash_type,
                    params.salt.as_bytes(),
                    &buf[..bytes],
                    src.block_size,
                    digests,
                );
                if let Some(p) = progress {
                    p(bytes as u64);
                }
                Ok::<(), VerityError>(())
            },
        )?;
    Ok(out)
}

/// Number of source blocks per batch: a multiple of the hashes per block, about
/// [`BATCH_BYTES`] of source data.
pub(super) fn batch_blocks(geometry: &Geometry, src_block_size: usize) -> u64 {
    let hpb = geometry.hashes_per_block();
    let per_out_block = hpb * src_block_size as u64;
    hpb * (BATCH_BYTES / per_out_block).max(1)
}

/// Packs back-to-back digests into hash blocks (slots, zero padding).
fn pack(digests: &[u8], geometry: &Geometry, digest: usize) -> Vec<u8> {
    let hbs = geometry.hash_block_size as usize;
    let hpb = geometry.hashes_per_block() as usize;
    let n = digests.len() / digest;
    let mut out = vec![0u8; n.div_ceil(hpb) * hbs];
    for (i, d) in digests.chunks_exact(digest).enumerate() {
        let at = (i / hpb) * hbs + (i % hpb) * geometry.slot_size;
        out[at..at + digest].copy_from_slice(d);
    }
    out
}

/// Where the leaf digests come from.
#[derive(Clone, Copy)]
pub(super) enum Leaves<'a> {
    /// Hash the data blocks of this file (reported to the progress callback).
    Data(Blocks<'a>, Option<Progress<'a>>),
    /// Digests recorded while the data was written, one per data block.
    Digests(&'a LeafDigests),
}

/// Builds the tree for the first `geometry.data_blocks` blocks of `data` and writes it to
/// `out` starting at byte `tree_start` (top level first). Returns the root hash.
///
/// `data` and `out` may be the same file (tree appended after the data).
pub fn build_tree(
    data: (&File, &Path),
    out: (&File, &Path),
    tree_start: u64,
    params: &VerityParams,
    geometry: &Geometry,
    progress: Option<Progress<'_>>,
) -> Result<RootHash, VerityError> {
    let data_src = Blocks {
        file: data.0,
        path: data.1,
        offset: 0,
        block_size: geometry.data_block_size as usize,
    };
    build_from(
        Leaves::Data(data_src, progress),
        out,
        tree_start,
        params,
        geometry,
    )
}

/// Builds and writes the tree from `leaves`; returns the root hash.
pub(super) fn build_from(
    leaves: Leaves<'_>,
    out: (&File, &Path),
    tree_start: u64,
    params: &VerityParams,
    geometry: &Geometry,
) -> Result<RootHash, VerityError> {
    let digest = params.algorithm.digest_size();
    let hbs = geometry.hash_block_size as usize;
    if geometry.levels.is_empty() {
        // One data block: its digest is the root.
        return match leaves {
            Leaves::Data(src, progress) => {
                let mut block = vec![0u8; src.block_size];
                src.read(0, &mut block)?;
                if let Some(p) = progress {
                    p(block.len() as u64);
                }
                Ok(params
                    .algorithm
                    .root_of(params.hash_type, params.salt.as_bytes(), &block)?)
            }
            Leaves::Digests(d) => {
                let mut root = vec![0u8; digest];
                d.read(0, &mut root)?;
                Ok(RootHash::from_bytes(root, params.algorithm)?)
            }
        };
    }

    let write = |packed: &[u8], at: u64| {
        out.0
            .write_all_at(packed, at)
            .map_err(VerityError::io("write", out.1))
    };
    for (i, level) in geometry.levels.iter().enumerate() {
        let level_offset = tree_start + level.first_block * hbs as u64;
        let (src, src_count, src_progress) = match (&leaves, i) {
            (Leaves::Digests(d), 0) => {
                // Level 0 straight from the recorded digests, in batches of whole blocks.
                let per_batch = batch_blocks(geometry, geometry.data_block_size as usize);
                let mut chunk = Vec::new();
                let mut first = 0u64;
                while first < geometry.data_blocks {
                    let count = per_batch.min(geometry.data_blocks - first);
                    chunk.resize(count as usize * digest, 0);
                    d.read(first, &mut chunk)?;
                    write(
                        &pack(&chunk, geometry, digest),
                        level_offset + (first / geometry.hashes_per_block()) * hbs as u64,
                    )?;
                    first += count;
                }
                continue;
            }
            (Leaves::Data(src, progress), 0) => (*src, geometry.data_blocks, *progress),
            _ => {
                let below = geometry.levels[i - 1];
                let src = Blocks {
                    file: out.0,
                    path: out.1,
                    offset: tree_start + below.first_block * hbs as u64,
                    block_size: hbs,
                };
                (src, below.blocks, None)
            }
        };
        let batch = batch_blocks(geometry, src.block_size);
        let mut first = 0u64;
        while first < src_count {
            let count = batch.min(src_count - first);
            let digests = digest_blocks(src, first, count, params, src_progress)?;
            write(
                &pack(&digests, geometry, digest),
                level_offset + (first / geometry.hashes_per_block()) * hbs as u64,
            )?;
            first += count;
        }
    }

    let top = geometry.levels[geometry.levels.len() - 1];
    let mut block = vec![0u8; hbs];
    out.0
        .read_exact_at(&mut block, tree_start + top.first_block * hbs as u64)
        .map_err(VerityError::io("read", out.1))?;
    Ok(params
        .algorithm
        .root_of(params.hash_type, params.salt.as_bytes(), &block)?)
}
