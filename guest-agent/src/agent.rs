//! The agent: mounts a plan's layers (find disk → dm-verity → EROFS), the upper and the
//! overlay; unmounts containers; reports what is mounted. Requests for different
//! containers run in parallel: each container and each layer has its own lock, and the
//! maps holding them are locked only to look entries up.
//!
//! This file holds the configuration, construction and the read-only queries; the
//! rest is split by concern:
//!
//! - [`container`]: mount / unmount of one container, its lock, rollback;
//! - [`layer`]: one layer's setup and teardown (find disk → dm-verity → EROFS);
//! - [`rootfs`]: the upper, the links to the layers and the overlay;
//! - [`encrypted`]: the encrypted scratch-disk upper (dm-integrity + dm-crypt);
//! - [`mountpoint`]: the rootfs mount point, resolved beneath the rootfs root;
//! - [`fsops`]: directory helpers and the errnos that mean "already gone".

mod container;
pub(crate) mod encrypted;
mod fsops;
mod layer;
mod mountpoint;
mod rootfs;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use layerpass_protocols::status::Kind;

pub use self::layer::layer_key;
use crate::error::{AgentError, Step};
use crate::events::{EventLog, Recorder};
use crate::kernel::Kernel;
use crate::kernel::linux::LinuxKernel;
use crate::layers::LayerTable;
use crate::measure::MeasureStatus;
use crate::plan::{AgentStatus, ContainerStatus, HashAlgorithm};
use crate::policy::{Policy, ReferenceValues};
use crate::runlock::RunDirLock;
use crate::state::{self, ContainerRecord};
use crate::sync::lock;

/// Default run directory.
pub const DEFAULT_RUN_DIR: &str = "/run/layerpass";
/// Default rootfs root: every rootfs is mounted beneath it.
pub const DEFAULT_ROOTFS_ROOT: &str = "/run/layerpass/rootfs";
/// Default time to wait for a disk to appear.
pub const DEFAULT_DEVICE_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent's configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where containers, layer mounts, state and the event log live.
    pub run_dir: PathBuf,
    /// Every rootfs is mounted beneath this directory (a plan's `mount_point` is relative
    /// to it). Never inside `<run_dir>/containers` or `<run_dir>/layers`, never holding
    /// the run directory.
    pub rootfs_root: PathBuf,
    /// Refuse layers without dm-verity.
    pub require_verity: bool,
    /// Refuse root hashes not listed (and layers without verity).
    pub reference_values: Option<ReferenceValues>,
    /// How long to wait for a disk to appear.
    pub device_timeout: Duration,
    /// The event log file.
    pub event_log: PathBuf,
    /// Threads setting up one container's layers at once; 0: one per CPU (at most 8).
    pub setup_threads: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self::with_run_dir(PathBuf::from(DEFAULT_RUN_DIR))
    }
}

impl AgentConfig {
    /// Defaults under `run_dir` (event log `<run_dir>/events.jsonl`, rootfs root
    /// `<run_dir>/rootfs`).
    pub fn with_run_dir(run_dir: PathBuf) -> Self {
        Self {
            event_log: run_dir.join("events.jsonl"),
            rootfs_root: run_dir.join("rootfs"),
            run_dir,
            require_verity: false,
            reference_values: None,
            device_timeout: DEFAULT_DEVICE_TIMEOUT,
            setup_threads: 0,
        }
    }
}

/// The guest agent. `Send + Sync`; the server shares it as `Arc<Agent>`.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    policy: Policy,
    kernel: Arc<dyn Kernel>,
    /// Where mounted containers' layers are recorded: the event log, then any added with
    /// [`Agent::with_recorder`].
    recorders: Vec<Box<dyn Recorder>>,
    /// One lock per container id: serialises mount/unmount of the same container.
    container_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Mounted containers.
    records: Mutex<BTreeMap<String, ContainerRecord>>,
    /// Rootfs mount points in use or being mounted (relative to the rootfs root).
    mount_points: Mutex<mountpoint::MountPoints>,
    layers: LayerTable,
    /// Held for the agent's lifetime: one agent per run directory.
    _lock: RunDirLock,
}

/// How long a new agent waits for another one to release the run directory.
pub const RUN_DIR_LOCK_WAIT: Duration = Duration::from_secs(10);

fn state_err(what: &str, path: &Path, e: io::Error) -> AgentError {
    AgentError::io(Step::State, format!("{what} {}", path.display()), e)
}

/// Characters that would break a legacy overlay option string.
fn check_path_chars(what: &str, path: &Path) -> Result<(), AgentError> {
    let s = path.to_string_lossy();
    if s.contains([',', ':', '\\', '\n']) || s.contains("//") {
        return Err(AgentError::new(
            Kind::InvalidArgument,
            Step::Config,
            format!("{what} {s:?} must not contain ',', ':', '\\' or newlines"),
        ));
    }
    Ok(())
}

