//! Mount plans and results: the agent's domain types. The server converts the protobuf
//! messages to and from these; `MountPlan::validate` checks every field before the agent
//! touches the kernel.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{AgentError, ErrorKind, Step};

/// overlayfs stacks at most this many lower layers (`OVL_MAX_STACK`).
pub const MAX_LAYERS: usize = 500;
/// Longest container id accepted (it becomes a directory name and a log field).
pub const MAX_CONTAINER_ID_LEN: usize = 128;
/// virtio-blk serials are at most 20 bytes (`VIRTIO_BLK_ID_BYTES`).
pub const MAX_SERIAL_LEN: usize = 20;
/// GPT partition names are at most 36 UTF-16 code units.
pub const MAX_PARTITION_NAME_LEN: usize = 36;
/// dm-verity accepts salts of at most 256 bytes.
pub const MAX_SALT_LEN: usize = 256;

/// What to mount for one container: its layers (top first), its upper and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    /// The container's id: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 128 characters.
    pub container_id: String,
    /// The read-only layers, top layer first.
    pub layers: Vec<LayerSpec>,
    /// The writable upper layer.
    pub upper: UpperSpec,
    /// Where the rootfs goes; default `<run_dir>/containers/<id>/rootfs`.
    pub mount_point: Option<PathBuf>,
    /// overlayfs flags.
    pub overlay: OverlayOptions,
}

/// One read-only layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// The layer's digest, `sha256:<64 hex>` (or `sha512:<128 hex>`).
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

/// dm-verity hash algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HashAlgorithm {
    /// SHA-256 (what containerd and veritysetup use by default).
    Sha256,
    /// SHA-512.
    Sha512,
    /// SHA-1 (legacy).
    Sha1,
}

impl HashAlgorithm {
    /// The kernel crypto name used in the verity table.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
            Self::Sha1 => "sha1",
        }
    }

    /// Digest size in bytes (the root hash's length).
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
            Self::Sha1 => 20,
        }
    }
}

/// What the kernel does when a block fails verification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CorruptionMode {
    /// The read fails with EIO (dm-verity's default).
    #[default]
    Eio,
    /// `restart_on_corruption`: the guest restarts.
    Restart,
    /// `panic_on_corruption`: the guest kernel panics.
    Panic,
}

/// dm-verity parameters for a layer whose hash tree follows the data on the same device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VerityParams {
    /// Hash algorithm.
    pub algorithm: HashAlgorithm,
    /// Hash format: 0 (Chrome OS) or 1 (salt first, veritysetup's default).
    pub format: u32,
    /// Data block size in bytes (power of two, 512..=4096).
    pub data_block_size: u32,
    /// Hash block size in bytes (power of two, 512..=4096).
    pub hash_block_size: u32,
    /// Number of data blocks (the data is the device's first `data_blocks` blocks).
    pub data_blocks: u64,
    /// Block (in hash-block units) of the root hash block on the same device.
    pub hash_start_block: u64,
    /// Salt (at most 256 bytes; may be empty).
    pub salt: Vec<u8>,
    /// Root hash, `algorithm.digest_len()` bytes.
    pub root_hash: Vec<u8>,
    /// What a corrupted block does.
    pub on_corruption: CorruptionMode,
}

impl VerityParams {
    /// The root hash in lowercase hex.
    pub fn root_hash_hex(&self) -> String {
        hex::encode(&self.root_hash)
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Mounted containers.
    pub containers: usize,
    /// Mounted layers (each counted once, however many containers share it).
    pub layers: usize,
    /// Both policies on (verity required and reference values loaded).
    pub confidential: bool,
    /// Layers without verity are refused.
    pub require_verity: bool,
}

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::new(ErrorKind::InvalidArgument, Step::Validate, message)
}

/// Checks a container id: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 128 characters.
pub fn validate_container_id(id: &str) -> Result<(), AgentError> {
    if id.is_empty() {
        return Err(invalid("container_id is empty"));
    }
    if id.len() > MAX_CONTAINER_ID_LEN {
        return Err(invalid(format!(
            "container_id is {} characters long, at most {MAX_CONTAINER_ID_LEN} allowed",
            id.len()
        )));
    }
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok {
        return Err(invalid(format!(
            "container_id {id:?} must match [A-Za-z0-9][A-Za-z0-9_.-]*"
        )));
    }
    Ok(())
}

