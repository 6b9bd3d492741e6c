//! Errors of computing reference values: which input, which layer, what was wrong.

use std::io;
use std::path::PathBuf;

use layerpass_protocols::status::{HasKind, Kind};

use crate::erofs::ErofsError;
use crate::image::ImageError;
use crate::verity::VerityError;

/// Computing reference values failed; nothing is left behind (temporary files are gone).
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot read the image {path}")]
    Image {
        path: PathBuf,
        #[source]
        source: ImageError,
    },
    #[error("no layers given")]
    NoLayers,
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A layer blob that does not decompress, or that does not match its digest.
    #[error("layer {index} ({name}): {reason}")]
    Layer {
        index: usize,
        name: String,
        reason: String,
    },
    #[error("layer {index} ({name}): its tar has diff id {actual}, but {expected} was expected")]
    DiffIdMismatch {
        index: usize,
        name: String,
        actual: String,
        expected: String,
    },
    #[error("layer {index} ({name}): the layerpass converter failed")]
    Convert {
        index: usize,
        name: String,
        #[source]
        source: Box<ErofsError>,
    },
    #[error("layer {index} ({name}): dm-verity")]
    Verity {
        index: usize,
        name: String,
        #[source]
        source: Box<VerityError>,
    },
    /// `mkfs.erofs` is missing, too old, or failed.
    #[error(transparent)]
    Mkfs(#[from] MkfsError),
}

/// The `mkfs.erofs` containerd's differ runs.
#[derive(Debug, thiserror::Error)]
pub enum MkfsError {
    #[error(
        "no mkfs.erofs found: pass --mkfs-erofs PATH (erofs-utils >= 1.8, the version of the \
         node whose root hashes you want)"
    )]
    NotFound,
    #[error("cannot run {command}")]
    Start {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command} --version` printed no version: {output:?}")]
    NoVersion { command: String, output: String },
    #[error(
        "{command} is erofs-utils {version}: containerd's differ needs >= 1.8 (`--tar=f`, \
         `--aufs`, `--sort=none`)"
    )]
    TooOld { command: String, version: String },
    #[error("layer {index} ({name}): `{command}` failed ({status}): {stderr}")]
    Failed {
        index: usize,
        name: String,
        command: String,
        status: String,
        stderr: String,
    },
}

impl ReferenceError {
    pub(super) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}

impl HasKind for ReferenceError {
    fn kind(&self) -> Kind {
        match self {
            Self::Image { source, .. } => source.kind(),
            Self::Io { source, .. } => Kind::of_io(source),
            Self::NoLayers
            | Self::Layer { .. }
            | Self::DiffIdMismatch { .. }
            | Self::Convert { .. } => Kind::InvalidArgument,
            Self::Verity { .. } => Kind::Internal,
            Self::Mkfs(MkfsError::NotFound) => Kind::NotFound,
            Self::Mkfs(MkfsError::TooOld { .. }) => Kind::FailedPrecondition,
            Self::Mkfs(_) => Kind::Internal,
        }
    }
}
