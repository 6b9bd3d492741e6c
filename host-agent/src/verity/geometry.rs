//! Tree shape: levels, their positions and sizes (cryptsetup `hash_levels()`).

use super::error::VerityError;
use super::params::{HashType, VerityParams};

/// veritysetup's limit on tree depth (`VERITY_MAX_LEVELS`).
const MAX_LEVELS: usize = 63;

/// One level of the tree. Level 0 hashes the data blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// First hash block of the level, counted in hash blocks from the start of the tree.
    pub first_block: u64,
    /// Number of hash blocks in the level.
    pub blocks: u64,
}

/// The shape of a tree for given parameters and data block count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    pub data_blocks: u64,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    /// log2 of the number of digests per hash block.
    pub hashes_per_block_bits: u32,
    /// Bytes each digest occupies in a hash block.
    pub slot_size: usize,
    /// Levels, index 0 = leaves; stored top level first.
    pub levels: Vec<Level>,
}

impl Geometry {
    /// Computes the shape. `data_blocks` must be at least 1.
    pub fn new(params: &VerityParams, data_blocks: u64) -> Result<Self, VerityError> {
        params.validate()?;
        if data_blocks == 0 {
            return Err(VerityError::ZeroDataBlocks);
        }
        let digest = params.algorithm.digest_size();
        let per_block = params.hash_block_size as usize / digest;
        // floor(log2(per_block)); validate() guarantees per_block >= 2.
        let bits = usize::BITS - 1 - per_block.leading_zeros();
        let slot_size = match params.hash_type {
            HashType::V1 => digest.next_power_of_two(),
            HashType::V0 => digest,
        };

        let mut count = 0usize;
        while u64::from(bits) * (count as u64) < 64
            && (data_blocks - 1) >> (bits as usize * count) != 0
        {
            count += 1;
        }
        if count > MAX_LEVELS {
            return Err(VerityError::TooManyLevels { data_blocks });
        }
        let mut levels = vec![
            Level {
                first_block: 0,
                blocks: 0
            };
            count
        ];
        let mut position = 0u64;
        for i in (0..count).rev() {
            let shift = (i + 1) * bits as usize;
            if shift > 63 {
                return Err(VerityError::TooManyLevels { data_blocks });
            }
            let blocks = data_blocks.div_ceil(1u64 << shift);
            levels[i] = Level {
                first_block: position,
                blocks,
            };
            position = position
                .checked_add(blocks)
                .ok_or(VerityError::TooManyLevels { data_blocks })?;
        }
        // Both byte counts fit in u64 from here on (tree_bytes, data_bytes).
        let tree_fits = position
            .checked_mul(u64::from(params.hash_block_size))
            .is_some();
        let data_fits = data_blocks
            .checked_mul(u64::from(params.data_block_size))
            .is_some();
        if !tree_fits || !data_fits {
            return Err(VerityError::TooLarge { data_blocks });
        }
        Ok(Self {
            data_blocks,
            data_block_size: params.data_block_size,
            hash_block_size: params.hash_block_size,
            hashes_per_block_bits: bits,
            slot_size,
            levels,
        })
    }

    /// Digests per hash block.
    pub fn hashes_per_block(&self) -> u64 {
        1u64 << self.hashes_per_block_bits
    }

    /// Hash blocks in the whole tree.
    pub fn tree_blocks(&self) -> u64 {
        self.levels.iter().map(|l| l.blocks).sum()
    }

    /// Bytes of the whole tree (checked to fit by [`Geometry::new`]).
    pub fn tree_bytes(&self) -> u64 {
        self.tree_blocks() * u64::from(self.hash_block_size)
    }

    /// Bytes of data covered by the tree (checked to fit by [`Geometry::new`]).
    pub fn data_bytes(&self) -> u64 {
        self.data_blocks * u64::from(self.data_block_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verity::hash::HashAlgorithm;

    fn geo(n: u64) -> Geometry {
        Geometry::new(&VerityParams::containerd(), n).unwrap()
    }

    #[test]
    fn level_counts_match_cryptsetup() {
        assert!(geo(1).levels.is_empty());
        assert_eq!(
            geo(2).levels,
            vec![Level {
                first_block: 0,
                blocks: 1
            }]
        );
        assert_eq!(geo(128).levels.len(), 1);
        // 257 blocks: [L1: 1 block][L0: 3 blocks] (verity-erofs.md §1.5).
        assert_eq!(
            geo(257).levels,
            vec![
                Level {
                    first_block: 1,
                    blocks: 3
                },
                Level {
                    first_block: 0,
                    blocks: 1
                }
            ]
        );
        // 16385 blocks: 3 levels, 132 blocks (TV4).
        let g = geo(16385);
        assert_eq!(g.levels.len(), 3);
        assert_eq!(g.tree_blocks(), 132);
    }

    #[test]
    fn slots_and_per_block() {
        let mut p = VerityParams::containerd();
        p.algorithm = HashAlgorithm::Sha1;
        let g = Geometry::new(&p, 1000).unwrap();
        assert_eq!((g.hashes_per_block(), g.slot_size), (128, 32));
        p.hash_type = HashType::V0;
        let g = Geometry::new(&p, 1000).unwrap();
        assert_eq!((g.hashes_per_block(), g.slot_size), (128, 20));
        p.algorithm = HashAlgorithm::Sha512;
        p.hash_block_size = 512;
        let g = Geometry::new(&p, 1000).unwrap();
        assert_eq!((g.hashes_per_block(), g.slot_size), (8, 64));
    }

    #[test]
    fn byte_counts_beyond_u64_are_an_error() {
        // 2^61 blocks of 4096 bytes are 2^73 bytes: tree_bytes/data_bytes would overflow.
        assert!(matches!(
            Geometry::new(&VerityParams::containerd(), 1 << 61),
            Err(VerityError::TooLarge { data_blocks }) if data_blocks == 1 << 61
        ));
        let g = Geometry::new(&VerityParams::containerd(), 1 << 40).unwrap();
        assert_eq!(g.data_bytes(), 1 << 52);
    }

    #[test]
    fn zero_blocks_is_an_error() {
        assert!(matches!(
            Geometry::new(&VerityParams::containerd(), 0),
            Err(VerityError::ZeroDataBlocks)
        ));
    }
}
