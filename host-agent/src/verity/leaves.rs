//! Leaf digests recorded while the data is being written, so that the tree is built
//! without reading the data a second time (the EROFS writer's "verity in the same pass").

use rayon::prelude::*;

use super::error::VerityError;
use super::params::VerityParams;

/// Blocks per parallel task when recording.
const TASK_BLOCKS: usize = 64;

/// The digest of every data block, by block index. Blocks may be recorded in any order and
/// recorded again (the last recording wins); every block must be recorded before use.
#[derive(Debug, Clone)]
pub struct LeafDigests {
    params: VerityParams,
    digests: Vec<u8>,
    recorded: Vec<u64>,
}

impl LeafDigests {
    /// An empty record for data hashed with `params`.
    pub fn new(params: VerityParams) -> Result<Self, VerityError> {
        params.validate()?;
        Ok(Self {
            params,
            digests: Vec::new(),
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
        if self.digests.len() < end * d {
            self.digests.resize(end * d, 0);
            self.recorded.resize(end.div_ceil(64), 0);
        }
        let out = &mut self.digests[first as usize * d..end * d];
        let (alg, kind, salt) = (
            self.params.algorithm,
            self.params.hash_type,
            self.params.salt.as_bytes(),
        );
        let hash = |(blocks, slots): (&[u8], &mut [u8])| {
            for (b, slot) in blocks.chunks_exact(bs).zip(slots.chunks_exact_mut(d)) {
                alg.hash_block(kind, salt, b, slot);
            }
        };
        if n >= 2 * TASK_BLOCKS {
            data.par_chunks(TASK_BLOCKS * bs)
                .zip(out.par_chunks_mut(TASK_BLOCKS * d))
                .for_each(hash);
        } else {
            hash((data, out));
        }
        for i in first as usize..end {
            self.recorded[i / 64] |= 1 << (i % 64);
        }
        Ok(())
    }

    /// Blocks covered so far (one past the highest recorded block).
    pub fn blocks(&self) -> u64 {
        (self.digests.len() / self.params.algorithm.digest_size()) as u64
    }

    /// The digests of blocks `0..data_blocks`, checked: same parameters, every block
    /// recorded, none beyond.
    pub(super) fn digests_for(
        &self,
        params: &VerityParams,
        data_blocks: u64,
    ) -> Result<&[u8], VerityError> {
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
        Ok(&self.digests)
    }
}
