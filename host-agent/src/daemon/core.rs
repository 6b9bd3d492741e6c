//! The daemon's operations. Exports are serialised only where they share something: the
//! table of live and pending exports and the minor numbers are taken under one lock, held
//! briefly; resolving, converting, serving and delivering run outside it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::config::Config;
use super::disks::{assemble, open_disk};
use super::layers::{Resolved, from_containerd, from_image, layer_cache_dir, remove_files};
use super::naming::{check_socket_path, export_key, is_daemon_name};
use super::{
    DaemonError, DaemonStatus, ExportOutcome, ExportSpec, ListedExport, SourceSpec, UnexportOutcome,
};
use crate::export::Disk;
use crate::guest::{GuestConnection, GuestEndpoint};
use crate::kata::{KataStore, allocate_minor};
use crate::state::{
    DiskBacking, DiskRecord, ExportKey, ExportRecord, MountRecord, SourceRecord, StateLock,
    StateStore,
};
use crate::vhost::{Engine, EngineConfig, Export};

/// How long the daemon waits to connect to the guest agent.
pub const GUEST_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it waits for `Mount`: the agent waits for the disks to appear, and the VMM may
/// attach them only once it has the sockets (while this call is under way).
pub const GUEST_MOUNT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long it waits for `Unmount`.
pub const GUEST_UNMOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// An export being served, or one that could not be resumed.
#[derive(Debug)]
struct Live {
    record: ExportRecord,
    servers: Vec<Export>,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct Table {
    live: BTreeMap<ExportKey, Live>,
    /// Exports under way: their keys and the minors they hold.
    pending: BTreeSet<ExportKey>,
    reserved_minors: BTreeSet<u32>,
}

/// The running daemon.
#[derive(Debug)]
pub struct Daemon {
    config: Config,
    store: StateStore,
    _lock: StateLock,
    kata: Option<KataStore>,
    table: Mutex<Table>,
    /// Serves every disk (after `table`: exports end before the engine does).
    engine: Engine,
    started: Instant,
    resumed: u64,
    stopping: AtomicBool,
    in_flight: AtomicUsize,
    /// Held while a request's layers are resolved (trees computed, images converted).
    cache: Mutex<()>,
}

/// Counts an `Export` or `Unexport` under way (for [`Daemon::wait_idle`]).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Undoes a failed export: stops its servers (which removes their sockets), removes its
/// device nodes and the files made for it, and frees its key and minors.
struct Rollback<'a> {
    daemon: &'a Daemon,
    key: ExportKey,
    minors: Vec<u32>,
    files: Vec<PathBuf>,
    sockets: Vec<PathBuf>,
    nodes: Vec<String>,
    servers: Vec<Export>,
    armed: bool,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if self.armed {
            for s in self.servers.drain(..) {
                s.stop();
            }
            remove_files(&self.sockets);
            if let Some(kata) = &self.daemon.kata {
                for n in &self.nodes {
                    if let Err(e) = kata.remove(n) {
                        tracing::warn!(name = %n, error = %e, "removing a Kata store entry of a failed export");
                    }
                }
            }
            remove_files(&self.files);
        }
        let mut t = self.daemon.table();
        t.pending.remove(&self.key);
        for m in &self.minors {
            t.reserved_minors.remove(m);
        }
    }
}

