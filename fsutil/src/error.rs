//! The one error of this crate: which operation failed on which path, and why.

use std::io;
use std::path::PathBuf;

/// A file-system operation that failed. The fields are public so that callers can fold it
/// into their own error types with the same wording.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {path}")]
pub struct FsError {
    /// What was being done, e.g. `rename into`, `sync directory`.
    pub op: &'static str,
    /// The file or directory it was done to.
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self { op, path, source }
    }
}
