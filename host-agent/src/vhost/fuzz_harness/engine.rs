//! The fuzz harness of the vhost-user engine, end to end: one long-lived [`Engine`] serving
//! the four fuzz disks ([`DISKS`]), driven by in-process frontends (the vhost crate's
//! `Frontend`) over its unix sockets. `fuzz/fuzz_targets/vhost_engine.rs` hands every input
//! to [`EngineHarness::run`], and so does `host-agent/tests/fuzz_corpus.rs`.
//!
//! An input is a program ([`program`] documents the encoding): connections and reconnects,
//! full or partial handshakes, memory tables (adjacent, with holes, overlapping, past the end
//! of their file, in any order), ADD_MEM_REG and REM_MEM_REG, ring set-up with valid and
//! invalid sizes and addresses, requests of every type and framing (malformed included)
//! submitted on any queue, GET_VRING_BASE while requests may be in flight, disconnects at any
//! point and raw garbage on a connection. The harness predicts what the backend must do with
//! every message (`messages.rs`, `vrings.rs`) and when it must complete requests
//! (`submit.rs`).
//!
//! The engine runs with [`WORKERS`] queue workers and a [`POLL`] of 5 µs: short enough that
//! the fuzzer's two cores are not spent spinning, long enough that queues go through the hot
//! list (served without kicks), back to notifications, and are stopped while hot.
//!
//! The oracle, on every run:
//! - nothing panics, and every disk access is whole sectors inside the disk, no write reaches
//!   a read-only disk and every read returns what the disk holds (the disks are wrapped in
//!   `watched.rs`'s oracle, buffered and serialised);
//! - every message gets its answer within the reply timeout, the connection survives every
//!   well-formed message, and with REPLY_ACK every acknowledgement is the predicted one;
//!   GET_QUEUE_NUM, GET_CONFIG's capacity and GET_VRING_BASE answer what they must;
//! - requests the backend must complete are completed, in order, once, with a status;
//! - after the run its frontends are gone: the engine has accepted and ended each of its
//!   connections, no queue is registered, no memory of the run is mapped or open, and the
//!   engine runs the threads it ran before (with [`Checks::Process`], the process has the
//!   threads and open files it had before the run);
//! - the engine still serves: a fresh frontend on every disk completes a read on every queue
//!   and gets the bytes the disk holds.
//!
//! Runs are independent: each starts from an empty scratch disk and fresh models, and
//! returns only when the engine has let go of everything the run opened.

mod chains;
mod guest;
mod health;
mod messages;
mod procfs;
pub mod program;
mod queue;
mod regions;
pub mod seeds;
mod submit;
mod violation;
mod vrings;
mod world;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use self::guest::{DiskInfo, MEMFD_NAME};
use self::health::{Census, health};
pub use self::violation::EngineViolation;
use self::world::World;
use super::HarnessError;
use super::disks::Disks;
use super::layout::DiskKind;
use super::watched::Watched;
use crate::export::SECTOR_SIZE;
use crate::vhost::config::virtio_features;
use crate::vhost::{Engine, EngineConfig, Export};

/// The disks served, in the order of the program's disk numbers, with their queues.
pub const DISKS: [(DiskKind, usize); 4] = [
    (DiskKind::Layer, 2),
    (DiskKind::LayerWithTree, 1),
    (DiskKind::Composite, 2),
    (DiskKind::Scratch, 2),
];
/// Queue workers of the engine.
pub const WORKERS: usize = 2;
/// The engine's busy-poll of a queue after its last request.
pub const POLL: Duration = Duration::from_micros(5);
/// Longest wait for the engine to let go of a run's connections.
pub const RELEASE: Duration = Duration::from_secs(2);

/// One engine harness runs, starts or stops at a time in a process, so that the threads it
/// counts are its own.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Which threads and files must be back to what they were after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Every thread and open file of the process (the fuzz target: nothing else runs).
    Process,
    /// The engine's threads and the run's memory (tests: other tests run alongside).
    Engine,
}

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineOutcome {
    pub steps: usize,
    pub connections: usize,
    /// Memory tables, added and removed regions that took effect.
    pub tables: usize,
    pub submitted: usize,
    /// Requests the backend had to complete, and did.
    pub completed: usize,
    /// GET_VRING_BASE answered.
    pub vring_bases: usize,
    /// Connections that got garbage.
    pub garbage: usize,
    /// Connections the backend ended, as predicted.
    pub dropped: usize,
    /// Disk reads and writes over the run (the fresh frontends' reads included).
    pub disk_reads: u64,
    pub disk_writes: u64,
}

impl EngineOutcome {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Self) {
        self.steps += other.steps;
        self.connections += other.connections;
        self.tables += other.tables;
        self.submitted += other.submitted;
        self.completed += other.completed;
        self.vring_bases += other.vring_bases;
        self.garbage += other.garbage;
        self.dropped += other.dropped;
        self.disk_reads += other.disk_reads;
        self.disk_writes += other.disk_writes;
    }
}

/// A disk being served.
#[derive(Debug)]
pub struct Served {
    export: Export,
    disk: Arc<Watched<'static>>,
    info: DiskInfo,
}

