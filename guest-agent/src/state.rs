//! Persisted container state under `<run_dir>/containers/<id>/state.json`, so a later
//! agent process (the one-shot `unmount`, or a restarted server) knows what to undo and
//! which layers are shared.
//!
//! The next agent trusts what it loads (a layer's root hash, what `unmount` removes), so
//! [`load_all`] takes only what this agent could have written: a directory named after
//! the container, on the run directory's own filesystem, opened without following
//! symlinks, holding a regular `state.json` whose every path, key, device name and root
//! hash is the one the agent derives from the record's own fields. Anything else is
//! skipped and logged, never fatal.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use rustix::fd::OwnedFd;
use rustix::fs::{CWD, Dir, FileType, Mode, OFlags, ResolveFlags, fstat, openat, openat2};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::agent::encrypted;
use crate::error::{AgentError, Step};
use crate::layers::LayerRecord;
use crate::plan::{ContainerStatus, MAX_LAYERS, MountedLayer, validate_container_id};
use crate::verity;

/// The largest state file loaded (a 500-layer record is far below).
const MAX_STATE_BYTES: u64 = 4 << 20;

/// File name of a container's state in its directory.
pub const STATE_FILE: &str = "state.json";

/// Most device-mapper devices one upper stacks (an encrypted disk: crypt and integrity).
pub const MAX_UPPER_DM_DEVICES: usize = 4;

/// Longest device-mapper device name (`DM_NAME_LEN` less its NUL).
const MAX_DM_NAME_LEN: usize = 127;

/// The upper a container mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpperRecord {
    /// Where the scratch filesystem or tmpfs is mounted.
    pub mount_dir: PathBuf,
    /// The device mounted: the scratch disk's, or the dm-crypt device's node for an
    /// encrypted disk; `None` for tmpfs.
    pub device: Option<PathBuf>,
    /// What the plan asked for.
    pub spec: crate::plan::UpperSpec,
    /// The device-mapper devices the upper stacked (an encrypted disk's: crypt first, then
    /// integrity), removed in this order once the upper is unmounted. Empty for a plain
    /// disk or a tmpfs, and in records written before encrypted uppers.
    #[serde(default)]
    pub dm_devices: Vec<String>,
}

/// Everything a container's mount created, in creation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The container's id.
    pub container_id: String,
    /// The container's directory, `<run_dir>/containers/<id>`.
    pub dir: PathBuf,
    /// The plan's mount point, relative to the rootfs root.
    pub mount_point: PathBuf,
    /// Where the overlay is mounted: `<rootfs root>/<mount_point>`.
    pub rootfs: PathBuf,
    /// Directories created for the rootfs mount point (deepest last), removed on unmount.
    pub created_dirs: Vec<PathBuf>,
    /// The upper.
    pub upper: UpperRecord,
    /// The layers, top first, each once.
    pub layers: Vec<LayerRecord>,
    /// Whether each layer was shared when mounted (same order as `layers`).
    pub shared: Vec<bool>,
    /// Each layer's digest as this container's plan named it (same order as `layers`;
    /// a shared layer's record holds the first mounter's).
    pub digests: Vec<String>,
}

impl ContainerRecord {
    /// What `Agent::list` reports.
    pub fn status(&self) -> ContainerStatus {
        ContainerStatus {
            container_id: self.container_id.clone(),
            rootfs: self.rootfs.clone(),
            layers: self.mounted_layers(),
        }
    }

    /// The layers as the API reports them.
    pub fn mounted_layers(&self) -> Vec<MountedLayer> {
        self.layers
            .iter()
            .zip(self.shared.iter().chain(std::iter::repeat(&false)))
            .zip(self.digests.iter())
            .map(|((l, shared), digest)| MountedLayer {
                digest: digest.clone(),
                root_hash: l.root_hash.clone(),
                device: l.device.clone(),
                shared: *shared,
            })
            .collect()
    }
}

fn err(what: &str, path: &Path, e: std::io::Error) -> AgentError {
    AgentError::io(Step::State, format!("{what} {}", path.display()), e)
}

