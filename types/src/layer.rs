//! A layer's identity: its dm-verity root hash; its diff ID (the digest of the uncompressed
//! tar) when known. OCI input knows the diff ID; containerd's mount lists carry only paths.
//! A root hash is never put where a digest belongs.

use std::fmt;

use crate::{Digest, RootHash};

/// Who a layer is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LayerId {
    /// The root hash of the layer's dm-verity tree: what identifies it.
    pub root_hash: RootHash,
    /// The digest of the uncompressed tar, when the input carried it.
    pub diff_id: Option<Digest>,
}

impl LayerId {
    /// The layer's partition name on a composite disk ([`crate::naming::partition_name`]).
    #[must_use]
    pub fn partition_name(&self) -> String {
        let hex = self
            .diff_id
            .as_ref()
            .map_or_else(|| self.root_hash.to_hex(), |d| d.hex().to_owned());
        crate::naming::partition_name_of_hex(&hex)
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.diff_id {
            Some(d) => write!(f, "{d} (root hash {})", self.root_hash),
            None => write!(f, "diff ID unknown (root hash {})", self.root_hash),
        }
    }
}
