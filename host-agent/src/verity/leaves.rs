//! Leaf digests recorded while the data is being written, so that the tree is built
//! without reading the data a second time (the EROFS writer's "verity in the same pass").

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rayon::prelude::*;

use super::error::VerityError;
use super::hash::BlockHash;
use super::params::VerityParams;

/// Blocks per parallel task when recording.
const TASK_BLOCKS: usize = 64;

/// Where the digests are kept.
#[derive(Debug)]
enum Store {
    Memory(Vec<u8>),
    /// An anonymous file: the page cache holds the digests (1/128 of the data with
    /// sha256 and 4096-byte blocks), not the process.
    Spill(File),
}

/// The digest of every data block, by block index. Blocks may be recorded in any order and
/// recorded again (the last recording wins); every block must be recorded before use.
#[derive(Debug)]
pub struct LeafDigests {
    params: VerityParams,
    store: Store,
    /// One past the highest block recorded.
    blocks: u64,
    recorded: Vec<u64>,
}

impl LeafDigests {
    /// An empty record for data hashed with `params`, kept in memory.
    pub fn new(params: VerityParams) -> Result<Self, VerityError> {
        params.validate()?;
        Ok(Self {
            params,
            store: Store::Memory(Vec::new()),
            blocks: 0,
            recorded: Vec::new(),
        })
    }

    /// An empty record kept in an anonymous file in `dir` (for data of any size).
    pub fn spilled(params: VerityParams, dir: &Path) -> Result<Self, VerityError> {
        params.validate()?;
        let file = tempfile::tempfile_in(dir)
            .map_err(VerityError::io("create a digest spill file in", dir))?;
        Ok(Self {
            params,
            store: Store::Spill(file),
            blocks: 0,
            recorded: Vec::new(),
        })
    }

    pub fn params(&self) -> &VerityParams {
        &self.params
    }

    /// Hashes `data` (whole data blocks) as blocks `first..`, on all cores when large.
    ///
    /// # Errors
    /// `data` is not a whole number of data blocks.
    pub fn record(&mut self, first: u64, data: &[u8]) -> Result<(), VerityError> {
        self.record_with(first, data, true)
    }

    /// Like [`record`](Self::record), on the calling thread only (for a thread that is
    /// itself the parallelism, such as [`Follower`](super::Follower)).
    ///
    /// # Errors
    /// `data` is not a whole number of data blocks.
    pub fn record_here(&mut self, first: u64, data: &[u8]) -> Result<(), VerityError> {
        self.record_with(first, data, false)
    }

    fn record_with(&mut self, first: u64, data: &[u8], parallel: bool) -> Result<(), VerityError> {
        let bs = self.params.data_block_size as usize;
        if !data.len().is_multiple_of(bs) {
            return Err(VerityError::PartialBlock {
                path: "recorded data".into(),
                size: data.len() as u64,
                block_size: self.params.data_block_size,
                remainder: (data.len() % bs) as u64,
            });
        }
        let n = data.len() / bs;
        let end = first as usize + n;
        let d = self.params.algorithm.digest_size();
        if self.recorded.len() < end.div_ceil(64) {
            self.recorded.resize(end.div_ceil(64), 0);
        }
        self.blocks = self.blocks.max(end as u64);
        let mut spill_buf = Vec::new();
        let out = match &mut self.store {
            Store::Memory(v) => {
                if v.len() < end * d {
                    v.resize(end * d, 0);
                }
                &mut v[first as usize * d..end * d]
            }
            Store::Spill(_) => {
                spill_buf.resize(n * d, 0);
                &mut spill_buf[..]
            }
        };
        let (alg, kind, salt) = (
            self.params.algorithm,
            self.params.hash_type,
            self.params.salt.as_bytes(),
        );
        let hash = |(blocks, slots): (&[u8], &mut [u8])| {
            alg.hash_blocks(kind, salt, blocks, bs, slots);
        };
        if parallel && n >= 2 * TASK_BLOCKS {
            data.par_chunks(TASK_BLOCKS * bs)
                .zip(out.par_chunks_mut(TASK_BLOCKS * d))
                .for_each(hash);
        } else {
            hash((data, out));
        }
        if let Store::Spill(f) = &self.store {
            f.write_all_at(&spill_buf, first * d as u64)
                .map_err(VerityError::io("write", "the digest spill file"))?;
        }
        for i in first as usize..end {
            self.recorded[i / 64] |= 1 << (i % 64);
        }
        Ok(())
    }

    /// Blocks covered so far (one past the highest recorded block).
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Reads the digests of blocks `first..` into `out` (whole digests).
    pub(super) fn read(&self, first: u64, out: &mut [u8]) -> Result<(), VerityError> {
        let d = self.params.algorithm.digest_size();
        let start = first as usize * d;
        match &self.store {
            Store::Memory(v) => {
                let src = v.get(start..start + out.len()).ok_or_else(|| {
                    VerityError::Leaves(format!("no digests recorded past block {first}"))
                })?;
                out.copy_from_slice(src);
                Ok(())
            }
            Store::Spill(f) => f
                .read_exact_at(out, start as u64)
                .map_err(VerityError::io("read", "the digest spill file")),
        }
    }

    /// Checks that the digests are usable for `data_blocks` blocks hashed with `params`:
    /// same parameters, every block recorded, none beyond.
    pub(super) fn check(&self, params: &VerityParams, data_blocks: u64) -> Result<(), VerityError> {
        let mismatch = VerityError::Leaves;
        if *params != self.params {
            return Err(mismatch(
                "they were recorded with other dm-verity parameters".into(),
            ));
        }
        if self.blocks() != data_blocks {
            return Err(mismatch(format!(
                "they cover {} blocks, the data has {data_blocks}",
                self.blocks()
            )));
        }
        if let Some(gap) =
            (0..data_blocks as usize).find(|&i| self.recorded[i / 64] & (1 << (i % 64)) == 0)
        {
            return Err(mismatch(format!("data block {gap} was never recorded")));
        }
        Ok(())
    }
}