impl Daemon {
    /// Takes the state directory (refusing a second daemon), opens the state, removes what a
    /// crash left without a row, and serves every stored export again.
    pub fn start(config: Config) -> Result<Self, DaemonError> {
        for dir in [&config.state_dir, &config.run_dir, &sockets_dir(&config)] {
            std::fs::create_dir_all(dir).map_err(DaemonError::io("create", dir))?;
        }
        let lock = StateLock::acquire(&config.state_dir)?;
        let store = StateStore::open(&config.state_dir)?;
        let kata = config
            .kata_vhost_user_store
            .as_deref()
            .map(KataStore::open)
            .transpose()?;
        let engine = Engine::start(EngineConfig {
            workers: config.workers,
            poll: config.poll,
        })
        .map_err(|source| DaemonError::Serve {
            socket: config.run_dir.clone(),
            source,
        })?;
        let mut daemon = Self {
            config,
            store,
            _lock: lock,
            kata,
            table: Mutex::default(),
            engine,
            started: Instant::now(),
            resumed: 0,
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            cache: Mutex::new(()),
        };
        let records = daemon.store.all()?;
        daemon.sweep(&records);
        let mut resumed = 0;
        let mut live = BTreeMap::new();
        for record in records {
            let key = record.key.clone();
            let (servers, error) = match daemon.serve_record(&record) {
                Ok(servers) => {
                    resumed += 1;
                    tracing::info!(export = %key, disks = servers.len(), "resumed");
                    (servers, None)
                }
                Err(e) => {
                    tracing::error!(export = %key, error = %e, "cannot resume; unexport it to clean up");
                    (Vec::new(), Some(e.to_string()))
                }
            };
            live.insert(
                key,
                Live {
                    record,
                    servers,
                    error,
                },
            );
        }
        daemon.resumed = resumed;
        daemon.table().live = live;
        Ok(daemon)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exports a container's layers; see `host.proto` for the contract.
    pub fn export(&self, spec: &ExportSpec) -> Result<ExportOutcome, DaemonError> {
        let _in_flight = InFlight::new(&self.in_flight);
        if self.stopping.load(Ordering::SeqCst) {
            return Err(DaemonError::ShuttingDown);
        }
        let key = export_key(&spec.sandbox, &spec.container)?;
        {
            let mut t = self.table();
            if t.live.contains_key(&key) || t.pending.contains(&key) {
                return Err(DaemonError::Exists(key));
            }
            t.pending.insert(key.clone());
        }
        let mut rb = Rollback {
            daemon: self,
            key: key.clone(),
            minors: Vec::new(),
            files: Vec::new(),
            sockets: Vec::new(),
            nodes: Vec::new(),
            servers: Vec::new(),
            armed: true,
        };
        let trees = self.config.cache_dir.join("trees");
        // One resolution at a time: a tree or converted layer this call makes is removed if
        // the call fails while resolving, and no other export can have reused it by then.
        // Once resolved, cache entries are complete and stay (a later failure keeps them
        // for the next export of the same layers).
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let (resolved, source): (Resolved, SourceRecord) = match &spec.source {
            SourceSpec::Containerd(mounts) => (
                from_containerd(mounts, self.config.verity, &trees)?,
                SourceRecord::Containerd {
                    mounts: mounts
                        .iter()
                        .map(|m| MountRecord {
                            kind: m.kind.clone(),
                            source: m.source.clone(),
                            options: m.options.clone(),
                        })
                        .collect(),
                },
            ),
            SourceSpec::Image {
                path,
                platform,
                format,
            } => {
                let format = format.unwrap_or(self.config.layer_format);
                (
                    from_image(
                        path,
                        platform.as_deref(),
                        &layer_cache_dir(&self.config.cache_dir, format),
                        format,
                        self.config.verity,
                        &trees,
                    )?,
                    SourceRecord::Image {
                        path: path.clone(),
                        platform: platform.clone(),
                    },
                )
            }
        };
        drop(cache);
        let mode = spec.mode.unwrap_or(self.config.export_mode);
        let mut assembled = assemble(&key, &resolved, mode, spec.upper, &self.config)?;
        rb.files.extend(assembled.created.iter().cloned());

        // Sockets (and Kata nodes): every path is checked before anything is made.
        for (rec, _) in &mut assembled.disks {
            rec.socket = match &self.kata {
                Some(k) => k.socket_path(&rec.serial),
                None => sockets_dir(&self.config).join(format!("{}.sock", rec.serial)),
            };
            check_socket_path(&rec.socket)?;
        }
        if let Some(kata) = &self.kata {
            let mut in_use = kata.minors_in_use()?;
            {
                let mut t = self.table();
                in_use.extend(t.reserved_minors.iter().copied());
                in_use.extend(t.live.values().flat_map(|l| minors(&l.record)));
                for _ in &assembled.disks {
                    let m = allocate_minor(&in_use)?;
                    in_use.insert(m);
                    t.reserved_minors.insert(m);
                    rb.minors.push(m);
                }
            }
            for ((rec, _), minor) in assembled.disks.iter_mut().zip(rb.minors.clone()) {
                let node = kata.make_node(&rec.serial, minor)?;
                rb.nodes.push(rec.serial.clone());
                rec.node = Some((node, minor));
            }
        }
        for (rec, disk) in &assembled.disks {
            rb.sockets.push(rec.socket.clone());
            rb.servers.push(self.serve(&rec.socket, disk.clone())?);
        }

        let guest = match &spec.guest {
            Some(endpoint) => {
                let answer =
                    GuestConnection::connect(endpoint, GUEST_CONNECT_TIMEOUT).and_then(|c| {
                        c.with_call_timeout(GUEST_MOUNT_TIMEOUT)
                            .mount(&assembled.plan)
                    })?;
                Some(answer)
            }
            None => None,
        };

        let record = ExportRecord {
            key: key.clone(),
            source,
            disks: assembled.disks.iter().map(|(r, _)| r.clone()).collect(),
            plan_json: layerpass_protocols::json::print_plan(&assembled.plan)
                .map_err(|e| DaemonError::BadRequest(format!("the plan cannot be printed: {e}")))?,
            guest: spec.guest.as_ref().map(ToString::to_string),
            root_hashes: resolved
                .layers
                .iter()
                .map(|l| {
                    l.verity
                        .mapping
                        .as_ref()
                        .map(|m| hex::encode(&m.root_hash))
                        .unwrap_or_default()
                })
                .collect(),
            created_unix: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        if !self.store.insert_new(&record)? {
            return Err(DaemonError::Exists(key));
        }
        rb.armed = false;
        let servers = std::mem::take(&mut rb.servers);
        self.table().live.insert(
            key.clone(),
            Live {
                record: record.clone(),
                servers,
                error: None,
            },
        );
        drop(rb);
        tracing::info!(export = %key, disks = record.disks.len(), source = %resolved.description, delivered = guest.is_some(), "exported");
        Ok(ExportOutcome {
            record,
            plan: assembled.plan,
            guest,
        })
    }

    /// Undoes an export; idempotent.
    pub fn unexport(&self, sandbox: &str, container: &str) -> Result<UnexportOutcome, DaemonError> {
        let _in_flight = InFlight::new(&self.in_flight);
        let key = export_key(sandbox, container)?;
        let live = {
            let mut t = self.table();
            if t.pending.contains(&key) {
                return Err(DaemonError::BadRequest(format!(
                    "export {key} is still being made; unexport it when Export has answered"
                )));
            }
            t.live.remove(&key)
        };
        let (record, servers) = match live {
            Some(l) => (l.record, l.servers),
            None => match self.store.all()?.into_iter().find(|r| r.key == key) {
                Some(r) => (r, Vec::new()),
                None => {
                    return Ok(UnexportOutcome {
                        existed: false,
                        guest_error: None,
                    });
                }
            },
        };
        let mut guest_error = None;
        if let Some(text) = &record.guest {
            let r = text
                .parse::<GuestEndpoint>()
                .and_then(|ep| GuestConnection::connect(&ep, GUEST_CONNECT_TIMEOUT))
                .and_then(|c| {
                    c.with_call_timeout(GUEST_UNMOUNT_TIMEOUT)
                        .unmount(&key.container)
                });
            if let Err(e) = r {
                tracing::warn!(export = %key, error = %e, "the guest did not unmount; undoing the host side anyway");
                guest_error = Some(e.to_string());
            }
        }
        for s in servers {
            s.stop();
        }
        self.remove_disk_files(&record.disks);
        self.store.remove(&key)?;
        tracing::info!(export = %key, "unexported");
        Ok(UnexportOutcome {
            existed: true,
            guest_error,
        })
    }

    /// Every export, in key order (grouped by sandbox by the key's order), optionally of one
    /// sandbox.
    pub fn list(&self, sandbox: Option<&str>) -> Vec<ListedExport> {
        self.table()
            .live
            .values()
            .filter(|l| sandbox.is_none_or(|s| l.record.key.sandbox == s))
            .map(|l| ListedExport {
                record: l.record.clone(),
                error: l.error.clone(),
            })
            .collect()
    }

    /// Counters.
    pub fn status(&self) -> Result<DaemonStatus, DaemonError> {
        let t = self.table();
        let sandboxes: BTreeSet<&str> = t.live.keys().map(|k| k.sandbox.as_str()).collect();
        Ok(DaemonStatus {
            sandboxes: sandboxes.len() as u64,
            exports: t.live.len() as u64,
            disks: t.live.values().map(|l| l.servers.len() as u64).sum(),
            resumed: self.resumed,
            schema_version: self.store.schema_version()?,
            uptime_seconds: self.started.elapsed().as_secs(),
            vhost_threads: self.engine.threads() as u64,
            connected_disks: t
                .live
                .values()
                .flat_map(|l| &l.servers)
                .filter(|s| s.stats().connected.load(Ordering::Relaxed))
                .count() as u64,
            running_queues: self.engine.running_queues() as u64,
        })
    }

    /// SIGTERM, first step: new exports are refused from now on (`UNAVAILABLE`); returns
    /// when the exports and unexports under way have finished, or after `timeout` (then
    /// `false`).
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.stopping.store(true, Ordering::SeqCst);
        let start = Instant::now();
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// SIGTERM: refuse new exports and stop serving; the exports stay in the state and the
    /// next start serves them again.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let mut t = self.table();
        for live in t.live.values_mut() {
            for s in live.servers.drain(..) {
                s.stop();
            }
        }
    }

    fn serve(&self, socket: &Path, disk: Arc<dyn Disk>) -> Result<Export, DaemonError> {
        let serve_err = |source| DaemonError::Serve {
            socket: socket.to_owned(),
            source,
        };
        self.engine
            .serve(socket, disk, self.config.queues)
            .map_err(serve_err)
    }

    /// Serves a stored export again: its disks opened (and checked to have their sizes), its
    /// Kata nodes made again if they went missing, its sockets bound.
    fn serve_record(&self, record: &ExportRecord) -> Result<Vec<Export>, DaemonError> {
        let mut servers = Vec::with_capacity(record.disks.len());
        for d in &record.disks {
            let disk = open_disk(d)?;
            if let (Some(kata), Some((node, minor))) = (&self.kata, &d.node)
                && !node.exists()
            {
                kata.make_node(&d.serial, *minor)?;
            }
            servers.push(self.serve(&d.socket, disk)?);
        }
        Ok(servers)
    }

    fn remove_disk_files(&self, disks: &[DiskRecord]) {
        remove_files(&disks.iter().map(|d| d.socket.clone()).collect::<Vec<_>>());
        for d in disks {
            if d.node.is_some()
                && let Some(kata) = &self.kata
                && let Err(e) = kata.remove(&d.serial)
            {
                tracing::warn!(serial = %d.serial, error = %e, "cannot remove a Kata store entry");
            }
            if let DiskBacking::Scratch { path, owned: true } = &d.backing {
                remove_files(std::slice::from_ref(path));
            }
        }
    }

    /// Removes the sockets, Kata entries and scratch images with the daemon's names that no
    /// stored export owns: what a crash between making them and committing left.
    fn sweep(&self, records: &[ExportRecord]) {
        let owned: BTreeSet<&str> = records
            .iter()
            .flat_map(|r| r.disks.iter().map(|d| d.serial.as_str()))
            .collect();
        let orphan = |stem: &str| is_daemon_name(stem) && !owned.contains(stem);
        let scan = |dir: &Path, ext: Option<&str>| -> Vec<PathBuf> {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return Vec::new();
            };
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    let stem = match ext {
                        Some(ext) => p
                            .file_name()
                            .and_then(|n| n.to_str())
                            .and_then(|n| n.strip_suffix(ext)),
                        None => p.file_name().and_then(|n| n.to_str()),
                    };
                    stem.is_some_and(orphan)
                })
                .collect()
        };
        let mut files = scan(&sockets_dir(&self.config), Some(".sock"));
        files.extend(scan(&self.config.state_dir.join("scratch"), Some(".img")));
        if let Some(kata) = &self.kata {
            files.extend(scan(&kata.root().join("block/sockets"), None));
            files.extend(scan(&kata.root().join("block/devices"), None));
        }
        for f in &files {
            tracing::info!(path = %f.display(), "removing what an interrupted export left");
        }
        remove_files(&files);
    }
}

fn sockets_dir(config: &Config) -> PathBuf {
    config.run_dir.join("sockets")
}

fn minors(record: &ExportRecord) -> impl Iterator<Item = u32> + '_ {
    record
        .disks
        .iter()
        .filter_map(|d| d.node.as_ref().map(|n| n.1))
}
