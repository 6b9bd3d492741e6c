//! A container's rootfs over its mounted layers: the writable upper (scratch disk or
//! tmpfs), short links to the layers' mounts, and the overlay on the mount point.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use layerpass_protocols::status::Kind;

use super::fsops::{create_dir_new, create_dirs};
use super::{Agent, state_err};
use crate::error::{AgentError, Step};
use crate::kernel::{MountSpec, OverlaySpec};
use crate::layers::LayerRecord;
use crate::plan::{MountPlan, UpperSpec};
use crate::rollback::{Undo, UndoStack};
use crate::state::UpperRecord;

/// Where the rootfs went: the overlay's mount point and the directories created for it.
pub(super) struct Rootfs {
    /// The overlay's mount point.
    pub(super) path: PathBuf,
    /// Directories created for the mount point, outermost first.
    pub(super) created_dirs: Vec<PathBuf>,
}

impl Agent {
    /// Mounts the upper under `<dir>/upper` (the scratch filesystem or a tmpfs) with
    /// `upper/` and `work/` inside.
    pub(super) fn mount_upper(
        &self,
        upper: &UpperSpec,
        dir: &Path,
        undo: &mut UndoStack,
    ) -> Result<UpperRecord, AgentError> {
        let upper_mount = dir.join("upper");
        create_dir_new(&upper_mount, undo).map_err(|e| state_err("creating", &upper_mount, e))?;
        let (spec, device) = match upper {
            UpperSpec::Disk { disk, fs_type } => {
                let dev = self.find_disk(disk, Step::Upper)?;
                let path = dev.path.clone();
                (
                    MountSpec::Disk {
                        source: dev.path,
                        fs_type: fs_type.clone(),
                    },
                    Some(path),
                )
            }
            UpperSpec::Tmpfs { size_bytes } => (
                MountSpec::Tmpfs {
                    size_bytes: *size_bytes,
                },
                None,
            ),
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
        for sub in ["upper", "work"] {
            let p = upper_mount.join(sub);
            fs::create_dir_all(&p)
                .map_err(|e| AgentError::io(Step::Upper, format!("creating {}", p.display()), e))?;
        }
        Ok(UpperRecord {
            mount_dir: upper_mount,
            device,
        })
    }

    /// Mounts the overlay of `lowers` (relative to `dir`, top first) and `dir`'s upper on
    /// the plan's mount point, or `<dir>/rootfs`.
    pub(super) fn mount_overlay(
        &self,
        plan: &MountPlan,
        dir: &Path,
        lowers: Vec<PathBuf>,
        undo: &mut UndoStack,
    ) -> Result<Rootfs, AgentError> {
        let rootfs = plan
            .mount_point
            .clone()
            .unwrap_or_else(|| dir.join("rootfs"));
        let created_dirs = create_dirs(&rootfs, undo).map_err(|e| {
            AgentError::io(Step::Overlay, format!("creating {}", rootfs.display()), e)
        })?;
        let layers = lowers.len();
        let overlay = MountSpec::Overlay(OverlaySpec {
            base: dir.to_owned(),
            lowers,
            upper: PathBuf::from("upper/upper"),
            work: PathBuf::from("upper/work"),
            options: plan.overlay,
        });
        self.kernel.mount(&overlay, &rootfs).map_err(|e| {
            AgentError::io(
                Step::Overlay,
                format!(
                    "mounting overlay of {layers} layers on {}",
                    rootfs.display()
                ),
                e,
            )
        })?;
        undo.push(Undo::Unmount(rootfs.clone()));
        Ok(Rootfs {
            path: rootfs,
            created_dirs,
        })
    }
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

/// A rootfs mount point the plan names must not hide anything: if it exists it is an
/// empty directory, not a symlink (so a plan cannot shadow `/etc` or redirect the mount).
pub(super) fn check_mount_point(mp: &Path) -> Result<(), AgentError> {
    let refuse = |why: &str| {
        Err(AgentError::new(
            Kind::FailedPrecondition,
            Step::Overlay,
            format!("mount_point {} {why}", mp.display()),
        ))
    };
    match fs::symlink_metadata(mp) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AgentError::io(
            Step::Overlay,
            format!("checking mount_point {}", mp.display()),
            e,
        )),
        Ok(m) if m.file_type().is_symlink() => refuse("is a symlink"),
        Ok(m) if !m.is_dir() => refuse("exists and is not a directory"),
        Ok(_) => match fs::read_dir(mp).map(|mut d| d.next().is_some()) {
            Ok(false) => Ok(()),
            Ok(true) => refuse("is not empty: mounting there would hide its contents"),
            Err(e) => Err(AgentError::io(
                Step::Overlay,
                format!("reading mount_point {}", mp.display()),
                e,
            )),
        },
    }
}

fn describe(spec: &MountSpec) -> String {
    match spec {
        MountSpec::Erofs { source } => format!("erofs {}", source.display()),
        MountSpec::Disk { source, fs_type } => format!("{fs_type} {}", source.display()),
        MountSpec::Tmpfs { size_bytes } => format!("tmpfs of {size_bytes} bytes"),
        MountSpec::Overlay(o) => format!("overlay of {} layers", o.lowers.len()),
    }
}
