//! The cheap check that a layer's root hash belongs to its tree: hash the tree's top block
//! (one hash block, stored first) and compare with the root hash. It reads one block, not
//! the blob: a sidecar that names another tree's root, or a tree written over, is caught at
//! export; a changed data block is caught by dm-verity in the guest, at the read.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use layerpass_types::VerityMapping;

use super::error::VerityError;
use super::hash::BlockHash;
use super::params::HashType;

/// Checks that the hash of the block at `offset` of `path` (the tree's top level, one hash
/// block of `mapping`'s size) is `mapping`'s root hash.
pub fn check_top_block(
    path: &Path,
    offset: u64,
    mapping: &VerityMapping,
) -> Result<(), VerityError> {
    let kind = HashType::from_number(u64::from(mapping.format))?;
    let mut block = vec![0u8; mapping.hash_block_size as usize];
    let f = File::open(path).map_err(VerityError::io("open", path))?;
    f.read_exact_at(&mut block, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            VerityError::TruncatedHashArea {
                path: path.to_owned(),
                size: f.metadata().map_or(0, |m| m.len()),
                needed: offset.saturating_add(mapping.hash_block_size.into()),
            }
        } else {
            VerityError::io("read", path)(e)
        }
    })?;
    let found = mapping.algorithm.root_of(kind, &mapping.salt, &block)?;
    if found.as_bytes() == mapping.root_hash.as_slice() {
        return Ok(());
    }
    Err(VerityError::RootMismatch {
        path: path.to_owned(),
        offset,
        expected: hex::encode(&mapping.root_hash),
        found: found.to_hex(),
    })
}
