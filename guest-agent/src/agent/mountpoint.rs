//! The rootfs mount point. A plan names it relative to the agent's rootfs root
//! (`--rootfs-root`, chosen on the agent's own command line); the agent resolves it one
//! component at a time with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_XDEV)` from an fd of the root, creating what is missing, checks that the
//! final directory is empty and mounts the overlay through that fd. So a plan cannot
//! reach outside the root (the run directory, `/etc`), follow a symlink, cross into a
//! mount (another container's rootfs) or swap the path between the check and the mount.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use layerpass_protocols::status::Kind;
use rustix::fd::OwnedFd;
use rustix::fs::{CWD, Dir, FileType, Mode, OFlags, ResolveFlags, fstat, mkdirat, openat, openat2};
use rustix::io::Errno;

use crate::error::{AgentError, Step};
use crate::rollback::{Undo, UndoStack};

/// A mount point resolved beneath the rootfs root.
#[derive(Debug)]
pub(super) struct ResolvedMountPoint {
    /// The directory, open; the overlay is mounted through it.
    pub(super) fd: OwnedFd,
    /// `<rootfs root>/<mount point>`, for messages, records and the unmount.
    pub(super) path: PathBuf,
    /// Directories created on the way, outermost first (removed again on unmount).
    pub(super) created_dirs: Vec<PathBuf>,
}

fn denied(rel: &Path, why: impl std::fmt::Display) -> AgentError {
    AgentError::new(
        Kind::PermissionDenied,
        Step::Overlay,
        format!("mount_point {}: {why}", rel.display()),
    )
}

/// The resolution every component gets: beneath the directory, no symlinks (nor magic
/// links), no mount crossings.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Opens `name` in `dir` as an `O_PATH` fd (a symlink is opened as itself, not
/// followed) and checks that it is a directory: `ELOOP` for a symlink, `ENOTDIR` for
/// anything else.
fn open_dir_beneath(dir: &OwnedFd, name: &Path) -> rustix::io::Result<OwnedFd> {
    let fd = openat2(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        RESOLVE,
    )?;
    match FileType::from_raw_mode(fstat(&fd)?.st_mode) {
        FileType::Directory => Ok(fd),
        FileType::Symlink => Err(Errno::LOOP),
        _ => Err(Errno::NOTDIR),
    }
}

/// Resolves `rel` (already validated: plain names) beneath `root`, creating missing
/// directories (mode 0755, their removal recorded in `undo`), and checks that the final
/// directory is empty. Refusals are `PermissionDenied` naming `mount_point`.
pub(super) fn resolve(
    root: &Path,
    rel: &Path,
    undo: &mut UndoStack,
) -> Result<ResolvedMountPoint, AgentError> {
    let io_err = |what: String, e: Errno| AgentError::io(Step::Overlay, what, io::Error::from(e));
    let mut cur = openat(
        CWD,
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(format!("opening the rootfs root {}", root.display()), e))?;
    let mut path = root.to_owned();
    let mut shown = PathBuf::new();
    let mut created_dirs = Vec::new();
    for component in rel.components() {
        let Component::Normal(name) = component else {
            return Err(denied(rel, "is not a relative path of plain names"));
        };
        let name = Path::new(name);
        path.push(name);
        shown.push(name);
        let opened = match open_dir_beneath(&cur, name) {
            Err(Errno::NOENT) => match mkdirat(&cur, name, Mode::from_raw_mode(0o755)) {
                Ok(()) => {
                    undo.push(Undo::RemoveDir(path.clone()));
                    created_dirs.push(path.clone());
                    open_dir_beneath(&cur, name)
                }
                Err(Errno::EXIST) => open_dir_beneath(&cur, name),
                Err(e) => Err(e),
            },
            r => r,
        };
        cur = opened.map_err(|e| match e {
            Errno::LOOP => denied(rel, format!("{} is a symlink", shown.display())),
            Errno::XDEV => denied(
                rel,
                format!(
                    "{} is a mount point (another container's rootfs or a system mount)",
                    shown.display()
                ),
            ),
            Errno::NOTDIR => denied(rel, format!("{} is not a directory", shown.display())),
            e => io_err(format!("opening {}", path.display()), e),
        })?;
    }
    let listing = openat(
        &cur,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .and_then(Dir::new)
    .map_err(|e| io_err(format!("reading {}", path.display()), e))?;
    let entries = listing;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(format!("reading {}", path.display()), e))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            return Err(denied(
                rel,
                "is not empty: mounting there would hide its contents",
            ));
        }
    }
    Ok(ResolvedMountPoint {
        fd: cur,
        path,
        created_dirs,
    })
}

/// Mount points in use (and being mounted), relative to the rootfs root → container id.
/// One container's mount point never lies inside or above another's.
#[derive(Debug, Default)]
pub(super) struct MountPoints(BTreeMap<PathBuf, String>);

impl MountPoints {
    /// Takes `rel` for `container`; refuses it (`PermissionDenied`) when it is, contains or
    /// lies inside another container's mount point.
    pub(super) fn reserve(&mut self, rel: &Path, container: &str) -> Result<(), AgentError> {
        if let Some((other, owner)) = self
            .0
            .iter()
            .find(|(p, _)| p.starts_with(rel) || rel.starts_with(p))
        {
            return Err(denied(
                rel,
                format!(
                    "overlaps container {owner}'s rootfs {} (a rootfs never lies inside another)",
                    other.display()
                ),
            ));
        }
        self.0.insert(rel.to_owned(), container.to_owned());
        Ok(())
    }

    /// Lets `rel` go if `container` holds it.
    pub(super) fn release(&mut self, rel: &Path, container: &str) {
        if self.0.get(rel).is_some_and(|c| c == container) {
            self.0.remove(rel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_never_nest() {
        let mut m = MountPoints::default();
        m.reserve(Path::new("a"), "a").unwrap();
        m.reserve(Path::new("ab"), "ab").unwrap();
        for (rel, owner) in [("a/etc", "a"), ("a", "a"), ("ab/x/y", "ab")] {
            let err = m.reserve(Path::new(rel), "x").unwrap_err();
            assert_eq!(err.kind(), Kind::PermissionDenied);
            assert!(
                err.to_string()
                    .contains(&format!("container {owner}'s rootfs")),
                "{err}"
            );
        }
        m.reserve(Path::new("b/c"), "b").unwrap();
        assert!(m.reserve(Path::new("b"), "x").is_err());
        m.release(Path::new("b/c"), "someone else");
        assert!(m.reserve(Path::new("b"), "x").is_err());
        m.release(Path::new("b/c"), "b");
        m.reserve(Path::new("b"), "x").unwrap();
    }
}
