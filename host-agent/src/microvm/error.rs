//! What can go wrong preparing or booting a microVM.

use std::path::PathBuf;

/// A guest asset, a tool or QEMU failed.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A program the microVM needs is not installed.
    #[error("{tool} not found (Debian package {package})")]
    ToolMissing {
        /// The program.
        tool: String,
        /// The Debian package that has it.
        package: String,
    },
    /// A program ran and failed (or could not be started).
    #[error("{command} failed: {detail}")]
    Command {
        /// The command line, shortened.
        command: String,
        /// Exit status and stderr, or why it could not start.
        detail: String,
    },
    /// A file or directory could not be used.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `create`, ...).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A guest asset is not what it must be (a kernel without modules, a missing module,
    /// a dynamically linked agent, ...).
    #[error("{0}")]
    Asset(String),
}

impl VmError {
    /// A closure for `map_err` on an I/O result about `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}
