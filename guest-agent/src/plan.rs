//! Mount plans and results: the agent's domain types. The server converts the protobuf
//! messages to and from these; `MountPlan::validate` checks every field before the agent
//! touches the kernel.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use layerpass_protocols::status::Kind;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Step};

pub use layerpass_types::envelope::{MAX_LAYERS, MAX_SALT_LEN};
pub use layerpass_types::naming::{
    MAX_CONTAINER_ID_LEN, MAX_MOUNT_POINT_LEN, MAX_PARTITION_NAME_LEN, MAX_SERIAL_LEN,
};
/// The dm-verity mapping of a layer: the one definition and validation both agents share.
pub use layerpass_types::{CorruptionMode, HashAlgorithm, VerityMapping as VerityParams};

/// What to mount for one container: its layers (top first), its upper and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    /// The container's id: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 128 characters.
    pub container_id: String,
    /// The read-only layers, top layer first.
    pub layers: Vec<LayerSpec>,
    /// The writable upper layer.
    pub upper: UpperSpec,
    /// Where the rootfs goes: a relative path beneath the agent's rootfs root
    /// (`--rootfs-root`); `None` = the container id. Never absolute, never `..`.
    pub mount_point: Option<PathBuf>,
    /// overlayfs flags.
    pub overlay: OverlayOptions,
}

/// One read-only layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// The layer's diff ID, `sha256:<64 hex>` (or `sha512:<128 hex>`); empty when the host
    /// does not know it (containerd's mount lists carry only paths): "unknown", never a
    /// guess. The root hash identifies the layer.
    pub digest: String,
    /// The disk (or partition) holding the layer blob.
    pub disk: DiskRef,
    /// The layer's filesystem.
    pub fs_type: FsType,
    /// dm-verity parameters; `None` mounts the raw disk (refused by `require_verity`).
    pub verity: Option<VerityParams>,
}

/// Filesystems a layer can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsType {
    /// EROFS, mounted read-only.
    Erofs,
}

/// A disk by its virtio-blk serial, or a GPT partition on such a disk by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DiskRef {
    /// The whole disk whose `/sys/block/*/serial` is this.
    Serial(String),
    /// The partition named `name` (`PARTNAME=` in its uevent) on the disk with `serial`.
    Partition {
        /// The disk's virtio-blk serial.
        serial: String,
        /// The GPT partition name, e.g. `lp-<32 hex>`.
        name: String,
    },
}

impl std::fmt::Display for DiskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Serial(s) => write!(f, "disk with serial {s:?}"),
            Self::Partition { serial, name } => {
                write!(f, "partition {name:?} on the disk with serial {serial:?}")
            }
        }
    }
}

/// The writable upper layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpperSpec {
    /// A scratch disk with a filesystem (mounted once per container).
    Disk {
        /// The scratch disk.
        disk: DiskRef,
        /// Its filesystem: `ext4` or `xfs`.
        fs_type: String,
    },
    /// A tmpfs of the given size (guest memory).
    Tmpfs {
        /// Size limit in bytes.
        size_bytes: u64,
    },
    /// The scratch disk under dm-integrity and AEAD dm-crypt with a key made in the guest;
    /// formatted ext2 at every mount, content discarded at unmount.
    EncryptedDisk {
        /// The scratch disk.
        disk: DiskRef,
    },
}

/// Filesystems accepted for a scratch disk.
pub const UPPER_FS_TYPES: &[&str] = &["ext4", "xfs"];

/// overlayfs flags (typed; there are no option strings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayOptions {
    /// `volatile`: no syncs to the upper (faster; the upper is unusable after a crash).
    pub volatile: bool,
    /// `userxattr`: `user.overlay.*` xattrs (for user-namespace mounts).
    pub userxattr: bool,
}

/// What `Agent::mount` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountResult {
    /// The container's id.
    pub container_id: String,
    /// Where the merged rootfs is mounted.
    pub rootfs: PathBuf,
    /// The layers, top first (duplicates in the plan appear once).
    pub layers: Vec<MountedLayer>,
}

/// One mounted layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountedLayer {
    /// The layer's digest.
    pub digest: String,
    /// The verified root hash in hex; empty for a layer without verity.
    pub root_hash: String,
    /// The block device the EROFS filesystem was mounted from.
    pub device: PathBuf,
    /// True when the layer was already mounted for another container and reused.
    pub shared: bool,
}

