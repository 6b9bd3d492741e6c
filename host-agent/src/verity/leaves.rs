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
    /// Blocks before this one are in `head`; `store` holds block `offset + i` at `i`.
    offset: u64,
    /// Digests of blocks `0..offset` (see [`shift`](Self::shift)).
    head: Vec<u8>,
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
            offset: 0,
            head: Vec::new(),
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
            offset: 0,
            head: Vec::new(),
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
        if self.recorded.len() < end.div_ceil(64) {
            self.recorded.resize(end.div_ceil(64), 0);
        }
        self.blocks = self.blocks.max(end as u64);
        // blocks below `offset` go to `head`, the rest to the store
        let split = (self.offset.saturating_sub(first) as usize).min(n);
        if split > 0 {
            self.hash_into_head(first, &data[..split * bs], parallel);
        }
        if split < n {
            self.hash_into_store(
                first + split as u64 - self.offset,
                &data[split * bs..],
                parallel,
            )?;
        }
        for i in first as usize..end {
            self.recorded[i / 64] |= 1 << (i % 64);
        }
        Ok(())
    }

    fn hash_into_head(&mut self, first: u64, data: &[u8], parallel: bool) {
        let (bs, d) = self.sizes();
        let end = first as usize + data.len() / bs;
        if self.head.len() < end * d {
            self.head.resize(end * d, 0);
        }
        let (alg, kind, salt) = (
            self.params.algorithm,
            self.params.hash_type,
            self.params.salt.as_bytes(),
        );
        hash_all(
            alg,
            kind,
            salt,
            bs,
            d,
            data,
            &mut self.head[first as usize * d..end * d],
            parallel,
        );
    }

    fn sizes(&self) -> (usize, usize) {
        (
            self.params.data_block_size as usize,
            self.params.algorithm.digest_size(),
        )
    }

    /// Hashes `data` into the store at index `first` (block `offset + first`).
    fn hash_into_store(
        &mut self,
        first: u64,
        data: &[u8],
        parallel: bool,
    ) -> Result<(), VerityError> {
        let (bs, d) = self.sizes();
        let n = data.len() / bs;
        let end = first as usize + n;
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
        hash_all(alg, kind, salt, bs, d, data, out, parallel);
        if let Store::Spill(f) = &self.store {
            f.write_all_at(&spill_buf, first * d as u64)
                .map_err(VerityError::io("write", "the digest spill file"))?;
        }
        Ok(())
    }

    /// Moves every digest recorded so far `by` blocks up, as if `by` blocks had been
    /// inserted before block 0: the tar index records a tar's blocks before it knows how
    /// many metadata blocks will precede them. Blocks `0..by` are then unrecorded (record
    /// them next); the digests are not moved, only renumbered.
    ///
    /// # Errors
    /// The record was shifted already.
    pub fn shift(&mut self, by: u64) -> Result<(), VerityError> {
        if self.offset != 0 || !self.head.is_empty() {
            return Err(VerityError::Leaves(
                "the digests were shifted already".into(),
            ));
        }
        if by == 0 {
            return Ok(());
        }
        self.offset = by;
        self.blocks += by;
        let (q, r) = ((by / 64) as usize, (by % 64) as u32);
        let old = std::mem::take(&mut self.recorded);
        let mut new = vec![0u64; (self.blocks as usize).div_ceil(64) + 1];
        for (j, &w) in old.iter().enumerate() {
            new[j + q] |= w << r;
            if r > 0 {
                new[j + q + 1] |= w >> (64 - r);
            }
        }
        new.truncate((self.blocks as usize).div_ceil(64));
        self.recorded = new;
        Ok(())
    }

    /// Blocks covered so far (one past the highest recorded block).
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Reads the digests of blocks `first..` into `out` (whole digests).
    pub(super) fn read(&self, first: u64, out: &mut [u8]) -> Result<(), VerityError> {
        let d = self.params.algorithm.digest_size();
        if first < self.offset {
            let start = first as usize * d;
            let n = (self.offset as usize * d - start).min(out.len());
            let src = self.head.get(start..start + n).ok_or_else(|| {
                VerityError::Leaves(format!("no digests recorded at block {first}"))
            })?;
            let (h, rest) = out.split_at_mut(n);
            h.copy_from_slice(src);
            if rest.is_empty() {
                return Ok(());
            }
            return self.read(first + (n / d) as u64, rest);
        }
        let start = (first - self.offset) as usize * d;
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

/// Hashes the blocks of `data` into `out` (one digest each), on all cores when asked and
/// large.
#[allow(
    clippy::too_many_arguments,
    reason = "the parts of the parameters, split for borrows"
)]
fn hash_all(
    alg: super::hash::HashAlgorithm,
    kind: super::params::HashType,
    salt: &[u8],
    bs: usize,
    d: usize,
    data: &[u8],
    out: &mut [u8],
    parallel: bool,
) {
    let hash = |(blocks, slots): (&[u8], &mut [u8])| {
        alg.hash_blocks(kind, salt, blocks, bs, slots);
    };
    if parallel && data.len() / bs >= 2 * TASK_BLOCKS {
        data.par_chunks(TASK_BLOCKS * bs)
            .zip(out.par_chunks_mut(TASK_BLOCKS * d))
            .for_each(hash);
    } else {
        hash((data, out));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn params() -> VerityParams {
        VerityParams {
            data_block_size: 512,
            ..VerityParams::containerd()
        }
    }

    #[test]
    fn shifted_digests_equal_digests_recorded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300 * 512u32).map(|i| (i % 251) as u8).collect();
        for by in [1u64, 3, 64, 67, 200] {
            let head = &data[..by as usize * 512];
            let tail = &data[by as usize * 512..];
            let mut whole = LeafDigests::new(params()).unwrap();
            whole.record(0, &data).unwrap();
            let mut shifted = LeafDigests::spilled(params(), dir.path()).unwrap();
            shifted.record(0, tail).unwrap();
            shifted.shift(by).unwrap();
            // unrecorded until the head comes
            assert!(shifted.check(&params(), 300).is_err());
            shifted.record(0, head).unwrap();
            shifted.check(&params(), 300).unwrap();
            let (mut a, mut b) = (vec![0u8; 300 * 32], vec![0u8; 300 * 32]);
            whole.read(0, &mut a).unwrap();
            shifted.read(0, &mut b).unwrap();
            assert_eq!(a, b, "shift by {by}");
            let (mut a, mut b) = (vec![0u8; 10 * 32], vec![0u8; 10 * 32]);
            whole.read(by - 1, &mut a).unwrap();
            shifted.read(by - 1, &mut b).unwrap();
            assert_eq!(a, b, "across the shift by {by}");
            assert!(shifted.shift(1).is_err());
        }
    }
}
