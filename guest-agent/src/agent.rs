//! The agent: mounts a plan's layers (find disk → dm-verity → EROFS), the upper and the
//! overlay; unmounts containers; reports what is mounted. Requests for different
//! containers run in parallel: each container and each layer has its own lock, and the
//! maps holding them are locked only to look entries up.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{AgentError, ErrorKind, Step};
use crate::events::{EventLog, LayerEvent, now_rfc3339};
use crate::kernel::linux::LinuxKernel;
use crate::kernel::{Kernel, MountSpec, OverlaySpec};
use crate::layers::{LayerRecord, LayerTable};
use crate::plan::{AgentStatus, ContainerStatus, LayerSpec, MountPlan, MountResult, UpperSpec};
use crate::policy::{Policy, ReferenceValues};
use crate::rollback::{Undo, UndoStack};
use crate::runlock::RunDirLock;
use crate::state::{self, ContainerRecord, UpperRecord};
use crate::sync::lock;
use crate::verity;

/// Default run directory.
pub const DEFAULT_RUN_DIR: &str = "/run/layerpass";
/// Default time to wait for a disk to appear.
pub const DEFAULT_DEVICE_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent's configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where containers, layer mounts, state and the event log live.
    pub run_dir: PathBuf,
    /// Refuse layers without dm-verity.
    pub require_verity: bool,
    /// Refuse root hashes not listed (and layers without verity).
    pub reference_values: Option<ReferenceValues>,
    /// How long to wait for a disk to appear.
    pub device_timeout: Duration,
    /// The event log file.
    pub event_log: PathBuf,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self::with_run_dir(PathBuf::from(DEFAULT_RUN_DIR))
    }
}

impl AgentConfig {
    /// Defaults under `run_dir` (event log `<run_dir>/events.jsonl`).
    pub fn with_run_dir(run_dir: PathBuf) -> Self {
        Self {
            event_log: run_dir.join("events.jsonl"),
            run_dir,
            require_verity: false,
            reference_values: None,
            device_timeout: DEFAULT_DEVICE_TIMEOUT,
        }
    }
}

/// The guest agent. `Send + Sync`; the server shares it as `Arc<Agent>`.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    policy: Policy,
    kernel: Arc<dyn Kernel>,
    events: EventLog,
    /// One lock per container id: serialises mount/unmount of the same container.
    container_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Mounted containers.
    records: Mutex<BTreeMap<String, ContainerRecord>>,
    layers: LayerTable,
    /// Held for the agent's lifetime: one agent per run directory.
    _lock: RunDirLock,
}

/// How long a new agent waits for another one to release the run directory.
pub const RUN_DIR_LOCK_WAIT: Duration = Duration::from_secs(10);

fn state_err(what: &str, path: &Path, e: &io::Error) -> AgentError {
    AgentError::io(Step::State, format!("{what} {}", path.display()), e)
}