/// Writes `record` to `<dir>/state.json` atomically (temp file, fsync, rename, fsync of the
/// directory); on error no temporary file is left.
pub fn save(record: &ContainerRecord) -> Result<(), AgentError> {
    let path = record.dir.join(STATE_FILE);
    let json = serde_json::to_vec_pretty(record).map_err(|e| err("encoding", &path, e.into()))?;
    layerpass_fsutil::write_atomic(&path, &json).map_err(|e| err(e.op, &e.path, e.source))
}

/// Removes the state file of the container in `dir` (missing is fine).
pub fn remove(dir: &Path) -> Result<(), AgentError> {
    let path = dir.join(STATE_FILE);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err("removing", &path, e)),
        _ => Ok(()),
    }
}

/// What a record must agree with: the agent's own directories.
#[derive(Debug)]
pub struct Expected<'a> {
    /// The run directory.
    pub run_dir: &'a Path,
    /// The rootfs root.
    pub rootfs_root: &'a Path,
    /// Where dm device nodes are (`/dev/mapper`).
    pub dm_dir: PathBuf,
}

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

fn open_beneath(dir: &OwnedFd, name: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    openat2(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        RESOLVE,
    )
}

fn why_not_opened(e: Errno) -> String {
    match e {
        Errno::XDEV => "is on another filesystem than the run directory (a mount)".into(),
        Errno::LOOP => "is a symlink".into(),
        Errno::NOTDIR => "is not a directory".into(),
        e => format!("cannot be opened: {e}"),
    }
}

/// Loads every container state under `<run_dir>/containers`; records that are not
/// exactly what this agent writes are skipped (and logged).
pub fn load_all(expected: &Expected<'_>) -> Result<Vec<ContainerRecord>, AgentError> {
    let run_dir = expected.run_dir;
    let containers_dir = run_dir.join("containers");
    let run = openat(
        CWD,
        run_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("opening", run_dir, e.into()))?;
    let run_dev = fstat(&run)
        .map_err(|e| err("checking", run_dir, e.into()))?
        .st_dev;
    let containers = match open_beneath(&run, "containers", OFlags::RDONLY | OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(Vec::new()),
        Err(e) => {
            return Err(AgentError::new(
                layerpass_protocols::status::Kind::FailedPrecondition,
                Step::State,
                format!("{} {}", containers_dir.display(), why_not_opened(e)),
            ));
        }
    };
    let entries =
        Dir::read_from(&containers).map_err(|e| err("reading", &containers_dir, e.into()))?;
    let mut records = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| err("reading", &containers_dir, e.into()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        let path = containers_dir.join(&name);
        match load_one(&containers, &name, run_dev, expected) {
            Ok(Some(record)) => records.push(record),
            Ok(None) => {}
            Err(why) => {
                tracing::warn!(path = %path.display(), "skipping a state record: {why}");
            }
        }
    }
    records.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    Ok(records)
}

/// One container's record, `Ok(None)` when its directory has no state file.
fn load_one(
    containers: &OwnedFd,
    name: &str,
    run_dev: u64,
    expected: &Expected<'_>,
) -> Result<Option<ContainerRecord>, String> {
    validate_container_id(name).map_err(|e| format!("the directory name: {e}"))?;
    let dir = open_beneath(containers, name, OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(|e| format!("the directory {}", why_not_opened(e)))?;
    let st = fstat(&dir).map_err(|e| format!("the directory cannot be checked: {e}"))?;
    if st.st_dev != run_dev {
        return Err("the directory is on another filesystem than the run directory".into());
    }
    let file = match open_beneath(&dir, STATE_FILE, OFlags::RDONLY) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(format!("{STATE_FILE} {}", why_not_opened(e))),
    };
    let st = fstat(&file).map_err(|e| format!("{STATE_FILE} cannot be checked: {e}"))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(format!("{STATE_FILE} is not a regular file"));
    }
    if st.st_dev != run_dev {
        return Err(format!(
            "{STATE_FILE} is on another filesystem than the run directory"
        ));
    }
    let mut bytes = Vec::new();
    fs::File::from(file)
        .take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{STATE_FILE} cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err(format!("{STATE_FILE} is over {MAX_STATE_BYTES} bytes"));
    }
    let record: ContainerRecord =
        serde_json::from_slice(&bytes).map_err(|e| format!("{STATE_FILE}: {e}"))?;
    check_record(&record, name, expected)?;
    Ok(Some(record))
}

