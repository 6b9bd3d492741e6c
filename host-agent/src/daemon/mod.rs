//! The host daemon behind `layerpass serve`: one long-running service that exports a
//! container's layers to a VM on request, keeps every export in its crash-safe state and
//! serves the same sockets again after a restart.
//!
//! - [`config`]: the TOML configuration;
//! - [`naming`]: ids, serials and socket names;
//! - [`layers`] and [`verity`]: a request's source to verified layers;
//! - [`disks`]: the disks and the plan;
//! - [`core`]: export, unexport, resume, list, status.
//!
//! The commit point of an export is its state row: it is written (durably) only when the
//! disks are served and the plan was delivered if asked. A crash before it leaves socket
//! files, device nodes and scratch images without a row, which the next start removes
//! ([`core::Daemon::start`]); a crash after it is resumed.

pub mod config;
mod core;
pub mod disks;
#[cfg(test)]
mod disks_tests;
mod error;
pub mod layers;
pub mod naming;
mod request;
pub mod verity;

pub use core::Daemon;
pub use error::DaemonError;
pub use request::{
    DaemonStatus, ExportOutcome, ExportSpec, ListedExport, SourceSpec, UnexportOutcome,
};
