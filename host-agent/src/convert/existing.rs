//! A layer already converted by an earlier run: its sidecar parses and names a sha256 root
//! hash, and its blob has exactly the size the sidecar's hash offset implies (image,
//! 4096-byte superblock area, tree). Anything else is converted again.

use std::fs;
use std::path::Path;

use layerpass_types::{HashAlgorithm, RootHash};

use crate::verity::{Geometry, Sidecar, VerityParams, sidecar_path};

/// A blob on disk with its sidecar: what the report says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BlobInfo {
    pub root_hash: RootHash,
    pub hash_offset: u64,
    pub size: u64,
}

/// The blob at `path` and its sidecar, if they are a complete earlier conversion.
pub(super) fn already_converted(path: &Path) -> Option<BlobInfo> {
    let side = sidecar_path(path);
    if !side.is_file() {
        return None;
    }
    let sidecar = match Sidecar::read(&side) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable sidecar; converting again");
            return None;
        }
    };
    let root_hash = match RootHash::parse(&sidecar.roothash, HashAlgorithm::Sha256) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(path = %side.display(), error = %e, "sidecar has no sha256 root hash; converting again");
            return None;
        }
    };
    let size = fs::metadata(path).ok().filter(fs::Metadata::is_file)?.len();
    let expected = expected_blob_size(sidecar.hashoffset)?;
    if size != expected {
        tracing::warn!(path = %path.display(), size, expected, "blob has the wrong size; converting again");
        return None;
    }
    Some(BlobInfo {
        root_hash,
        hash_offset: sidecar.hashoffset,
        size,
    })
}

/// Size of a containerd-layout blob whose verity superblock is at `hash_offset`.
fn expected_blob_size(hash_offset: u64) -> Option<u64> {
    let params = VerityParams::containerd();
    let block = u64::from(params.hash_block_size);
    if hash_offset == 0 || !hash_offset.is_multiple_of(block) {
        return None;
    }
    let geometry = Geometry::new(&params, hash_offset / block).ok()?;
    hash_offset
        .checked_add(block)?
        .checked_add(geometry.tree_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_sizes() {
        // Two data blocks: superblock area + one hash block (one block alone is its own
        // root: no tree).
        assert_eq!(expected_blob_size(8192), Some(8192 + 4096 + 4096));
        assert_eq!(expected_blob_size(4096), Some(4096 + 4096));
        assert_eq!(expected_blob_size(0), None);
        assert_eq!(expected_blob_size(4095), None);
    }

    #[test]
    fn only_a_complete_pair_counts() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("x.erofs");
        assert_eq!(already_converted(&blob), None, "nothing there");
        let root = "ab".repeat(32);
        Sidecar {
            roothash: root.clone(),
            hashoffset: 8192,
        }
        .write(&sidecar_path(&blob))
        .unwrap();
        assert_eq!(already_converted(&blob), None, "sidecar without blob");
        fs::write(&blob, vec![0u8; 4 * 4096]).unwrap();
        let found = already_converted(&blob).unwrap();
        assert_eq!(found.root_hash.to_hex(), root);
        assert_eq!((found.hash_offset, found.size), (8192, 4 * 4096));
        fs::write(&blob, vec![0u8; 3 * 4096]).unwrap();
        assert_eq!(already_converted(&blob), None, "blob cut short");
        fs::write(&blob, vec![0u8; 4 * 4096]).unwrap();
        Sidecar {
            roothash: "ab".into(),
            hashoffset: 8192,
        }
        .write(&sidecar_path(&blob))
        .unwrap();
        assert_eq!(already_converted(&blob), None, "not a sha256 root hash");
    }
}