/// The rootfs root must not overlap the agent's own directories: a rootfs mounted
/// beneath it can then never cover the state, the layer mounts or the run directory.
fn check_rootfs_root(config: &AgentConfig) -> Result<(), AgentError> {
    let canon = |p: &Path| fs::canonicalize(p).map_err(|e| state_err("resolving", p, e));
    let root = canon(&config.rootfs_root)?;
    let run = canon(&config.run_dir)?;
    let bad = |why: &str| {
        Err(AgentError::new(
            Kind::InvalidArgument,
            Step::Config,
            format!("rootfs_root {} {why}", config.rootfs_root.display()),
        ))
    };
    if run.starts_with(&root) {
        return bad("holds the run directory");
    }
    for dir in ["containers", "layers"] {
        if root.starts_with(run.join(dir)) {
            return bad(&format!("lies inside the run directory's {dir}/"));
        }
    }
    Ok(())
}

impl Agent {
    /// An agent on the real kernel.
    pub fn new(config: AgentConfig) -> Result<Self, AgentError> {
        Self::with_kernel(config, Arc::new(LinuxKernel::new()))
    }

    /// An agent on `kernel` (a fake in tests). Creates the run directory, locks it (one
    /// agent per run directory; waits up to 10 s, then `Unavailable`) and loads the state
    /// of containers mounted by an earlier agent process.
    pub fn with_kernel(config: AgentConfig, kernel: Arc<dyn Kernel>) -> Result<Self, AgentError> {
        if !config.run_dir.is_absolute() {
            return Err(AgentError::new(
                Kind::InvalidArgument,
                Step::Config,
                format!("run_dir {} is not absolute", config.run_dir.display()),
            ));
        }
        check_path_chars("run_dir", &config.run_dir)?;
        if !config.rootfs_root.is_absolute() {
            return Err(AgentError::new(
                Kind::InvalidArgument,
                Step::Config,
                format!(
                    "rootfs_root {} is not absolute",
                    config.rootfs_root.display()
                ),
            ));
        }
        check_path_chars("rootfs_root", &config.rootfs_root)?;
        // The run directory holds the state the next agent trusts: only root reads it.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.run_dir)
            .map_err(|e| state_err("creating", &config.run_dir, e))?;
        fs::set_permissions(&config.run_dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| state_err("restricting", &config.run_dir, e))?;
        for dir in [
            config.run_dir.join("containers"),
            config.run_dir.join("layers"),
            config.rootfs_root.clone(),
        ] {
            fs::create_dir_all(&dir).map_err(|e| state_err("creating", &dir, e))?;
        }
        check_rootfs_root(&config)?;
        if let Some(parent) = config.event_log.parent() {
            fs::create_dir_all(parent).map_err(|e| state_err("creating", parent, e))?;
        }
        let run_lock = RunDirLock::acquire(&config.run_dir, RUN_DIR_LOCK_WAIT)?;
        let agent = Self {
            _lock: run_lock,
            policy: Policy {
                require_verity: config.require_verity,
                reference_values: config.reference_values.clone(),
            },
            recorders: vec![Box::new(EventLog::new(config.event_log.clone()))],
            config,
            kernel,
            container_locks: Mutex::default(),
            records: Mutex::default(),
            mount_points: Mutex::default(),
            layers: LayerTable::default(),
        };
        let trusted = state::Expected {
            run_dir: &agent.config.run_dir,
            rootfs_root: &agent.config.rootfs_root,
            dm_dir: agent.kernel.dm_node_path(""),
        };
        for record in state::load_all(&trusted)? {
            if let Err(e) =
                lock(&agent.mount_points).reserve(&record.mount_point, &record.container_id)
            {
                tracing::warn!(container = %record.container_id, error = %e.chain(), "skipping a state record");
                continue;
            }
            for layer in &record.layers {
                agent.layers.restore(layer, &record.container_id);
            }
            lock(&agent.records).insert(record.container_id.clone(), record);
        }
        Ok(agent)
    }

    /// The same agent, also recording mounted containers' layers with `recorder` (after
    /// the event log and the recorders added before it).
    #[must_use]
    pub fn with_recorder(mut self, recorder: impl Recorder + 'static) -> Self {
        self.recorders.push(Box::new(recorder));
        self
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    fn containers_dir(&self) -> PathBuf {
        self.config.run_dir.join("containers")
    }

    /// The mounted containers, by id.
    pub fn list(&self) -> Vec<ContainerStatus> {
        lock(&self.records)
            .values()
            .map(ContainerRecord::status)
            .collect()
    }

    /// Counts and policy.
    pub fn status(&self) -> AgentStatus {
        AgentStatus {
            containers: lock(&self.records).len(),
            layers: self.layers.mounted(),
            confidential: self.policy.confidential(),
            require_verity: self.policy.require_verity || self.policy.reference_values.is_some(),
            measure: self
                .recorders
                .iter()
                .find_map(|r| r.measure_status())
                .unwrap_or_else(MeasureStatus::log_only),
        }
    }

    /// How many containers use the layer with this root hash (hex) — for tests and status.
    pub fn layer_users(&self, algorithm: HashAlgorithm, root_hash_hex: &str) -> usize {
        self.layers
            .users(&format!("{}-{root_hash_hex}", algorithm.name()))
    }
}

#[cfg(test)]
mod tests;