/// Characters that would break a legacy overlay option string.
fn check_path_chars(what: &str, path: &Path) -> Result<(), AgentError> {
    let s = path.to_string_lossy();
    if s.contains([',', ':', '\\', '\n']) || s.contains("//") {
        return Err(AgentError::new(
            ErrorKind::InvalidArgument,
            Step::Config,
            format!("{what} {s:?} must not contain ',', ':', '\\' or newlines"),
        ));
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
                ErrorKind::InvalidArgument,
                Step::Config,
                format!("run_dir {} is not absolute", config.run_dir.display()),
            ));
        }
        check_path_chars("run_dir", &config.run_dir)?;
        for dir in [
            config.run_dir.join("containers"),
            config.run_dir.join("layers"),
        ] {
            fs::create_dir_all(&dir).map_err(|e| state_err("creating", &dir, &e))?;
        }
        if let Some(parent) = config.event_log.parent() {
            fs::create_dir_all(parent).map_err(|e| state_err("creating", parent, &e))?;
        }
        let run_lock = RunDirLock::acquire(&config.run_dir, RUN_DIR_LOCK_WAIT)?;
        let agent = Self {
            _lock: run_lock,
            policy: Policy {
                require_verity: config.require_verity,
                reference_values: config.reference_values.clone(),
            },
            events: EventLog::new(config.event_log.clone()),
            config,
            kernel,
            container_locks: Mutex::default(),
            records: Mutex::default(),
            layers: LayerTable::default(),
        };
        for record in state::load_all(&agent.containers_dir())? {
            for layer in &record.layers {
                agent.layers.restore(layer, &record.container_id);
            }
            lock(&agent.records).insert(record.container_id.clone(), record);
        }
        Ok(agent)
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    fn containers_dir(&self) -> PathBuf {
        self.config.run_dir.join("containers")
    }

    fn container_lock(&self, id: &str) -> Arc<Mutex<()>> {
        Arc::clone(
            lock(&self.container_locks)
                .entry(id.to_owned())
                .or_default(),
        )
    }

    fn tidy_container_lock(&self, id: &str) {
        let mut locks = lock(&self.container_locks);
        if locks.get(id).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(id);
        }
    }

    /// Mounts the plan's rootfs. On failure everything this call created is undone, in
    /// reverse order.
    pub fn mount(&self, plan: &MountPlan) -> Result<MountResult, AgentError> {
        plan.validate()?;
        self.policy.check(plan)?;
        let id = plan.container_id.as_str();
        let span = tracing::info_span!("mount", container = id, layers = plan.layers.len());
        let _enter = span.enter();
        let container_lock = self.container_lock(id);
        let result = {
            let _guard = lock(&container_lock);
            if lock(&self.records).contains_key(id) {
                Err(AgentError::new(
                    ErrorKind::AlreadyExists,
                    Step::Validate,
                    "the container is already mounted",
                ))
            } else {
                // Recorded before the container's lock is released, so an unmount waiting
                // for it sees the container.
                self.do_mount(plan).map(|record| {
                    let result = MountResult {
                        container_id: record.container_id.clone(),
                        rootfs: record.rootfs.clone(),
                        layers: record.mounted_layers(),
                    };
                    lock(&self.records).insert(id.to_owned(), record);
                    result
                })
            }
        };
        drop(container_lock);
        self.tidy_container_lock(id);
        match result {
            Ok(result) => {
                tracing::info!(rootfs = %result.rootfs.display(), "mounted");
                Ok(result)
            }
            Err(e) => {
                let e = e.container(id);
                tracing::warn!(error = %e, "mount failed, undone");
                Err(e)
            }
        }
    }

    fn do_mount(&self, plan: &MountPlan) -> Result<ContainerRecord, AgentError> {
        let id = plan.container_id.as_str();
        let mut undo = UndoStack::default();
        let mut acquired: Vec<String> = Vec::new();
        let result = self.mount_steps(plan, &mut undo, &mut acquired);
        if result.is_err() {
            // Container-level steps first (overlay, upper, directories), then the layers,
            // bottom first: the reverse of the order they were created in.
            undo.run(self.kernel.as_ref());
            for key in acquired.iter().rev() {
                if let Err(e) = self.release_layer(key, id) {
                    tracing::warn!(error = %e, key, "cannot release layer while undoing");
                }
            }
        } else {
            undo.commit();
        }
        result
    }

    fn mount_steps(
        &self,
        plan: &MountPlan,
        undo: &mut UndoStack,
        acquired: &mut Vec<String>,
    ) -> Result<ContainerRecord, AgentError> {
        let id = plan.container_id.as_str();
        if let Some(mp) = &plan.mount_point {
            check_mount_point(mp)?;
        }
        let dir = self.containers_dir().join(id);
        create_dir_new(&dir, undo).map_err(|e| state_err("creating", &dir, &e))?;

        // Layers, top first; a layer repeated lower in the plan adds nothing to the merged
        // view, so each is mounted (and referenced) once.
        let mut seen = HashSet::new();
        let mut layers = Vec::new();
        let mut shared = Vec::new();
        for (index, spec) in plan.layers.iter().enumerate() {
            let key = layer_key(spec);
            if !seen.insert(key.clone()) {
                continue;
            }
            let (record, was_shared) = self
                .layers
                .acquire(&key, id, || self.setup_layer(index, spec, &key))
                .map_err(|e| e.layer(index, &spec.digest))?;
            acquired.push(key);
            layers.push(record);
            shared.push(was_shared);
        }

        // Upper: the scratch filesystem or a tmpfs, with upper/ and work/ inside.
        let upper_mount = dir.join("upper");
        create_dir_new(&upper_mount, undo).map_err(|e| state_err("creating", &upper_mount, &e))?;
        let (spec, device) = match &plan.upper {
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
                &e,
            )
        })?;
        undo.push(Undo::Unmount(upper_mount.clone()));
        for sub in ["upper", "work"] {
            let p = upper_mount.join(sub);
            fs::create_dir_all(&p).map_err(|e| {
                AgentError::io(Step::Upper, format!("creating {}", p.display()), &e)
            })?;
        }

        // Short names for the lowers: l/0, l/1, ... → the layers' mount directories.
        let links = dir.join("l");
        create_dir_new(&links, undo).map_err(|e| state_err("creating", &links, &e))?;
        let mut lowers = Vec::with_capacity(layers.len());
        for (i, layer) in layers.iter().enumerate() {
            let link = links.join(i.to_string());
            std::os::unix::fs::symlink(&layer.mount_dir, &link).map_err(|e| {
                AgentError::io(Step::Overlay, format!("linking {}", link.display()), &e)
            })?;
            undo.push(Undo::RemoveFile(link));
            lowers.push(PathBuf::from(format!("l/{i}")));
        }

        // The overlay.
        let rootfs = plan
            .mount_point
            .clone()
            .unwrap_or_else(|| dir.join("rootfs"));
        let created_dirs = create_dirs(&rootfs, undo).map_err(|e| {
            AgentError::io(Step::Overlay, format!("creating {}", rootfs.display()), &e)
        })?;
        let overlay = MountSpec::Overlay(OverlaySpec {
            base: dir.clone(),
            lowers,
            upper: PathBuf::from("upper/upper"),
            work: PathBuf::from("upper/work"),
            options: plan.overlay,
        });
        self.kernel.mount(&overlay, &rootfs).map_err(|e| {
            AgentError::io(
                Step::Overlay,
                format!(
                    "mounting overlay of {} layers on {}",
                    layers.len(),
                    rootfs.display()
                ),
                &e,
            )
        })?;
        undo.push(Undo::Unmount(rootfs.clone()));

        let record = ContainerRecord {
            container_id: id.to_owned(),
            dir: dir.clone(),
            rootfs,
            created_dirs,
            upper: UpperRecord {
                mount_dir: upper_mount,
                device,
            },
            layers,
            shared,
        };
        let time = now_rfc3339();
        let events: Vec<LayerEvent> = record
            .layers
            .iter()
            .map(|l| LayerEvent {
                container_id: id.to_owned(),
                digest: l.digest.clone(),
                root_hash: l.root_hash.clone(),
                time: time.clone(),
            })
            .collect();
        state::save(&record)?;
        undo.push(Undo::RemoveFile(dir.join(state::STATE_FILE)));
        self.events.append(&events)?;
        Ok(record)
    }

    fn find_disk(
        &self,
        disk: &crate::plan::DiskRef,
        step: Step,
    ) -> Result<crate::kernel::BlockDevice, AgentError> {
        let timeout = self.config.device_timeout;
        match self.kernel.wait_disk(disk, timeout) {
            Ok(Some(dev)) => Ok(dev),
            Ok(None) => Err(AgentError::new(
                ErrorKind::NotFound,
                step,
                format!("no {disk} appeared within {:.1} s", timeout.as_secs_f64()),
            )),
            Err(e) => Err(AgentError::io(step, format!("looking for the {disk}"), &e)),
        }
    }

    /// Finds the layer's disk, opens it through dm-verity (when the plan has verity) and
    /// mounts EROFS read-only under `<run_dir>/layers/<key>`. Undoes its own steps on error.
    fn setup_layer(
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
        let disk = self.find_disk(&spec.disk, Step::FindDisk)?;
        let (device, dm_name, node_created, root_hash) = match &spec.verity {
            None => (disk.path.clone(), None, false, String::new()),
            Some(params) => {
                let need = verity::min_device_bytes(params);
                let have = disk.sectors.saturating_mul(512);
                if have < need {
                    return Err(AgentError::new(
                        ErrorKind::FailedPrecondition,
                        Step::DmVerity,
                        format!(
                            "{} ({}) has {have} bytes, the verity parameters need at least {need}",
                            spec.disk,
                            disk.path.display()
                        ),
                    ));
                }
                let name = verity::dm_name(params);
                let dm = |what: &str, e: &io::Error| {
                    AgentError::io(Step::DmVerity, format!("{what} {name}"), e)
                };
                let dev = match self.kernel.dm_create(&name, &verity::dm_uuid(params)) {
                    Ok(dev) => dev,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        let status = self.kernel.dm_status(&name).ok().flatten();
                        return Err(AgentError::new(
                            ErrorKind::AlreadyExists,
                            Step::DmVerity,
                            format!(
                                "device-mapper device {name} exists (status {:?}) but this agent \
                                 did not create it: left by an agent that crashed, or another \
                                 root hash with the same first 32 hex digits",
                                status.unwrap_or_default()
                            ),
                        ));
                    }
                    Err(e) => return Err(dm("creating device", &e)),
                };
                undo.push(Undo::DmRemove(name.clone()));
                let table = verity::table(disk.dev, params);
                self.kernel
                    .dm_load(&name, std::slice::from_ref(&table))
                    .map_err(|e| dm(&format!("loading table '{}' into", table.params), &e))?;
                self.kernel
                    .dm_resume(&name)
                    .map_err(|e| dm("resuming", &e))?;
                let node = self.kernel.dm_node_path(&name);
                let created = self.kernel.make_block_node(&node, dev).map_err(|e| {
                    AgentError::io(
                        Step::DmVerity,
                        format!("creating node {} ({dev})", node.display()),
                        &e,
                    )
                })?;
                if created {
                    undo.push(Undo::RemoveNode(node.clone()));
                }
                (node, Some(name), created, params.root_hash_hex())
            }
        };
        let mount_dir = self.config.run_dir.join("layers").join(key);
        create_dir_new(&mount_dir, undo).map_err(|e| {
            AgentError::io(
                Step::MountErofs,
                format!("creating {}", mount_dir.display()),
                &e,
            )
        })?;
        self.kernel
            .mount(
                &MountSpec::Erofs {
                    source: device.clone(),
                },
                &mount_dir,
            )
            .map_err(|e| {
                // EIO through dm-verity means a block did not match the tree: say so, with
                // the target's status (`C` once it has seen a corrupted block).
                let verity_hint = match (&dm_name, e.raw_os_error()) {
                    (Some(name), Some(EIO)) => {
                        let status = self.kernel.dm_status(name).ok().flatten();
                        format!(
                            " (dm-verity status {:?}: the blob does not match root hash {root_hash}, \
                             or it is corrupted)",
                            status.unwrap_or_default()
                        )
                    }
                    _ => String::new(),
                };
                let err = AgentError::io(
                    Step::MountErofs,
                    format!(
                        "mounting {} read-only on {}",
                        device.display(),
                        mount_dir.display()
                    ),
                    &e,
                );
                let message = format!("{}{verity_hint}", err.message());
                AgentError::new(err.kind(), Step::MountErofs, message)
            })?;
        undo.push(Undo::Unmount(mount_dir.clone()));
        Ok(LayerRecord {
            key: key.to_owned(),
            digest: spec.digest.clone(),
            root_hash,
            dm_name,
            node_created,
            device,
            mount_dir,
        })
    }

    fn release_layer(&self, key: &str, container: &str) -> Result<(), AgentError> {
        self.layers
            .release(key, container, |rec| self.teardown_layer(rec))
    }

    /// Unmounts a layer nobody uses any more and removes its dm device.
    fn teardown_layer(&self, rec: &LayerRecord) -> Result<(), AgentError> {
        let unmount_err = |what: String, e: &io::Error| AgentError::io(Step::Unmount, what, e);
        done_if_gone(self.kernel.unmount(&rec.mount_dir), NOT_MOUNTED).map_err(|e| {
            unmount_err(
                format!(
                    "unmounting layer {} at {}",
                    rec.digest,
                    rec.mount_dir.display()
                ),
                &e,
            )
        })?;
        remove_dir_if_present(&rec.mount_dir)
            .map_err(|e| unmount_err(format!("removing {}", rec.mount_dir.display()), &e))?;
        if let Some(name) = &rec.dm_name {
            if rec.node_created {
                done_if_gone(self.kernel.remove_node(&rec.device), NO_FILE).map_err(|e| {
                    unmount_err(format!("removing node {}", rec.device.display()), &e)
                })?;
            }
            done_if_gone(self.kernel.dm_remove(name), NO_DEVICE)
                .map_err(|e| unmount_err(format!("removing dm device {name}"), &e))?;
        }
        tracing::info!(digest = %rec.digest, "layer unmounted");
        Ok(())
    }

    /// Unmounts the container's rootfs and upper and releases its layers. Unknown ids are
    /// fine (idempotent). When the rootfs cannot be unmounted (busy), nothing changes and
    /// the call can be retried.
    pub fn unmount(&self, container_id: &str) -> Result<(), AgentError> {
        let span = tracing::info_span!("unmount", container = container_id);
        let _enter = span.enter();
        let container_lock = self.container_lock(container_id);
        let result = {
            let _guard = lock(&container_lock);
            let record = lock(&self.records).get(container_id).cloned();
            match record {
                None => Ok(()),
                Some(record) => {
                    let r = self.do_unmount(&record);
                    if r.is_ok() {
                        lock(&self.records).remove(container_id);
                    }
                    r
                }
            }
        };
        drop(container_lock);
        self.tidy_container_lock(container_id);
        result.map_err(|e| e.container(container_id))
    }

    fn do_unmount(&self, record: &ContainerRecord) -> Result<(), AgentError> {
        let err = |what: String, e: &io::Error| AgentError::io(Step::Unmount, what, e);
        done_if_gone(self.kernel.unmount(&record.rootfs), NOT_MOUNTED)
            .map_err(|e| err(format!("unmounting rootfs {}", record.rootfs.display()), &e))?;
        // From here on the container is gone for its users; go on through every step and
        // report the first failure.
        let mut first: Option<AgentError> = None;
        for dir in record.created_dirs.iter().rev() {
            keep_first(
                &mut first,
                remove_dir_if_present(dir)
                    .map_err(|e| err(format!("removing {}", dir.display()), &e)),
            );
        }
        let links = record.dir.join("l");
        for i in 0..record.layers.len() {
            let link = links.join(i.to_string());
            keep_first(
                &mut first,
                remove_file_if_present(&link)
                    .map_err(|e| err(format!("removing {}", link.display()), &e)),
            );
        }
        keep_first(
            &mut first,
            remove_dir_if_present(&links)
                .map_err(|e| err(format!("removing {}", links.display()), &e)),
        );
        let upper = &record.upper.mount_dir;
        keep_first(
            &mut first,
            done_if_gone(self.kernel.unmount(upper), NOT_MOUNTED)
                .map_err(|e| err(format!("unmounting upper {}", upper.display()), &e)),
        );
        keep_first(
            &mut first,
            remove_dir_if_present(upper)
                .map_err(|e| err(format!("removing {}", upper.display()), &e)),
        );
        for layer in record.layers.iter().rev() {
            keep_first(
                &mut first,
                self.release_layer(&layer.key, &record.container_id),
            );
        }
        // The state goes only when everything else did: a retry (or the next agent)
        // finishes the job.
        if first.is_none() {
            keep_first(&mut first, state::remove(&record.dir));
            keep_first(
                &mut first,
                remove_dir_if_present(&record.dir)
                    .map_err(|e| err(format!("removing {}", record.dir.display()), &e)),
            );
        }
        match first {
            None => {
                tracing::info!("unmounted");
                Ok(())
            }
            Some(e) => Err(e),
        }
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
            confidential: self.policy.require_verity && self.policy.reference_values.is_some(),
            require_verity: self.policy.require_verity || self.policy.reference_values.is_some(),
        }
    }

    /// How many containers use the layer with this root hash (hex) — for tests and status.
    pub fn layer_users(&self, algorithm: crate::plan::HashAlgorithm, root_hash_hex: &str) -> usize {
        self.layers
            .users(&format!("{}-{root_hash_hex}", algorithm.name()))
    }
}

