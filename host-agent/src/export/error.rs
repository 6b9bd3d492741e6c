use std::io;
use std::path::PathBuf;

use layerpass_protocols::status::{HasKind, Kind};

/// Errors of exported disks.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("range at byte {offset} of length {len} is outside the disk of {size} bytes")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("the disk is read-only")]
    ReadOnly,
    #[error("{0} is not supported by this disk")]
    Unsupported(&'static str),
    #[error("{path} is empty")]
    Empty { path: PathBuf },
    #[error("{what} is invalid: {reason}")]
    Invalid { what: String, reason: String },
    #[error(
        "{path} changed size while exported: expected at least {expected} bytes, found {found}"
    )]
    Shrunk {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("layer {path}")]
    Verity {
        path: PathBuf,
        #[source]
        source: crate::verity::VerityError,
    },
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl DiskError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}

impl HasKind for DiskError {
    fn kind(&self) -> Kind {
        match self {
            Self::Io { source, .. } => Kind::of_io(source),
            Self::Verity { source, .. } => source.kind(),
            Self::OutOfRange { .. } | Self::Empty { .. } | Self::Invalid { .. } => {
                Kind::InvalidArgument
            }
            Self::ReadOnly => Kind::PermissionDenied,
            Self::Unsupported(_) => Kind::FailedPrecondition,
            Self::Shrunk { .. } => Kind::FailedPrecondition,
        }
    }
}
