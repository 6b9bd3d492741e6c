//! The container's one process, as `layerpass-guest run` starts it: `process.json`
//! ([`spec`]), the user ([`user`]), files of the rootfs reached inside it ([`rootfs`]),
//! and the child in its own mount namespace, chrooted into the rootfs ([`spawn`]).
//!
//! Nothing here knows the mount plan or the status port: [`run_in_rootfs`] takes any
//! directory as the rootfs, which is how the tests run it on the host.

pub mod rootfs;
pub mod spawn;
pub mod spec;
pub mod user;

use std::io;

use layerpass_protocols::status::{HasKind, Kind};

pub use self::spawn::{Exit, run_in_rootfs};
pub use self::spec::ProcessSpec;
pub use self::user::UserError;

/// Why the process could not be started (a command that is not found or not executable
/// is not an error: it exits 127 or 126, as with runc).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// `process.json` is malformed; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The user or group cannot be resolved in the container.
    #[error(transparent)]
    User(#[from] UserError),
    /// Preparing the process on the guest failed (`what` names the file).
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A step of the child's setup (namespace, mounts, chroot, ids) failed.
    #[error("setting up the container: {step}")]
    Setup {
        /// The step.
        step: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl ProcessError {
    /// An I/O failure while doing `what`.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

impl HasKind for ProcessError {
    fn kind(&self) -> Kind {
        match self {
            Self::Invalid(_) | Self::User(_) => Kind::InvalidArgument,
            Self::Io { source, .. } | Self::Setup { source, .. } => Kind::of_io(source),
        }
    }
}