/// The key under which a layer is shared: the root hash (with its algorithm) when it has
/// verity, else the digest.
pub fn layer_key(spec: &LayerSpec) -> String {
    match &spec.verity {
        Some(v) => format!("{}-{}", v.algorithm.name(), v.root_hash_hex()),
        None => format!("raw-{}", spec.digest.replace(':', "-")),
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

/// A rootfs mount point the plan names must not hide anything: if it exists it is an
/// empty directory, not a symlink (so a plan cannot shadow `/etc` or redirect the mount).
fn check_mount_point(mp: &Path) -> Result<(), AgentError> {
    let refuse = |why: &str| {
        Err(AgentError::new(
            ErrorKind::FailedPrecondition,
            Step::Overlay,
            format!("mount_point {} {why}", mp.display()),
        ))
    };
    match fs::symlink_metadata(mp) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AgentError::io(
            Step::Overlay,
            format!("checking mount_point {}", mp.display()),
            &e,
        )),
        Ok(m) if m.file_type().is_symlink() => refuse("is a symlink"),
        Ok(m) if !m.is_dir() => refuse("exists and is not a directory"),
        Ok(_) => match fs::read_dir(mp).map(|mut d| d.next().is_some()) {
            Ok(false) => Ok(()),
            Ok(true) => refuse("is not empty: mounting there would hide its contents"),
            Err(e) => Err(AgentError::io(
                Step::Overlay,
                format!("reading mount_point {}", mp.display()),
                &e,
            )),
        },
    }
}

