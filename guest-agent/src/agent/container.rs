//! Container lifecycle: mount and unmount one container under its own lock, with the
//! whole mount rolled back on failure (container steps last-first, then the layers it
//! took, bottom first) and an unmount that goes on past failures and can be retried.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use layerpass_protocols::status::Kind;

use super::fsops::{
    NO_DEVICE, NO_FILE, NOT_MOUNTED, create_dir_new, done_if_gone, remove_dir_if_present,
    remove_file_if_present,
};
use super::layer::{layer_key, phase_done};
use super::mountpoint;
use super::rootfs::link_lowers;
use super::{Agent, state_err};
use crate::error::{AgentError, Step, errno_kind};
use crate::events::{EventKind, LayerEvent, RecordError, UpperEvent, VerityEvent, now_rfc3339};
use crate::layers::LayerRecord;
use crate::plan::{DiskRef, LayerSpec, MountPlan, MountResult, UpperSpec};
use crate::rollback::{Undo, UndoStack};
use crate::state::{self, ContainerRecord};
use crate::sync::lock;

/// Most threads setting up one container's layers at once.
const MAX_SETUP_THREADS: usize = 8;

impl Agent {
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
                    Kind::AlreadyExists,
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
                tracing::warn!(error = %e.chain(), "mount failed, undone");
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
            lock(&self.mount_points).release(&mount_point_of(plan), id);
            // Container-level steps first (overlay, upper, directories), then the layers,
            // bottom first: the reverse of the order they were created in.
            undo.run(self.kernel.as_ref());
            for key in acquired.iter().rev() {
                if let Err(e) = self.release_layer(key, id) {
                    tracing::warn!(error = %e.chain(), key, "cannot release layer while undoing");
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
        // The mount point first: a plan naming another container's rootfs (or a symlink,
        // a mount, a non-empty directory) is refused before any kernel call.
        let rel = mount_point_of(plan);
        lock(&self.mount_points).reserve(&rel, id)?;
        let target = mountpoint::resolve(&self.config.rootfs_root, &rel, undo)?;
        let dir = self.containers_dir().join(id);
        create_dir_new(&dir, undo).map_err(|e| state_err("creating", &dir, e))?;

        // Layers, top first; a layer repeated lower in the plan adds nothing to the merged
        // view, so each is mounted (and referenced) once.
        let mut seen = HashSet::new();
        let wanted: Vec<(usize, &LayerSpec, String)> = plan
            .layers
            .iter()
            .enumerate()
            .map(|(index, spec)| (index, spec, layer_key(spec)))
            .filter(|(_, _, key)| seen.insert(key.clone()))
            .collect();
        let mut layers = Vec::new();
        let mut shared = Vec::new();
        let mut digests = Vec::new();
        let mut failure = None;
        // Every layer set up is recorded as acquired, even after another one failed, so
        // the rollback releases it.
        for ((index, spec, key), result) in wanted.iter().zip(self.acquire_layers(&wanted, id)) {
            match result {
                Some(Ok((record, was_shared))) => {
                    acquired.push(key.clone());
                    layers.push(record);
                    shared.push(was_shared);
                    digests.push(spec.digest.clone());
                }
                Some(Err(e)) => {
                    failure.get_or_insert(e.layer(*index, &spec.digest));
                }
                None => {}
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }

        let t = Instant::now();
        let upper = self.mount_upper(&plan.upper, id, &dir, undo)?;
        phase_done("upper", t);
        let t = Instant::now();
        let lowers = link_lowers(&dir, &layers, undo)?;
        self.mount_overlay(plan, &dir, lowers, &target, undo)?;
        phase_done("overlay", t);

        let record = ContainerRecord {
            container_id: id.to_owned(),
            dir: dir.clone(),
            mount_point: rel,
            rootfs: target.path,
            created_dirs: target.created_dirs,
            upper,
            layers,
            shared,
            digests,
        };
        let t = Instant::now();
        state::save(&record)?;
        undo.push(Undo::RemoveFile(dir.join(state::STATE_FILE)));
        self.record(&layer_events(&record, EventKind::Mount))?;
        phase_done("state_events", t);
        Ok(record)
    }

    /// Acquires each layer (setting up those not mounted yet), in order of the answer. With
    /// more than one CPU the layers are set up by several threads: each layer's disk
    /// lookup, dm-verity ioctls and EROFS mount wait on the kernel, and they are
    /// independent. After a failure no new layer is started; `None` marks those.
    fn acquire_layers(
        &self,
        wanted: &[(usize, &LayerSpec, String)],
        id: &str,
    ) -> Vec<Option<Result<(LayerRecord, bool), AgentError>>> {
        let one = |(index, spec, key): &(usize, &LayerSpec, String)| {
            self.layers
                .acquire(key, id, || self.setup_layer(*index, spec, key))
        };
        let threads = match self.config.setup_threads {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
        .min(MAX_SETUP_THREADS)
        .min(wanted.len());
        if threads <= 1 {
            let mut out = Vec::with_capacity(wanted.len());
            for w in wanted {
                let r = one(w);
                let failed = r.is_err();
                out.push(Some(r));
                if failed {
                    break;
                }
            }
            out.resize_with(wanted.len(), || None);
            return out;
        }
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Mutex<Vec<Option<_>>> = Mutex::new((0..wanted.len()).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= wanted.len() || failed.load(Ordering::SeqCst) {
                            break;
                        }
                        let r = one(&wanted[i]);
                        if r.is_err() {
                            failed.store(true, Ordering::SeqCst);
                        }
                        lock(&results)[i] = Some(r);
                    }
                });
            }
        });
        results.into_inner().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands the events to every recorder in turn; the first failure stops.
    fn record(&self, events: &[LayerEvent]) -> Result<(), AgentError> {
        for recorder in &self.recorders {
            recorder.record(events).map_err(record_error)?;
        }
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
                        lock(&self.mount_points).release(&record.mount_point, container_id);
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
        let err = |what: String, e: std::io::Error| AgentError::io(Step::Unmount, what, e);
        let remove_dir = |dir: &Path| {
            remove_dir_if_present(dir).map_err(|e| err(format!("removing {}", dir.display()), e))
        };
        done_if_gone(self.kernel.unmount(&record.rootfs), NOT_MOUNTED)
            .map_err(|e| err(format!("unmounting rootfs {}", record.rootfs.display()), e))?;
        // From here on the container is gone for its users; go on through every step and
        // report the first failure.
        let mut first: Option<AgentError> = None;
        for dir in record.created_dirs.iter().rev() {
            keep_first(&mut first, remove_dir(dir));
        }
        let links = record.dir.join("l");
        for i in 0..record.layers.len() {
            let link = links.join(i.to_string());
            keep_first(
                &mut first,
                remove_file_if_present(&link)
                    .map_err(|e| err(format!("removing {}", link.display()), e)),
            );
        }
        keep_first(&mut first, remove_dir(&links));
        let upper = &record.upper.mount_dir;
        let upper_unmounted = done_if_gone(self.kernel.unmount(upper), NOT_MOUNTED)
            .map_err(|e| err(format!("unmounting upper {}", upper.display()), e));
        // The upper's dm devices go only once nothing has them mounted; a retry removes
        // them after the upper.
        if upper_unmounted.is_ok() {
            keep_first(
                &mut first,
                self.remove_upper_dm_devices(&record.upper.dm_devices),
            );
        }
        keep_first(&mut first, upper_unmounted);
        keep_first(&mut first, remove_dir(upper));
        for layer in record.layers.iter().rev() {
            keep_first(
                &mut first,
                self.release_layer(&layer.key, &record.container_id),
            );
        }
        // Recorded once everything is torn down, before the state goes: if a recorder
        // fails, the state stays and a retry records again.
        if first.is_none() {
            keep_first(
                &mut first,
                self.record(&layer_events(record, EventKind::Unmount)),
            );
        }
        // The state goes only when everything else did: a retry (or the next agent)
        // finishes the job.
        if first.is_none() {
            keep_first(&mut first, state::remove(&record.dir));
            keep_first(&mut first, remove_dir(&record.dir));
        }
        match first {
            None => {
                tracing::info!("unmounted");
                Ok(())
            }
            Some(e) => Err(e),
        }
    }

    /// Removes the device-mapper devices an upper stacked, in the recorded order (crypt,
    /// then integrity), each with its node first as a layer's dm-verity device goes.
    /// What is already gone counts as removed; the first failure stops (the devices below
    /// are still held by the one that failed).
    fn remove_upper_dm_devices(&self, names: &[String]) -> Result<(), AgentError> {
        let err = |what: String, e: std::io::Error| AgentError::io(Step::Unmount, what, e);
        for name in names {
            let node = self.kernel.dm_node_path(name);
            done_if_gone(self.kernel.remove_node(&node), NO_FILE)
                .map_err(|e| err(format!("removing node {}", node.display()), e))?;
            done_if_gone(self.kernel.dm_remove(name), NO_DEVICE)
                .map_err(|e| err(format!("removing upper dm device {name}"), e))?;
            tracing::debug!(name, "upper dm device removed");
        }
        Ok(())
    }
}

