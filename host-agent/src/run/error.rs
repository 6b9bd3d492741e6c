//! Errors of `layerpass run`. Every message names what was wrong; a `#[source]` is never
//! repeated in the message.

use std::io;
use std::path::PathBuf;

use layerpass_protocols::status::{HasKind, Kind};

use crate::image::ImageError;

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
        }
    }
}
