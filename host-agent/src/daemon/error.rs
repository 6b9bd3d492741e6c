//! Everything an export can fail with, each naming the thing, each with its protocol kind
//! (the ttrpc code the API answers with).

use std::path::PathBuf;

use layerpass_protocols::status::{HasKind, Kind};

use crate::containerd::MountListError;
use crate::convert::ImageConvertError;
use crate::export::DiskError;
use crate::guest::GuestError;
use crate::kata::KataStoreError;
use crate::plan::PlanError;
use crate::state::{ExportKey, StateError};
use crate::verity::VerityError;
use crate::vhost::VhostError;

/// Why an export, an unexport or the daemon's start failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A sandbox or container id outside the naming rule.
    #[error("{what} {value:?}: {reason}")]
    BadId {
        /// `sandbox id` or `container id`.
        what: &'static str,
        /// The id as given.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// The request is malformed (no source, an unknown enum value...).
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// The (sandbox, container) pair is exported already.
    #[error("container {} of sandbox {} is exported already", .0.container, .0.sandbox)]
    Exists(ExportKey),
    /// The mount list cannot be used.
    #[error("containerd mount list: {0}")]
    MountList(#[from] MountListError),
    /// The source has no layers.
    #[error("{0} has no layers to export")]
    NoLayers(String),
    /// A layer blob, image or scratch image that is not there.
    #[error("{what} {} does not exist", path.display())]
    Missing {
        /// `layer blob`, `image`, `dm-verity sidecar`, `rwlayer image`.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// A path that is not a regular file where one is needed.
    #[error("{what} {} is not a regular file", path.display())]
    NotAFile {
        /// What it should be.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// `verity = "require-sidecar"` and a layer has no sidecar.
    #[error(
        "layer {} has no dm-verity sidecar ({}) and the daemon requires one (verity = \
         \"require-sidecar\"; \"compute\" builds the tree instead)",
        blob.display(),
        sidecar.display()
    )]
    NoSidecar {
        /// The blob.
        blob: PathBuf,
        /// Where the sidecar was looked for.
        sidecar: PathBuf,
    },
    /// A layer's verity metadata does not check out.
    #[error("layer {}: {source}", blob.display())]
    Verity {
        /// The blob.
        blob: PathBuf,
        /// What is wrong.
        #[source]
        source: VerityError,
    },
    /// The plan cannot be built.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A disk cannot be opened or made.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The image cannot be converted.
    #[error(transparent)]
    Image(#[from] ImageConvertError),
    /// A socket path too long for `sun_path`.
    #[error(
        "socket path {} is {len} bytes, longer than a unix socket address holds (107); choose \
         a shorter run_dir or Kata store path",
        path.display()
    )]
    SocketPath {
        /// The path.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The Kata vhost-user store failed.
    #[error(transparent)]
    Kata(#[from] KataStoreError),
    /// A disk cannot be served.
    #[error("cannot serve {}: {source}", socket.display())]
    Serve {
        /// The socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: VhostError,
    },
    /// The guest agent cannot be reached or refused the plan.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A file or directory of the daemon cannot be made or removed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The daemon is shutting down.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

impl DaemonError {
    pub(crate) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io { what, path, source }
    }
}

impl HasKind for DaemonError {
    fn kind(&self) -> Kind {
        match self {
            Self::BadId { .. } | Self::BadRequest(_) | Self::MountList(_) | Self::NoLayers(_) => {
                Kind::InvalidArgument
            }
            Self::Exists(_) => Kind::AlreadyExists,
            Self::Missing { .. } => Kind::NotFound,
            Self::NotAFile { .. } => Kind::InvalidArgument,
            Self::NoSidecar { .. } | Self::SocketPath { .. } => Kind::FailedPrecondition,
            // a sidecar that is not one: InvalidArgument; a root hash that is not the tree's:
            // FailedPrecondition; an I/O error: its errno's kind
            Self::Verity { source, .. } => source.kind(),
            Self::Plan(e) => e.kind(),
            Self::Disk(e) => e.kind(),
            Self::Image(e) => e.kind(),
            Self::Kata(e) => e.kind(),
            Self::Serve { source, .. } => source.kind(),
            Self::Guest(e) => e.kind(),
            Self::State(_) => Kind::Internal,
            Self::Io { source, .. } => Kind::of_io(source),
            Self::ShuttingDown => Kind::Unavailable,
        }
    }
}