/// The plan's mount point relative to the rootfs root: the container id when it names
/// none.
fn mount_point_of(plan: &MountPlan) -> PathBuf {
    plan.mount_point
        .clone()
        .unwrap_or_else(|| PathBuf::from(&plan.container_id))
}

/// One event per layer of a mounted (or unmounted) container, top first, all with the
/// same time; the digest is the one this container's plan named.
fn layer_events(record: &ContainerRecord, event: EventKind) -> Vec<LayerEvent> {
    let time = now_rfc3339();
    let upper = match &record.upper.spec {
        UpperSpec::Tmpfs { size_bytes } => UpperEvent::Tmpfs {
            size_bytes: *size_bytes,
        },
        UpperSpec::Disk { disk, fs_type } => {
            let (serial, partition) = serial_and_partition(disk);
            UpperEvent::Disk {
                serial,
                partition,
                fs_type: fs_type.clone(),
            }
        }
        UpperSpec::EncryptedDisk { disk } => {
            let (serial, partition) = serial_and_partition(disk);
            UpperEvent::EncryptedDisk { serial, partition }
        }
    };
    record
        .layers
        .iter()
        .zip(&record.digests)
        .zip(&record.shared)
        .map(|((l, digest), shared)| LayerEvent {
            event,
            container_id: record.container_id.clone(),
            digest: (!digest.is_empty()).then(|| digest.clone()),
            root_hash: l.root_hash.clone(),
            verity: l.verity.as_ref().map(VerityEvent::from),
            shared: *shared,
            mount_point: record.rootfs.clone(),
            upper: upper.clone(),
            time: time.clone(),
        })
        .collect()
}

/// A disk's serial, and its partition's name when it is one.
fn serial_and_partition(disk: &DiskRef) -> (String, Option<String>) {
    match disk {
        DiskRef::Serial(s) => (s.clone(), None),
        DiskRef::Partition { serial, name } => (serial.clone(), Some(name.clone())),
    }
}

/// A recorder's failure as an agent error: the kind follows the errno of an I/O cause.
fn record_error(err: RecordError) -> AgentError {
    let kind = err.io_source().map_or(Kind::Internal, errno_kind);
    let (what, source) = err.into_parts();
    AgentError::new(kind, Step::EventLog, what).with_source(source)
}

/// Logs a failed unmount step and keeps the first failure.
fn keep_first(first: &mut Option<AgentError>, result: Result<(), AgentError>) {
    if let Err(e) = result {
        tracing::warn!(error = %e.chain(), "unmount step failed");
        first.get_or_insert(e);
    }
}
