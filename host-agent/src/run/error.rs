//! Errors of `layerpass run`. Every message names what was wrong; a `#[source]` is never
//! repeated in the message.

use std::io;
use std::path::PathBuf;

use layerpass_protocols::status::{HasKind, Kind};

use crate::api::ApiError;
use crate::attest::ReferenceError;
use crate::convert::ImageConvertError;
use crate::daemon::DaemonError;
use crate::image::ImageError;
use crate::microvm::VmError;

/// Errors preparing or running a container image in a microVM.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file operation failed; `what` says which ("create", "write", "rename into", ...).
    #[error("cannot {what} {path}")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An external program did not do what was expected of it.
    #[error("{tool}: {message}")]
    Tool { tool: String, message: String },
    /// Reading the image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The image config is not what an OCI image config must be.
    #[error("image config: {0}")]
    BadConfig(String),
    /// The image has nothing to run and the user gave no command.
    #[error("the image has no Entrypoint or Cmd and no command was given")]
    NoCommand,
    /// An environment entry given by the user is not `KEY=VALUE`.
    #[error("environment entry {entry:?} is not KEY=VALUE")]
    BadEnv { entry: String },
    /// The working directory of the process is not an absolute path.
    #[error("working directory {workdir:?} ({from}) is not an absolute path")]
    RelativeWorkdir { workdir: String, from: &'static str },
    /// A directory to be created already holds something.
    #[error("{path} already exists and is not an empty directory")]
    NotEmpty { path: PathBuf },
    /// An option that cannot be used.
    #[error("{0}")]
    BadOption(String),
    /// The guest agent binary cannot be used.
    #[error("guest agent {0}")]
    Agent(String),
    /// A guest asset, a tool or QEMU failed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// A layer cannot be converted.
    #[error("conversion: {0}")]
    Convert(#[from] ImageConvertError),
    /// The reference values (confidential runs) cannot be computed.
    #[error("reference values: {0}")]
    Reference(#[from] ReferenceError),
    /// The export failed.
    #[error("export: {0}")]
    Daemon(#[from] DaemonError),
    /// The running daemon's API failed.
    #[error("daemon API: {0}")]
    Api(#[from] ApiError),
    /// The guest kernel lacks a filesystem or target layerpass needs.
    #[error("{0}")]
    Kernel(String),
    /// The VM did not boot, or stopped before the command ended.
    #[error("VM: {0}")]
    Boot(String),
    /// The guest agent refused or failed a stage (the mount, the process).
    #[error("guest {stage} failed ({kind}): {message}")]
    Guest {
        /// `ports`, `plan`, `mount` or `process`.
        stage: String,
        /// The status kind, e.g. `PermissionDenied`.
        kind: String,
        /// What the agent said.
        message: String,
    },
    /// SIGINT or SIGTERM: everything was stopped and removed.
    #[error("interrupted")]
    Interrupted,
}

impl RunError {
    pub(crate) fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}

impl From<layerpass_fsutil::FsError> for RunError {
    fn from(e: layerpass_fsutil::FsError) -> Self {
        Self::Io {
            what: e.op.to_owned(),
            path: e.path,
            source: e.source,
        }
    }
}

impl HasKind for RunError {
    fn kind(&self) -> Kind {
        match self {
            Self::Io { source, .. } => Kind::of_io(source),
            Self::Tool { .. } => Kind::FailedPrecondition,
            Self::Image(e) => e.kind(),
            Self::BadConfig(_)
            | Self::NoCommand
            | Self::BadEnv { .. }
            | Self::RelativeWorkdir { .. } => Kind::InvalidArgument,
            Self::NotEmpty { .. } => Kind::AlreadyExists,
            Self::BadOption(_) => Kind::InvalidArgument,
            Self::Agent(_) | Self::Vm(_) | Self::Kernel(_) => Kind::FailedPrecondition,
            Self::Convert(e) => e.kind(),
            Self::Reference(e) => e.kind(),
            Self::Daemon(e) => e.kind(),
            Self::Api(e) => e.kind(),
            Self::Boot(_) => Kind::Internal,
            Self::Guest { kind, .. } => [
                Kind::InvalidArgument,
                Kind::NotFound,
                Kind::AlreadyExists,
                Kind::FailedPrecondition,
                Kind::PermissionDenied,
                Kind::Unavailable,
            ]
            .into_iter()
            .find(|k| k.name() == kind)
            .unwrap_or(Kind::Internal),
            Self::Interrupted => Kind::Unavailable,
        }
    }
}