/// Checks a layer digest: `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`.
pub fn validate_digest(digest: &str) -> Result<(), String> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("digest {digest:?} is not <algorithm>:<hex>"))?;
    let want = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "digest {digest:?}: algorithm must be sha256 or sha512"
            ));
        }
    };
    if hex.len() != want
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "digest {digest:?}: expected {want} lowercase hex digits after {alg}:"
        ));
    }
    Ok(())
}

fn validate_disk(disk: &DiskRef) -> Result<(), String> {
    let serial = match disk {
        DiskRef::Serial(s) => s,
        DiskRef::Partition { serial, .. } => serial,
    };
    if serial.is_empty() {
        return Err("disk serial is empty".into());
    }
    if serial.len() > MAX_SERIAL_LEN {
        return Err(format!(
            "disk serial {serial:?} is {} bytes, virtio-blk serials have at most {MAX_SERIAL_LEN}",
            serial.len()
        ));
    }
    if !serial.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        return Err(format!(
            "disk serial {serial:?} must be printable ASCII without spaces or '/'"
        ));
    }
    if let DiskRef::Partition { name, .. } = disk {
        if name.is_empty() {
            return Err("partition name is empty".into());
        }
        if name.encode_utf16().count() > MAX_PARTITION_NAME_LEN {
            return Err(format!(
                "partition name {name:?} is longer than GPT's {MAX_PARTITION_NAME_LEN} characters"
            ));
        }
        if name.chars().any(|c| c.is_control() || c == '=') {
            return Err(format!(
                "partition name {name:?} has control characters or '='"
            ));
        }
    }
    Ok(())
}

fn validate_block_size(what: &str, size: u32) -> Result<(), String> {
    if !size.is_power_of_two() || !(512..=4096).contains(&size) {
        return Err(format!(
            "verity {what} {size} must be a power of two from 512 to 4096"
        ));
    }
    Ok(())
}

impl VerityParams {
    /// Checks the parameters the kernel would otherwise reject late (or accept wrongly).
    pub fn validate(&self) -> Result<(), String> {
        if self.format > 1 {
            return Err(format!("verity format {} must be 0 or 1", self.format));
        }
        validate_block_size("data_block_size", self.data_block_size)?;
        validate_block_size("hash_block_size", self.hash_block_size)?;
        let digest_len = self.algorithm.digest_len();
        if (self.hash_block_size as usize) < 2 * digest_len {
            return Err(format!(
                "verity hash_block_size {} is smaller than two {} digests",
                self.hash_block_size,
                self.algorithm.kernel_name()
            ));
        }
        if self.root_hash.len() != digest_len {
            return Err(format!(
                "verity root_hash is {} bytes, {} needs {digest_len}",
                self.root_hash.len(),
                self.algorithm.kernel_name()
            ));
        }
        if self.salt.len() > MAX_SALT_LEN {
            return Err(format!(
                "verity salt is {} bytes, at most {MAX_SALT_LEN} allowed",
                self.salt.len()
            ));
        }
        if self.data_blocks == 0 {
            return Err("verity data_blocks is 0".into());
        }
        let data_bytes = self
            .data_blocks
            .checked_mul(u64::from(self.data_block_size))
            .ok_or_else(|| format!("verity data_blocks {} overflows", self.data_blocks))?;
        let hash_bytes = self
            .hash_start_block
            .checked_mul(u64::from(self.hash_block_size))
            .ok_or_else(|| {
                format!(
                    "verity hash_start_block {} overflows",
                    self.hash_start_block
                )
            })?;
        if hash_bytes < data_bytes {
            return Err(format!(
                "verity hash_start_block {} (byte {hash_bytes}) lies inside the data \
                 ({} blocks of {} bytes); the tree must follow the data",
                self.hash_start_block, self.data_blocks, self.data_block_size
            ));
        }
        Ok(())
    }
}

fn validate_mount_point(path: &Path) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!("mount_point {} is not absolute", path.display()));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!(
            "mount_point {} has '.' or '..' components",
            path.display()
        ));
    }
    if path.parent().is_none() {
        return Err("mount_point is /".into());
    }
    Ok(())
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
            validate_digest(&layer.digest).map_err(lerr)?;
            validate_disk(&layer.disk).map_err(lerr)?;
            if let Some(v) = &layer.verity {
                v.validate().map_err(lerr)?;
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
        }
        if let Some(mp) = &self.mount_point {
            validate_mount_point(mp).map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
