//! Layer setup and teardown: find the layer's disk, open it through dm-verity (create →
//! load → resume → node), check that the running kernel can mount the EROFS its verified
//! superblock describes, mount EROFS read-only under `<run_dir>/layers/<key>`; and the
//! reverse when the last container using a shared layer lets it go.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use layerpass_protocols::status::Kind;
use rustix::io::Errno;

use super::Agent;
use super::fsops::{
    NO_DEVICE, NO_FILE, NOT_MOUNTED, create_dir_new, done_if_gone, is_errno, remove_dir_if_present,
};
use crate::erofs_support::{self, KernelVersion, SUPERBLOCK_LEN, SUPERBLOCK_OFFSET, Superblock};
use crate::error::{AgentError, Step};
use crate::kernel::{BlockDevice, MountSpec};
use crate::layers::LayerRecord;
use crate::plan::{DiskRef, LayerSpec, VerityParams};
use crate::rollback::{Undo, UndoStack};
use crate::verity;

/// The key under which a layer is shared: the root hash (with its algorithm) when it has
/// verity, else the digest.
pub fn layer_key(spec: &LayerSpec) -> String {
    match &spec.verity {
        Some(v) => format!("{}-{}", v.algorithm.name(), v.root_hash_hex()),
        None => format!("raw-{}", spec.digest.replace(':', "-")),
    }
}

/// Logs a debug event `phase NAME us=N`: the time since `start` spent in one step of a
/// mount, for `layerpass-bench run`'s breakdown (`-v` or `LAYERPASS_LOG=debug`).
pub(super) fn phase_done(name: &str, start: Instant) {
    let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    tracing::debug!(us, "phase {name}");
}

/// The block device a layer's EROFS is mounted from.
struct LayerDevice {
    /// The disk itself, or the dm-verity device's node.
    path: PathBuf,
    /// The dm-verity device, if any.
    dm_name: Option<String>,
    /// True when the agent made the node.
    node_created: bool,
    /// Root hash in hex, empty without verity.
    root_hash: String,
}

impl Agent {
    /// Finds (waiting up to the device timeout) a layer disk or the scratch disk; `step`
    /// is the step errors are reported in.
    pub(super) fn find_disk(&self, disk: &DiskRef, step: Step) -> Result<BlockDevice, AgentError> {
        let timeout = self.config.device_timeout;
        match self.kernel.wait_disk(disk, timeout) {
            Ok(Some(dev)) => Ok(dev),
            Ok(None) => Err(AgentError::new(
                Kind::NotFound,
                step,
                format!("no {disk} appeared within {:.1} s", timeout.as_secs_f64()),
            )),
            Err(e) => Err(AgentError::io(step, format!("looking for the {disk}"), e)),
        }
    }

    /// Finds the layer's disk, opens it through dm-verity (when the plan has verity) and
    /// mounts EROFS read-only under `<run_dir>/layers/<key>`. Undoes its own steps on error.
    pub(super) fn setup_layer(
        &self,
        index: usize,
        spec: &LayerSpec,
        key: &str,
    ) -> Result<LayerRecord, AgentError> {
        let span = tracing::info_span!("layer", index, digest = %spec.digest);
        let _enter = span.enter();
        let mut undo = UndoStack::default();
        let result = self.setup_layer_steps(spec, key, &mut undo);
        match result {
            Ok(record) => {
                undo.commit();
                tracing::info!(device = %record.device.display(), root_hash = %record.root_hash, "layer mounted");
                Ok(record)
            }
            Err(e) => {
                undo.run(self.kernel.as_ref());
                Err(e)
            }
        }
    }