/// A mounted container, as `Agent::list` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// The container's id.
    pub container_id: String,
    /// Where its rootfs is mounted.
    pub rootfs: PathBuf,
    /// Its layers, top first.
    pub layers: Vec<MountedLayer>,
}

/// The agent as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Mounted containers.
    pub containers: usize,
    /// Mounted layers (each counted once, however many containers share it).
    pub layers: usize,
    /// Both policies on (verity required and reference values loaded).
    pub confidential: bool,
    /// Layers without verity are refused.
    pub require_verity: bool,
    /// How layers are measured.
    pub measure: crate::measure::MeasureStatus,
}

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::new(Kind::InvalidArgument, Step::Validate, message)
}

/// Checks a container id: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 128 characters.
pub fn validate_container_id(id: &str) -> Result<(), AgentError> {
    layerpass_types::naming::validate_container_id(id).map_err(|e| invalid(e.to_string()))
}

/// Checks a layer digest: `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`
/// (the one parser of both agents, `layerpass_types::Digest`).
pub fn validate_digest(digest: &str) -> Result<(), String> {
    layerpass_types::Digest::parse(digest)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn validate_disk(disk: &DiskRef) -> Result<(), String> {
    use layerpass_types::naming::{validate_partition_name, validate_serial};
    match disk {
        DiskRef::Serial(serial) => validate_serial(serial),
        DiskRef::Partition { serial, name } => {
            validate_serial(serial).and_then(|()| validate_partition_name(name))
        }
    }
    .map_err(|e| e.to_string())
}

/// Checks a mount point: a relative path of plain names beneath the rootfs root (no
/// `/` at the start, no `.`, `..` or empty components, no control characters), at most
/// [`MAX_MOUNT_POINT_LEN`] bytes. The same rule as the host's plan builder.
pub fn validate_mount_point(path: &Path) -> Result<(), String> {
    layerpass_types::naming::validate_mount_point(&path.to_string_lossy())
        .map_err(|e| e.to_string())
}

impl MountPlan {
    /// Checks every field; the error names the field (and the layer's index and digest).
    pub fn validate(&self) -> Result<(), AgentError> {
        validate_container_id(&self.container_id)?;
        let err = |m: String| invalid(m).container(&self.container_id);
        if self.layers.is_empty() {
            return Err(err(
                "layers is empty: a rootfs needs at least one layer".into()
            ));
        }
        if self.layers.len() > MAX_LAYERS {
            return Err(err(format!(
                "{} layers, overlayfs stacks at most {MAX_LAYERS}",
                self.layers.len()
            )));
        }
        let mut disks = HashSet::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let lerr = |m: String| err(m).layer(i, &layer.digest);
            if !layer.digest.is_empty() {
                validate_digest(&layer.digest).map_err(lerr)?;
            }
            validate_disk(&layer.disk).map_err(lerr)?;
            if let Some(v) = &layer.verity {
                v.validate().map_err(|e| lerr(e.to_string()))?;
            }
            disks.insert(&layer.disk);
        }
        match &self.upper {
            UpperSpec::Disk { disk, fs_type } => {
                validate_disk(disk).map_err(|m| err(format!("upper: {m}")))?;
                if !UPPER_FS_TYPES.contains(&fs_type.as_str()) {
                    return Err(err(format!(
                        "upper fs_type {fs_type:?} is not one of {UPPER_FS_TYPES:?}"
                    )));
                }
                if disks.contains(disk) {
                    return Err(err(format!("upper {disk} is also a layer disk")));
                }
            }
            UpperSpec::Tmpfs { size_bytes } => {
                if *size_bytes == 0 {
                    return Err(err("upper tmpfs size_bytes is 0".into()));
                }
            }
            UpperSpec::EncryptedDisk { disk } => {
                validate_disk(disk).map_err(|m| err(format!("upper: {m}")))?;
                if disks.contains(disk) {
                    return Err(err(format!("upper {disk} is also a layer disk")));
                }
            }
        }
        if let Some(mp) = &self.mount_point {
            // Not UTF-8 is refused too (the rule is checked on the lossy form, where the
            // replacement character is no control character: check the bytes as well).
            if mp.to_str().is_none() {
                return Err(err(format!("mount_point {} is not UTF-8", mp.display())));
            }
            validate_mount_point(mp).map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
