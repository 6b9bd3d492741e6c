//! dm-verity hash trees, bit-identical to `veritysetup format`.
//!
//! The format (cryptsetup `lib/verity/verity_hash.c`, kernel `dm-verity-target.c`):
//! every data block is hashed as `H(salt ‖ block)` (format 1) or `H(block ‖ salt)`
//! (format 0); digests fill hash blocks (`2^floor(log2(hbs / digest))` per block, each in a
//! power-of-two slot for format 1, packed for format 0, zero padding after); every level is
//! hashed the same way until one block remains, whose hash is the root. Levels are stored top
//! level first. An optional 512-byte veritysetup superblock precedes the tree, padded to one
//! hash block.
//!
//! The module is plain files and buffers: [`build`] streams the data once and hashes on all
//! cores, [`verify`] names the first bad block, [`format`] places the tree (appended in
//! containerd's layout, or in a separate hash file) without ever leaving a half-written file.

mod build;
mod check;
mod error;
mod follow;
mod format;
pub mod fuzz_harness;
mod geometry;
mod hash;
mod leaves;
mod params;
mod sidecar;
mod superblock;
mod top;
mod verify;

#[cfg(test)]
mod tests;

pub use build::build_tree;
pub use check::{VerifyOptions, VerifyReport, verify_file};
pub use error::VerityError;
pub use follow::{Follower, WrittenReporter};
pub use format::{
    FormatOptions, FormatReport, HashTarget, format_file, format_file_from_leaves,
    format_hash_file_from_leaves,
};
pub use geometry::{Geometry, Level};
pub use hash::{HashAlgorithm, RootHash};
pub use leaves::LeafDigests;
pub use params::{HashType, Salt, VerityParams};
pub use sidecar::{Sidecar, sidecar_path};
pub use superblock::{SUPERBLOCK_SIZE, Superblock};
pub use top::check_top_block;
pub use verify::{BadBlock, VerifyLocation, verify_tree};

/// Progress callback: called with the number of data bytes just hashed.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);
