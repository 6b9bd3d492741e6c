//! Mount syscalls: EROFS read-only, the scratch filesystem, tmpfs, and overlayfs (new
//! mount API with `lowerdir+` on Linux 6.8+, else legacy mount data with short relative
//! paths from a thread with its own working directory).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, mount, move_mount,
    unmount,
};

use crate::kernel::{MountSpec, OverlaySpec};
use crate::overlay;

/// Whether the running kernel's overlayfs takes `lowerdir+` (Linux 6.8).
pub fn kernel_has_lowerdir_plus(release: &str) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 8)
}

fn cstring(s: String) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount data"))
}

pub fn mount_spec(spec: &MountSpec, target: &Path) -> io::Result<()> {
    match spec {
        MountSpec::Erofs { source } => {
            mount(
                source,
                target,
                "erofs",
                MountFlags::RDONLY | MountFlags::NODEV,
                None,
            )?;
        }
        MountSpec::Disk { source, fs_type } => {
            // The scratch disk is the host's: its symlinks are never followed (an
            // `upper` symlink cannot redirect the overlay's upper), nor its set-uid bits
            // or device nodes honoured.
            mount(
                source,
                target,
                fs_type.as_str(),
                MountFlags::NODEV | MountFlags::NOSUID | MountFlags::NOSYMFOLLOW,
                None,
            )?;
        }
        MountSpec::Tmpfs { size_bytes } => {
            let data = cstring(format!("size={size_bytes},mode=0755"))?;
            mount(
                "tmpfs",
                target,
                "tmpfs",
                MountFlags::NODEV,
                Some(data.as_c_str()),
            )?;
        }
        MountSpec::Overlay(_) => {
            // The overlay goes on a directory the agent resolved and holds open
            // (`mount_overlay_at`), never on a path.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an overlay is mounted through a directory fd",
            ));
        }
    }
    Ok(())
}

/// Mounts the overlay `o` on the directory open as `target`, so nothing can swap the
/// path between the agent's checks and the mount. Linux 6.8+: the new mount API
/// (`fsopen` → one `fsconfig` `lowerdir+` per layer → `fsmount` → `move_mount` onto the
/// fd). Older kernels: legacy `mount(2)` data with short relative paths (page-size
/// checked) on a thread whose working directory is the container directory, onto
/// `/proc/self/fd/<fd>` (the magic link is the fd's own directory, not a path lookup).
pub fn mount_overlay_at(
    o: &OverlaySpec,
    target: BorrowedFd<'_>,
    lowerdir_plus: bool,
    page_size: usize,
) -> io::Result<()> {
    if lowerdir_plus {
        let mnt = overlay_fsconfig(o)?;
        move_mount(
            &mnt,
            "",
            target,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )?;
        Ok(())
    } else {
        overlay_legacy(o, target, page_size)
    }
}

fn overlay_fsconfig(o: &OverlaySpec) -> io::Result<rustix::fd::OwnedFd> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_set_string(&fs, "source", "overlay")?;
    for (key, value) in overlay::fsconfig_params(o) {
        match value {
            Some(v) => fsconfig_set_string(&fs, key, v.as_str())?,
            None => fsconfig_set_flag(&fs, key)?,
        }
    }
    fsconfig_create(&fs)?;
    tracing::debug!(
        layers = o.lowers.len(),
        "overlay through fsconfig lowerdir+"
    );
    Ok(fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )?)
}

/// Legacy mount(2) with relative lowerdirs: the paths are resolved against the working
/// directory, so the mount runs on a short-lived thread that first unshares its
/// filesystem context (`CLONE_FS`) and `chdir`s to the container directory; the agent's
/// other threads keep their working directory. The target is the fd's magic link.
fn overlay_legacy(o: &OverlaySpec, target: BorrowedFd<'_>, page_size: usize) -> io::Result<()> {
    let data = overlay::legacy_options(o, page_size)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    tracing::debug!(
        layers = o.lowers.len(),
        bytes = data.len(),
        page_size,
        "overlay through legacy mount data"
    );
    let data = cstring(data)?;
    let base = o.base.clone();
    let target = format!("/proc/self/fd/{}", target.as_raw_fd());
    std::thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            // SAFETY: only CLONE_FS is unshared (cwd, root, umask), never CLONE_FILES, so
            // file descriptors stay shared with every other thread (the target fd too);
            // the thread ends right after the mount.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }?;
            rustix::process::chdir(&base)?;
            mount(
                "overlay",
                target.as_str(),
                "overlay",
                MountFlags::empty(),
                Some(data.as_c_str()),
            )?;
            Ok(())
        })
        .join()
        .map_err(|_| io::Error::other("the overlay mount thread panicked"))?
    })
}

pub fn unmount_path(target: &Path) -> io::Result<()> {
    unmount(target, UnmountFlags::NOFOLLOW)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdir_plus_from_linux_6_8() {
        assert!(!kernel_has_lowerdir_plus("6.1.0-56-amd64"));
        assert!(!kernel_has_lowerdir_plus("5.15.0"));
        assert!(kernel_has_lowerdir_plus("6.8.0-rc1"));
        assert!(kernel_has_lowerdir_plus("6.12.48+deb13-amd64"));
        assert!(kernel_has_lowerdir_plus("7.0.0"));
        assert!(!kernel_has_lowerdir_plus("garbage"));
    }
}
