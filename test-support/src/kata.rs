//! Kata Containers' Go runtime's lookup of a vhost-user store entry
//! (`getVhostUserHostPath`), written out independently of the daemon's `kata` module so that
//! the tests check the daemon against Kata's contract rather than against itself: scan
//! `<store>/block/devices/` for the node whose `st_rdev` is the device number, take its file
//! name, expect the socket `<store>/block/sockets/<same name>`.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The socket Kata would attach for device number `rdev`, or `None` when Kata would fail
/// (no node with that number, or no socket of that name).
#[must_use]
pub fn resolve_like_kata(store: &Path, rdev: u64) -> Option<PathBuf> {
    for e in std::fs::read_dir(store.join("block/devices")).ok()? {
        let e = e.ok()?;
        if std::fs::metadata(e.path()).ok()?.rdev() == rdev {
            let sock = store.join("block/sockets").join(e.file_name());
            return std::fs::metadata(&sock)
                .ok()
                .filter(|m| m.file_type().is_socket())
                .map(|_| sock);
        }
    }
    None
}

/// The device number of `major:minor`, as `st_rdev` holds it.
#[must_use]
pub fn rdev(major: u32, minor: u32) -> u64 {
    libc::makedev(major, minor)
}
