//! Filesystem helpers of the mount and unmount sequences: directories created with their
//! undo recorded, removals that accept what is already gone, and the errnos that mean
//! "already gone" for each kind of teardown.

use std::fs;
use std::io;
use std::path::Path;

use rustix::io::Errno;

use crate::rollback::{Undo, UndoStack};

/// `umount` of what is no longer mounted: not a mount point, or no such path.
pub(super) const NOT_MOUNTED: &[Errno] = &[Errno::INVAL, Errno::NOENT];
/// A device node already removed.
pub(super) const NO_FILE: &[Errno] = &[Errno::NOENT];
/// A device-mapper device already removed.
pub(super) const NO_DEVICE: &[Errno] = &[Errno::NXIO, Errno::NODEV, Errno::NOENT];

/// Whether `err` carries one of `errnos`.
pub(super) fn is_errno(err: &io::Error, errnos: &[Errno]) -> bool {
    Errno::from_io_error(err).is_some_and(|n| errnos.contains(&n))
}

/// Treats the errnos in `gone` as success: what was to be undone is already gone (someone
/// unmounted it behind the agent's back, or an earlier attempt got that far). Keeps
/// `unmount` idempotent.
pub(super) fn done_if_gone(result: io::Result<()>, gone: &[Errno]) -> io::Result<()> {
    match result {
        Err(e) if is_errno(&e, gone) => {
            tracing::debug!(error = %e, "already gone");
            Ok(())
        }
        r => r,
    }
}

/// Creates `dir`; an existing empty directory (left by a crash) is taken over. Records the
/// removal.
pub(super) fn create_dir_new(dir: &Path, undo: &mut UndoStack) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if fs::read_dir(dir)?.next().is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not empty",
                ));
            }
        }
        Err(e) => return Err(e),
    }
    undo.push(Undo::RemoveDir(dir.to_owned()));
    Ok(())
}

/// Removes an (empty) directory; a missing one is fine.
pub(super) fn remove_dir_if_present(dir: &Path) -> io::Result<()> {
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes a file or symlink; a missing one is fine.
pub(super) fn remove_file_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_errnos_count_as_done_and_others_do_not() {
        let err = |e: Errno| Err(io::Error::from(e));
        assert!(done_if_gone(err(Errno::INVAL), NOT_MOUNTED).is_ok());
        assert!(done_if_gone(err(Errno::NXIO), NO_DEVICE).is_ok());
        assert!(done_if_gone(err(Errno::BUSY), NOT_MOUNTED).is_err());
        assert!(done_if_gone(err(Errno::INVAL), NO_FILE).is_err());
        assert!(done_if_gone(Err(io::Error::other("no errno")), NO_FILE).is_err());
    }
}
