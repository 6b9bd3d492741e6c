//! `layerpass run`: a container image in a microVM through verified passthrough layers.
//!
//! The image's layers are converted into the cache (reproducible EROFS with dm-verity,
//! keyed by diff ID), exported with the daemon's own code, and served over vhost-user-blk
//! to a QEMU guest booted from Debian's cloud kernel and an initramfs holding busybox, the
//! static guest agent and the project's init ([`guest`]). The plan, the process and (in
//! confidential mode) the reference values travel in a cpio appended to that initramfs —
//! the part a TEE measures at launch — never over an API: the guest agent has no call that
//! runs commands. The agent mounts the rootfs, runs the command in its own mount namespace
//! and reports over virtio-serial ([`status`]); the command's output streams to the
//! terminal. See `docs/run.md`.

pub mod error;
pub mod export;
pub mod guest;
pub mod options;
pub mod process;
pub mod reference;
pub mod report;
pub mod runner;
pub mod sample;
pub mod status;
pub mod vm;

pub use error::RunError;
pub use options::{AccelChoice, RunOptions};
pub use report::RunReport;
pub use runner::{Notify, RunNote, run};
