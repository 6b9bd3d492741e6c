//! Persisted container state under `<run_dir>/containers/<id>/state.json`, so a later
//! agent process (the one-shot `unmount`, or a restarted server) knows what to undo and
//! which layers are shared.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Step};
use crate::layers::LayerRecord;
use crate::plan::{ContainerStatus, MountedLayer};

/// File name of a container's state in its directory.
pub const STATE_FILE: &str = "state.json";

/// The upper a container mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpperRecord {
    /// Where the scratch filesystem or tmpfs is mounted.
    pub mount_dir: PathBuf,
    /// The scratch disk's device, `None` for tmpfs.
    pub device: Option<PathBuf>,
}

/// Everything a container's mount created, in creation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The container's id.
    pub container_id: String,
    /// The container's directory, `<run_dir>/containers/<id>`.
    pub dir: PathBuf,
    /// Where the overlay is mounted.
    pub rootfs: PathBuf,
    /// Directories created for the rootfs mount point (deepest last), removed on unmount.
    pub created_dirs: Vec<PathBuf>,
    /// The upper.
    pub upper: UpperRecord,
    /// The layers, top first, each once.
    pub layers: Vec<LayerRecord>,
    /// Whether each layer was shared when mounted (same order as `layers`).
    pub shared: Vec<bool>,
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
            .map(|(l, shared)| MountedLayer {
                digest: l.digest.clone(),
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

/// Loads every container state under `containers_dir`.
pub fn load_all(containers_dir: &Path) -> Result<Vec<ContainerRecord>, AgentError> {
    let entries = match fs::read_dir(containers_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err("reading", containers_dir, e)),
    };
    let mut records = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| err("reading", containers_dir, e))?;
        let path = entry.path().join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err("reading", &path, e)),
        };
        let record: ContainerRecord =
            serde_json::from_slice(&bytes).map_err(|e| err("decoding", &path, e.into()))?;
        records.push(record);
    }
    records.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    Ok(records)
}