/// Whether `path` is `/dev/…` with plain names only.
fn is_dev_path(path: &Path) -> bool {
    path.starts_with("/dev")
        && path
            .components()
            .skip(2)
            .all(|c| matches!(c, Component::Normal(_)))
        && path.components().count() > 2
}

/// Every field of a loaded record against what the agent derives from the record's own
/// key fields (container id, mount point, root hash or digest).
pub fn check_record(
    record: &ContainerRecord,
    name: &str,
    expected: &Expected<'_>,
) -> Result<(), String> {
    if record.container_id != name {
        return Err(format!(
            "container_id {:?} is not the directory's name",
            record.container_id
        ));
    }
    let dir = expected.run_dir.join("containers").join(name);
    if record.dir != dir {
        return Err(format!(
            "dir {} is not {}",
            record.dir.display(),
            dir.display()
        ));
    }
    let mp = &record.mount_point;
    crate::plan::validate_mount_point(mp)?;
    if record.rootfs != expected.rootfs_root.join(mp) {
        return Err(format!(
            "rootfs {} is not beneath the rootfs root at {}",
            record.rootfs.display(),
            mp.display()
        ));
    }
    let mut prefixes = Vec::new();
    let mut prefix = expected.rootfs_root.to_owned();
    for c in mp.components() {
        prefix.push(c);
        prefixes.push(prefix.clone());
    }
    let start = prefixes.len().saturating_sub(record.created_dirs.len());
    if record.created_dirs.len() > prefixes.len() || record.created_dirs[..] != prefixes[start..] {
        return Err("created_dirs are not the mount point's own directories".into());
    }
    if record.upper.mount_dir != dir.join("upper") {
        return Err(format!(
            "upper.mount_dir {} is not {}/upper",
            record.upper.mount_dir.display(),
            dir.display()
        ));
    }
    if record
        .upper
        .device
        .as_deref()
        .is_some_and(|d| !is_dev_path(d))
    {
        return Err("upper.device is not a /dev path".into());
    }
    if record.layers.is_empty() || record.layers.len() > MAX_LAYERS {
        return Err(format!("{} layers", record.layers.len()));
    }
    if record.shared.len() != record.layers.len() || record.digests.len() != record.layers.len() {
        return Err("shared or digests do not match layers".into());
    }
    for digest in record.digests.iter().filter(|d| !d.is_empty()) {
        crate::plan::validate_digest(digest)?;
    }
    check_upper(&record.upper, expected)?;
    let mut keys = std::collections::HashSet::new();
    for (i, layer) in record.layers.iter().enumerate() {
        check_layer(layer, expected).map_err(|why| format!("layers[{i}]: {why}"))?;
        if !keys.insert(&layer.key) {
            return Err(format!("layers[{i}]: key {} is listed twice", layer.key));
        }
        if let Some(name) = layer.dm_name.as_ref()
            && record.upper.dm_devices.contains(name)
        {
            return Err(format!("layers[{i}]: dm device {name} is also the upper's"));
        }
    }
    Ok(())
}

