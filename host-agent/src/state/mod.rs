//! The daemon's crash-safe state: every export in an embedded transactional store (redb,
//! one file, `<state_dir>/state.redb`), committed durably before `Export` answers and
//! removed only when `Unexport` has undone everything. A restarted daemon serves the same
//! sockets again from it. The schema is versioned; a database written by a newer version is
//! refused rather than misread.

mod lock;
mod record;
mod store;

pub use lock::{LOCK_FILE, StateLock};
pub use record::{
    CompositeLayerRecord, DiskBacking, DiskRecord, DiskRole, ExportKey, ExportRecord,
    IndexTarRecord, MountRecord, SourceRecord,
};
pub use store::{DB_FILE, SCHEMA_VERSION, StateStore};

use std::path::PathBuf;

/// The state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another daemon holds the state directory.
    #[error(
        "state directory {} is in use by another layerpass daemon ({holder}); stop it first",
        state_dir.display()
    )]
    Locked {
        /// The directory.
        state_dir: PathBuf,
        /// What the lock file says (`pid N`).
        holder: String,
    },
    /// A file of the state cannot be read or written.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The database failed.
    #[error("state database {}: {source}", path.display())]
    Db {
        /// The database file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// The database was written by a newer layerpass.
    #[error(
        "state database {} has schema version {found}; this layerpass reads version {supported} \
         and older",
        path.display()
    )]
    Schema {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: u64,
        /// The newest this build reads.
        supported: u64,
    },
    /// A stored row cannot be decoded.
    #[error("state database {}: export {key}: {reason}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The row's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}