    fn setup_layer_steps(
        &self,
        spec: &LayerSpec,
        key: &str,
        undo: &mut UndoStack,
    ) -> Result<LayerRecord, AgentError> {
        let t = Instant::now();
        let disk = self.find_disk(&spec.disk, Step::FindDisk)?;
        phase_done("find_disk", t);
        let device = match &spec.verity {
            None => LayerDevice {
                path: disk.path.clone(),
                dm_name: None,
                node_created: false,
                root_hash: String::new(),
            },
            Some(params) => self.open_verity(spec, &disk, params, undo)?,
        };
        let t = Instant::now();
        self.check_erofs_support(&device)?;
        phase_done("check_erofs", t);
        let mount_dir = self.config.run_dir.join("layers").join(key);
        let t = Instant::now();
        self.mount_erofs(&device, &mount_dir, undo)?;
        phase_done("mount_erofs", t);
        Ok(LayerRecord {
            key: key.to_owned(),
            digest: spec.digest.clone(),
            root_hash: device.root_hash,
            dm_name: device.dm_name,
            node_created: device.node_created,
            device: device.path,
            mount_dir,
            verity: spec.verity.clone(),
        })
    }

    /// The dm-verity sequence: create the device, load the verity table, resume it, make
    /// its node. Each step records its undo.
    fn open_verity(
        &self,
        spec: &LayerSpec,
        disk: &BlockDevice,
        params: &VerityParams,
        undo: &mut UndoStack,
    ) -> Result<LayerDevice, AgentError> {
        let need = verity::min_device_bytes(params);
        let have = disk.sectors.saturating_mul(512);
        if have < need {
            return Err(AgentError::new(
                Kind::FailedPrecondition,
                Step::DmVerity,
                format!(
                    "{} ({}) has {have} bytes, the verity parameters need at least {need}",
                    spec.disk,
                    disk.path.display()
                ),
            ));
        }
        let name = verity::dm_name(params);
        let dm =
            |what: &str, e: io::Error| AgentError::io(Step::DmVerity, format!("{what} {name}"), e);
        let t = Instant::now();
        let dev = match self.kernel.dm_create(&name, &verity::dm_uuid(params)) {
            Ok(dev) => dev,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let status = self.kernel.dm_status(&name).ok().flatten();
                return Err(AgentError::new(
                    Kind::AlreadyExists,
                    Step::DmVerity,
                    format!(
                        "device-mapper device {name} exists (status {:?}) but this agent \
                         did not create it: left by an agent that crashed, or another \
                         root hash with the same first 32 hex digits",
                        status.unwrap_or_default()
                    ),
                ));
            }
            Err(e) => return Err(dm("creating device", e)),
        };
        undo.push(Undo::DmRemove(name.clone()));
        phase_done("dm_create", t);
        let t = Instant::now();
        let table = verity::table(disk.dev, params);
        self.kernel
            .dm_load(&name, std::slice::from_ref(&table))
            .map_err(|e| dm(&format!("loading table '{}' into", table.params), e))?;
        phase_done("dm_load", t);
        let t = Instant::now();
        self.kernel
            .dm_resume(&name)
            .map_err(|e| dm("resuming", e))?;
        phase_done("dm_resume", t);
        let t = Instant::now();
        let node = self.kernel.dm_node_path(&name);
        let created = self.kernel.make_block_node(&node, dev).map_err(|e| {
            AgentError::io(
                Step::DmVerity,
                format!("creating node {} ({dev})", node.display()),
                e,
            )
        })?;
        if created {
            undo.push(Undo::RemoveNode(node.clone()));
        }
        phase_done("dm_node", t);
        Ok(LayerDevice {
            path: node,
            dm_name: Some(name),
            node_created: created,
            root_hash: params.root_hash_hex(),
        })
    }

    /// EIO through dm-verity means a block did not match the tree: the words saying so,
    /// with the target's status (`C` once it has seen a corrupted block); empty otherwise.
    fn verity_hint(&self, device: &LayerDevice, e: &io::Error) -> String {
        match &device.dm_name {
            Some(name) if is_errno(e, &[Errno::IO]) => {
                let status = self.kernel.dm_status(name).ok().flatten();
                format!(
                    " (dm-verity status {:?}: the blob does not match root hash {}, \
                     or it is corrupted)",
                    status.unwrap_or_default(),
                    device.root_hash
                )
            }
            _ => String::new(),
        }
    }

    /// Reads the layer's EROFS superblock (through dm-verity when the plan has it, so the
    /// bytes are the ones the root hash names) and refuses, before any mount, a layer the
    /// running kernel cannot mount: sub-page blocks before 6.1.113 / 6.4, a flat device
    /// table (containerd's tar index) before 6.4.
    fn check_erofs_support(&self, device: &LayerDevice) -> Result<(), AgentError> {
        let shown = if device.root_hash.is_empty() {
            format!("{}", device.path.display())
        } else {
            format!("{} (root hash {})", device.path.display(), device.root_hash)
        };
        let mut buf = [0u8; SUPERBLOCK_LEN];
        self.kernel
            .read_device(&device.path, SUPERBLOCK_OFFSET, &mut buf)
            .map_err(|e| {
                let hint = self.verity_hint(device, &e);
                AgentError::io(
                    Step::MountErofs,
                    format!("reading the EROFS superblock of {shown}{hint}"),
                    e,
                )
            })?;
        let sb = Superblock::parse(&buf).map_err(|e| {
            AgentError::new(
                Kind::InvalidArgument,
                Step::MountErofs,
                format!("{shown} holds no EROFS filesystem this guest mounts"),
            )
            .with_source(e)
        })?;
        let running = self.kernel.release();
        let Some(version) = KernelVersion::running(&running.release, &running.version) else {
            // Unknown release: the kernel decides at mount.
            tracing::warn!(
                release = running.release,
                needs = ?erofs_support::requirements(&sb),
                "cannot parse the kernel release; not checking EROFS features"
            );
            return Ok(());
        };
        erofs_support::check(&sb, &running.release, version).map_err(|e| {
            AgentError::new(
                Kind::FailedPrecondition,
                Step::MountErofs,
                format!("the EROFS on {shown} cannot be mounted by this kernel"),
            )
            .with_source(e)
        })
    }

    /// Mounts the layer's EROFS read-only on `mount_dir` (created here).
    fn mount_erofs(
        &self,
        device: &LayerDevice,
        mount_dir: &Path,
        undo: &mut UndoStack,
    ) -> Result<(), AgentError> {
        create_dir_new(mount_dir, undo).map_err(|e| {
            AgentError::io(
                Step::MountErofs,
                format!("creating {}", mount_dir.display()),
                e,
            )
        })?;
        let spec = MountSpec::Erofs {
            source: device.path.clone(),
        };
        self.kernel.mount(&spec, mount_dir).map_err(|e| {
            let verity_hint = self.verity_hint(device, &e);
            AgentError::io(
                Step::MountErofs,
                format!(
                    "mounting {} read-only on {}{verity_hint}",
                    device.path.display(),
                    mount_dir.display()
                ),
                e,
            )
        })?;
        undo.push(Undo::Unmount(mount_dir.to_owned()));
        Ok(())
    }

    /// Drops `container`'s reference on the layer `key`; the last one tears it down.
    pub(super) fn release_layer(&self, key: &str, container: &str) -> Result<(), AgentError> {
        self.layers
            .release(key, container, |rec| self.teardown_layer(rec))
    }

    /// Unmounts a layer nobody uses any more and removes its dm device.
    fn teardown_layer(&self, rec: &LayerRecord) -> Result<(), AgentError> {
        let unmount_err = |what: String, e: io::Error| AgentError::io(Step::Unmount, what, e);
        done_if_gone(self.kernel.unmount(&rec.mount_dir), NOT_MOUNTED).map_err(|e| {
            unmount_err(
                format!(
                    "unmounting layer {} at {}",
                    rec.digest,
                    rec.mount_dir.display()
                ),
                e,
            )
        })?;
        remove_dir_if_present(&rec.mount_dir)
            .map_err(|e| unmount_err(format!("removing {}", rec.mount_dir.display()), e))?;
        if let Some(name) = &rec.dm_name {
            if rec.node_created {
                done_if_gone(self.kernel.remove_node(&rec.device), NO_FILE).map_err(|e| {
                    unmount_err(format!("removing node {}", rec.device.display()), e)
                })?;
            }
            done_if_gone(self.kernel.dm_remove(name), NO_DEVICE)
                .map_err(|e| unmount_err(format!("removing dm device {name}"), e))?;
        }
        tracing::info!(digest = %rec.digest, "layer unmounted");
        Ok(())
    }
}