/// The upper's spec against its device and device-mapper devices: a tmpfs has neither,
/// a plain disk a device and no dm device, an encrypted disk the node of its first
/// (dm-crypt) device and at least one dm device, each named as the agent names them.
fn check_upper(upper: &UpperRecord, expected: &Expected<'_>) -> Result<(), String> {
    use crate::plan::UpperSpec;
    match (&upper.spec, &upper.device) {
        (UpperSpec::Tmpfs { .. }, None)
        | (UpperSpec::Disk { .. } | UpperSpec::EncryptedDisk { .. }, Some(_)) => {}
        _ => return Err("upper.spec does not match upper.device".into()),
    }
    let Some(first) = upper.dm_devices.first() else {
        return match upper.spec {
            UpperSpec::EncryptedDisk { .. } => Err("an encrypted upper has no dm_devices".into()),
            _ => Ok(()),
        };
    };
    if !matches!(upper.spec, UpperSpec::EncryptedDisk { .. }) {
        return Err("upper.dm_devices on an upper that stacks no dm device".into());
    }
    if upper.dm_devices.len() > MAX_UPPER_DM_DEVICES {
        return Err(format!(
            "upper.dm_devices has {} names, at most {MAX_UPPER_DM_DEVICES}",
            upper.dm_devices.len()
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (i, name) in upper.dm_devices.iter().enumerate() {
        check_dm_name(name).map_err(|why| format!("upper.dm_devices[{i}]: {why}"))?;
        if !names.insert(name) {
            return Err(format!("upper.dm_devices[{i}]: {name} is listed twice"));
        }
    }
    // The agent stacks exactly `<base>-crypt` on `<base>-integrity` (`encrypted::dm_names`).
    let pair = match upper.dm_devices.as_slice() {
        [crypt, integrity] => crypt
            .strip_suffix("-crypt")
            .is_some_and(|base| *integrity == format!("{base}-integrity")),
        _ => false,
    };
    if !pair
        || !upper
            .dm_devices
            .iter()
            .all(|n| encrypted::is_upper_dm_name(n))
    {
        return Err(format!(
            "upper.dm_devices {:?} are not the crypt and integrity devices the agent names",
            upper.dm_devices
        ));
    }
    let node = expected.dm_dir.join(first);
    if upper.device.as_deref() != Some(node.as_path()) {
        return Err(format!(
            "upper.device is not {}, the node of its first dm device",
            node.display()
        ));
    }
    Ok(())
}

/// A name of a device-mapper device the agent made: [`verity::DM_NAME_PREFIX`], then
/// `[A-Za-z0-9_.-]`, at most 127 bytes. Anything else (`control`, another tool's device)
/// is never removed on the strength of a record.
fn check_dm_name(name: &str) -> Result<(), String> {
    let rest = name
        .strip_prefix(verity::DM_NAME_PREFIX)
        .filter(|rest| !rest.is_empty())
        .ok_or_else(|| {
            format!(
                "dm device {name:?} is not named {}<name>",
                verity::DM_NAME_PREFIX
            )
        })?;
    if name.len() > MAX_DM_NAME_LEN {
        return Err(format!(
            "dm device name of {} bytes, at most {MAX_DM_NAME_LEN}",
            name.len()
        ));
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(format!(
            "dm device {name:?} has a character outside [A-Za-z0-9_.-]"
        ));
    }
    Ok(())
}

fn check_layer(layer: &LayerRecord, expected: &Expected<'_>) -> Result<(), String> {
    if !layer.digest.is_empty() {
        crate::plan::validate_digest(&layer.digest)?;
    }
    match &layer.verity {
        Some(v) => {
            v.validate().map_err(|e| e.to_string())?;
            let root = v.root_hash_hex();
            if layer.root_hash != root {
                return Err(format!(
                    "root_hash {} is not the mapping's {root}",
                    layer.root_hash
                ));
            }
            if layer.key != format!("{}-{root}", v.algorithm.name()) {
                return Err(format!("key {} does not name the root hash", layer.key));
            }
            let name = verity::dm_name(v);
            if layer.dm_name.as_deref() != Some(name.as_str()) {
                return Err(format!("dm_name {:?} is not {name}", layer.dm_name));
            }
            if layer.device != expected.dm_dir.join(&name) {
                return Err(format!(
                    "device {} is not the dm device's node",
                    layer.device.display()
                ));
            }
        }
        None => {
            if !layer.root_hash.is_empty() || layer.dm_name.is_some() || layer.node_created {
                return Err("a layer without verity has a root hash or a dm device".into());
            }
            if layer.digest.is_empty()
                || layer.key != format!("raw-{}", layer.digest.replace(':', "-"))
            {
                return Err(format!("key {} does not name the digest", layer.key));
            }
            if !is_dev_path(&layer.device) {
                return Err("device is not a /dev path".into());
            }
        }
    }
    let mount_dir = expected.run_dir.join("layers").join(&layer.key);
    if layer.mount_dir != mount_dir {
        return Err(format!(
            "mount_dir {} is not {}",
            layer.mount_dir.display(),
            mount_dir.display()
        ));
    }
    Ok(())
}