/// Creates `dir`; an existing empty directory (left by a crash) is taken over. Records the
/// removal.
fn create_dir_new(dir: &Path, undo: &mut UndoStack) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if fs::read_dir(dir)?.next().is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not empty",
                ));
            }
        }
        Err(e) => return Err(e),
    }
    undo.push(Undo::RemoveDir(dir.to_owned()));
    Ok(())
}

/// Creates `path` and its missing parents; returns the directories created (outermost
/// first) and records their removal.
fn create_dirs(path: &Path, undo: &mut UndoStack) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut p = path;
    while !p.exists() {
        missing.push(p.to_owned());
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    let mut created = Vec::new();
    for dir in missing.into_iter().rev() {
        fs::create_dir(&dir)?;
        undo.push(Undo::RemoveDir(dir.clone()));
        created.push(dir);
    }
    Ok(created)
}

/// Logs a failed unmount step and keeps the first failure.
fn keep_first(first: &mut Option<AgentError>, result: Result<(), AgentError>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "unmount step failed");
        first.get_or_insert(e);
    }
}

/// `umount` of what is no longer mounted: EINVAL (not a mount point), ENOENT.
const NOT_MOUNTED: &[i32] = &[22, 2];
/// I/O error: what a read through dm-verity gets for a block that fails verification.
const EIO: i32 = 5;
/// A node already removed: ENOENT.
const NO_FILE: &[i32] = &[2];
/// A device-mapper device already removed: ENXIO, ENODEV, ENOENT.
const NO_DEVICE: &[i32] = &[6, 19, 2];

/// Treats the errnos in `gone` as success: what was to be undone is already gone (someone
/// unmounted it behind the agent's back, or an earlier attempt got that far). Keeps
/// `unmount` idempotent.
fn done_if_gone(result: io::Result<()>, gone: &[i32]) -> io::Result<()> {
    match result {
        Err(e) if e.raw_os_error().is_some_and(|n| gone.contains(&n)) => {
            tracing::debug!(error = %e, "already gone");
            Ok(())
        }
        r => r,
    }
}

fn remove_dir_if_present(dir: &Path) -> io::Result<()> {
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_file_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