#[derive(Debug)]
struct Running {
    // Field order: the exports end before the engine.
    served: Vec<Served>,
    engine: Engine,
}

/// The fuzz target's state: an engine serving the fuzz disks.
#[derive(Debug)]
pub struct EngineHarness {
    running: Option<Running>,
    disks: Disks,
    checks: Checks,
    _dir: TempDir,
}

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EngineHarness {
    /// Writes the disks' files, starts the engine and serves every disk on a socket in a
    /// temporary directory.
    pub fn new(checks: Checks) -> Result<Self, HarnessError> {
        let _one = one_at_a_time();
        let disks = Disks::new()?;
        let dir = tempfile::Builder::new()
            .prefix("layerpass-engine-fuzz-")
            .tempdir()
            .map_err(HarnessError::Files)?;
        let engine = Engine::start(EngineConfig {
            workers: WORKERS,
            poll: POLL,
        })
        .map_err(HarnessError::Start)?;
        let mut served = Vec::with_capacity(DISKS.len());
        for (i, (kind, queues)) in DISKS.into_iter().enumerate() {
            let (inner, contents) = disks.shared(kind);
            let info = DiskInfo {
                offered: virtio_features(inner.read_only(), inner.supports_discard()),
                queues,
                capacity: inner.size() / SECTOR_SIZE,
            };
            let disk = Arc::new(Watched::shared(inner, contents));
            let export = engine
                .serve(&dir.path().join(format!("{i}.sock")), disk.clone(), queues)
                .map_err(HarnessError::Start)?;
            served.push(Served { export, disk, info });
        }
        Ok(Self {
            running: Some(Running { served, engine }),
            disks,
            checks,
            _dir: dir,
        })
    }

    /// Runs one program and checks the oracle.
    pub fn run(&self, input: &[u8]) -> Result<EngineOutcome, HarnessError> {
        let _one = one_at_a_time();
        let Some(r) = &self.running else {
            return Err(HarnessError::Setup("the engine has stopped".into()));
        };
        let steps = program::decode(input);
        self.disks.empty_scratch()?;
        for s in &r.served {
            s.disk.reset();
        }
        let before = Census::take(self.checks)?;
        let mut connects: Vec<u64> = r
            .served
            .iter()
            .map(|s| s.export.stats().connections.load(Ordering::SeqCst))
            .collect();
        let mut world = World::new(&r.served);
        let result = world.execute(&steps);
        let (made, mut outcome) = world.end();
        for (c, m) in connects.iter_mut().zip(made) {
            *c += m;
        }
        let released = self.released(r, &connects, &before);
        result?;
        released?;
        disk_violations(r)?;
        let health = health(r, &mut connects);
        let released = self.released(r, &connects, &before);
        health?;
        released?;
        disk_violations(r)?;
        for s in &r.served {
            outcome.disk_reads += s.disk.counters.reads.load(Ordering::Relaxed);
            outcome.disk_writes += s.disk.counters.writes.load(Ordering::Relaxed);
        }
        Ok(outcome)
    }

    /// Waits until the engine has let go of everything the run opened.
    fn released(&self, r: &Running, connects: &[u64], before: &Census) -> Result<(), HarnessError> {
        let deadline = Instant::now() + RELEASE;
        loop {
            let pending = self.pending(r, connects, before)?;
            let Some(what) = pending else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(
                    EngineViolation::NotReleased(format!("{what} {RELEASE:?} later")).into(),
                );
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// What the engine still holds of the run, if anything.
    fn pending(
        &self,
        r: &Running,
        connects: &[u64],
        before: &Census,
    ) -> Result<Option<String>, HarnessError> {
        for (i, (s, want)) in r.served.iter().zip(connects).enumerate() {
            let stats = s.export.stats();
            let got = stats.connections.load(Ordering::SeqCst);
            if got != *want || stats.connected.load(Ordering::SeqCst) {
                return Ok(Some(format!(
                    "disk {i}: {got} of {want} connections accepted, connected {}",
                    stats.connected.load(Ordering::SeqCst)
                )));
            }
        }
        if r.engine.threads() != WORKERS + 1 {
            return Ok(Some(format!(
                "the engine runs {} threads",
                r.engine.threads()
            )));
        }
        let queues = r.engine.running_queues();
        if queues != 0 {
            return Ok(Some(format!("{queues} queues still registered")));
        }
        let (fds, maps) = (
            procfs::fds_of(MEMFD_NAME).map_err(HarnessError::Files)?,
            procfs::maps_of(MEMFD_NAME).map_err(HarnessError::Files)?,
        );
        if fds + maps != 0 {
            return Ok(Some(format!(
                "{fds} descriptors and {maps} mappings of guest memory"
            )));
        }
        let now = Census::take(self.checks)?;
        Ok((now != *before).then(|| format!("{now:?}, before the run {before:?}")))
    }
}

impl Drop for EngineHarness {
    fn drop(&mut self) {
        let _one = one_at_a_time();
        self.running = None;
    }
}

/// The first disk violation of the run.
fn disk_violations(r: &Running) -> Result<(), HarnessError> {
    match r.served.iter().find_map(|s| s.disk.violation()) {
        Some(v) => Err(v.into()),
        None => Ok(()),
    }
}
