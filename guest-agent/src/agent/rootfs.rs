//! A container's rootfs over its mounted layers: the writable upper (scratch disk,
//! encrypted scratch disk or tmpfs), short links to the layers' mounts, and the overlay on the mount point.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use layerpass_protocols::status::Kind;
use rustix::fs::{CWD, FileType, Mode, OFlags, ResolveFlags, fstat, mkdirat, openat, openat2};
use rustix::io::Errno;

use super::fsops::create_dir_new;
use super::mountpoint::ResolvedMountPoint;
use super::{Agent, state_err};
use crate::error::{AgentError, Step};
use crate::kernel::{MountSpec, OverlaySpec};
use crate::layers::LayerRecord;
use crate::plan::{MountPlan, UpperSpec};
use crate::rollback::{Undo, UndoStack};
use crate::state::UpperRecord;

impl Agent {
    /// Mounts the upper under `<dir>/upper` (the scratch filesystem, the encrypted scratch
    /// disk or a tmpfs) with `upper/` and `work/` inside. `container_id` names the
    /// device-mapper devices of an encrypted upper.
    pub(super) fn mount_upper(
        &self,
        upper: &UpperSpec,
        container_id: &str,
        dir: &Path,
        undo: &mut UndoStack,
    ) -> Result<UpperRecord, AgentError> {
        let upper_mount = dir.join("upper");
        create_dir_new(&upper_mount, undo).map_err(|e| state_err("creating", &upper_mount, e))?;
        let (spec, device, dm_devices) = match upper {
            UpperSpec::Disk { disk, fs_type } => {
                let dev = self.find_disk(disk, Step::Upper)?;
                let path = dev.path.clone();
                (
                    MountSpec::Disk {
                        source: dev.path,
                        fs_type: fs_type.clone(),
                    },
                    Some(path),
                    Vec::new(),
                )
            }
            UpperSpec::Tmpfs { size_bytes } => (
                MountSpec::Tmpfs {
                    size_bytes: *size_bytes,
                },
                None,
                Vec::new(),
            ),
            UpperSpec::EncryptedDisk { disk } => {
                let e = self.prepare_encrypted_upper(disk, container_id, undo)?;
                (e.spec, Some(e.node), e.dm_devices)
            }
        };
        self.kernel.mount(&spec, &upper_mount).map_err(|e| {
            AgentError::io(
                Step::Upper,
                format!(
                    "mounting {spec_desc} on {}",
                    upper_mount.display(),
                    spec_desc = describe(&spec)
                ),
                e,
            )
        })?;
        undo.push(Undo::Unmount(upper_mount.clone()));
        make_upper_dirs(&upper_mount)?;
        Ok(UpperRecord {
            mount_dir: upper_mount,
            device,
            spec: upper.clone(),
            dm_devices,
        })
    }

    /// Mounts the overlay of `lowers` (relative to `dir`, top first) and `dir`'s upper on
    /// the resolved mount point, through its fd.
    pub(super) fn mount_overlay(
        &self,
        plan: &MountPlan,
        dir: &Path,
        lowers: Vec<PathBuf>,
        target: &ResolvedMountPoint,
        undo: &mut UndoStack,
    ) -> Result<(), AgentError> {
        let layers = lowers.len();
        let overlay = OverlaySpec {
            base: dir.to_owned(),
            lowers,
            upper: PathBuf::from("upper/upper"),
            work: PathBuf::from("upper/work"),
            options: plan.overlay,
        };
        self.kernel
            .mount_overlay_at(&overlay, target.fd.as_fd(), &target.path)
            .map_err(|e| {
                AgentError::io(
                    Step::Overlay,
                    format!(
                        "mounting overlay of {layers} layers on {}",
                        target.path.display()
                    ),
                    e,
                )
            })?;
        undo.push(Undo::Unmount(target.path.clone()));
        Ok(())
    }
}

/// Creates `upper/` and `work/` on the freshly mounted upper without following symlinks,
/// and checks that both are directories on that filesystem: on a scratch disk the host
/// wrote, an `upper` symlink (to `/etc`, say) must not become the overlay's upper.
fn make_upper_dirs(upper_mount: &Path) -> Result<(), AgentError> {
    let upper_err = |what: String, e: Errno| AgentError::io(Step::Upper, what, io::Error::from(e));
    let root = openat(
        CWD,
        upper_mount,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| upper_err(format!("opening {}", upper_mount.display()), e))?;
    let dev = fstat(&root)
        .map_err(|e| upper_err(format!("checking {}", upper_mount.display()), e))?
        .st_dev;
    for sub in ["upper", "work"] {
        let p = upper_mount.join(sub);
        match mkdirat(&root, sub, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(upper_err(format!("creating {}", p.display()), e)),
        }
        let refuse = |why: &str| {
            Err(AgentError::new(
                Kind::PermissionDenied,
                Step::Upper,
                format!("upper: {sub}/ on the upper filesystem {why}"),
            ))
        };
        let fd = match openat2(
            &root,
            sub,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV,
        ) {
            Ok(fd) => fd,
            Err(Errno::LOOP) => return refuse("is a symlink"),
            Err(Errno::NOTDIR) => return refuse("is not a directory"),
            Err(Errno::XDEV) => return refuse("is a mount point"),
            Err(e) => return Err(upper_err(format!("opening {}", p.display()), e)),
        };
        let st = fstat(&fd).map_err(|e| upper_err(format!("checking {}", p.display()), e))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {}
            FileType::Symlink => return refuse("is a symlink"),
            _ => return refuse("is not a directory"),
        }
        if st.st_dev != dev {
            return refuse("is on another filesystem");
        }
    }
    Ok(())
}

/// Short names for the lowers: `<dir>/l/0`, `l/1`, ... → the layers' mount directories.
/// Returns the names relative to `dir`, top first.
pub(super) fn link_lowers(
    dir: &Path,
    layers: &[LayerRecord],
    undo: &mut UndoStack,
) -> Result<Vec<PathBuf>, AgentError> {
    let links = dir.join("l");
    create_dir_new(&links, undo).map_err(|e| state_err("creating", &links, e))?;
    let mut lowers = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        let link = links.join(i.to_string());
        std::os::unix::fs::symlink(&layer.mount_dir, &link)
            .map_err(|e| AgentError::io(Step::Overlay, format!("linking {}", link.display()), e))?;
        undo.push(Undo::RemoveFile(link));
        lowers.push(PathBuf::from(format!("l/{i}")));
    }
    Ok(lowers)
}

fn describe(spec: &MountSpec) -> String {
    match spec {
        MountSpec::Erofs { source } => format!("erofs {}", source.display()),
        MountSpec::Disk { source, fs_type } => format!("{fs_type} {}", source.display()),
        MountSpec::Tmpfs { size_bytes } => format!("tmpfs of {size_bytes} bytes"),
        MountSpec::Overlay(o) => format!("overlay of {} layers", o.lowers.len()),
    }
}
