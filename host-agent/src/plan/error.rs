//! Why a plan cannot be built.

use std::path::PathBuf;

use layerpass_types::TypeError;

use crate::export::DiskError;
use crate::verity::VerityError;

use layerpass_protocols::status::{HasKind, Kind};

/// A plan that cannot be built: each error names the layer (its file) or the field.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A field breaks a rule the guest would refuse it for.
    #[error("{what}")]
    Contract {
        /// The field or layer.
        what: String,
        /// The rule.
        #[source]
        source: TypeError,
    },
    /// The layer's verity parameters cannot be read (sidecar, superblock, tree file).
    #[error("layer {path}")]
    Verity {
        /// The layer blob.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: VerityError,
    },
    /// The layer file cannot be read or named.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The layer has no verity parameters the host can find.
    #[error(
        "layer {path}: no dm-verity parameters: keep its .dmverity sidecar beside it (as \
         `layerpass convert` and containerd write it), or plan it without verity on purpose"
    )]
    NoVerity {
        /// The layer blob.
        path: PathBuf,
    },
    /// A layer on a composite disk has neither a diff ID nor a root hash to name its
    /// partition by.
    #[error(
        "layer {path}: no identity to name its partition: give FILE@sha256:<diff ID>, name it \
         <64 hex>.erofs, or keep its .dmverity sidecar beside it"
    )]
    NoIdentity {
        /// The layer blob.
        path: std::path::PathBuf,
    },
    /// Two layers would be on disks with the same serial.
    #[error(
        "layers {first} and {second} would both be on the disk with serial {serial:?}: give \
         one of them =SERIAL"
    )]
    SerialCollision {
        /// The first layer file.
        first: PathBuf,
        /// The second.
        second: PathBuf,
        /// The serial they share.
        serial: String,
    },
    /// A plan needs at least one layer.
    #[error("a plan needs at least one layer")]
    NoLayers,
    /// The upper's disk is also a layer's disk.
    #[error("the upper's disk {serial:?} is also a layer disk")]
    UpperIsLayer {
        /// Its serial.
        serial: String,
    },
    /// A field has a value the guest cannot use (empty, zero, out of range).
    #[error("{what}: {reason}")]
    Invalid {
        /// The field.
        what: String,
        /// Why.
        reason: String,
    },
}

impl HasKind for PlanError {
    fn kind(&self) -> Kind {
        match self {
            Self::Verity { source, .. } => source.kind(),
            Self::Disk(e) => e.kind(),
            Self::NoVerity { .. } | Self::NoIdentity { .. } => Kind::FailedPrecondition,
            Self::Contract { .. }
            | Self::SerialCollision { .. }
            | Self::NoLayers
            | Self::UpperIsLayer { .. }
            | Self::Invalid { .. } => Kind::InvalidArgument,
        }
    }
}
