use std::io;
use std::path::PathBuf;

use layerpass_protocols::status::{HasKind, Kind};

/// Errors of the Kata vhost-user store. Messages leave the cause out: it is the source.
#[derive(Debug, thiserror::Error)]
pub enum KataStoreError {
    /// A store directory cannot be created, or a file cannot be created in it.
    #[error("kata store directory {path} is not writable")]
    NotWritable {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// An export name that cannot be a file name in the store.
    #[error("kata store name {name:?} is not usable: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A minor that does not fit a `dev_t`.
    #[error("minor {minor} is larger than {max}")]
    InvalidMinor {
        /// The minor.
        minor: u32,
        /// The largest minor.
        max: u32,
    },
    /// Every minor of the vhost-user-blk major is taken.
    #[error("every minor 0..={max} of major 241 is in use")]
    MinorsExhausted {
        /// The largest minor.
        max: u32,
    },
    /// Something is already at the node's path.
    #[error("{path} already exists")]
    Exists {
        /// The path.
        path: PathBuf,
    },
    /// Another node of the store already has this device number: Kata would resolve
    /// the first of the two by name.
    #[error("device {major}:{minor} is already used by {other}")]
    MinorInUse {
        /// The major.
        major: u32,
        /// The minor.
        minor: u32,
        /// The node that has it.
        other: PathBuf,
    },
    /// A file operation on the store failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done (`mknod`, `remove`, `read directory`, `stat`).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// No node has this device number (Kata: "Required device node (241:N) doesn't exist
    /// under directory ...").
    #[error("required device node ({major}:{minor}) doesn't exist under directory {dir}")]
    NoDeviceNode {
        /// The major.
        major: u32,
        /// The minor.
        minor: u32,
        /// The devices directory.
        dir: PathBuf,
    },
    /// The node exists but its socket does not (Kata returns the `stat` error).
    #[error("vhost-user socket {socket} of device node {node} does not exist")]
    NoSocket {
        /// The device node that matched.
        node: PathBuf,
        /// The socket it names.
        socket: PathBuf,
        /// The `stat` error.
        #[source]
        source: io::Error,
    },
}

impl HasKind for KataStoreError {
    fn kind(&self) -> Kind {
        match self {
            Self::InvalidName { .. } | Self::InvalidMinor { .. } => Kind::InvalidArgument,
            Self::MinorsExhausted { .. } => Kind::Unavailable,
            Self::Exists { .. } | Self::MinorInUse { .. } => Kind::AlreadyExists,
            Self::NoDeviceNode { .. } | Self::NoSocket { .. } => Kind::NotFound,
            Self::NotWritable { source, .. } | Self::Io { source, .. } => Kind::of_io(source),
        }
    }
}
