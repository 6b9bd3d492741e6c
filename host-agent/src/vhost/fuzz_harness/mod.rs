//! The fuzz harnesses of the vhost-user-blk backend, in one place for the fuzz targets and
//! the tests: the virtio-blk queue (here) and the whole engine ([`engine`], the `vhost_engine`
//! target, on the same disks and disk oracle).
//!
//! `fuzz/fuzz_targets/virtio_blk_queue.rs` hands every input to [`QueueHarness::run`], and so
//! does `host-agent/tests/fuzz_corpus.rs` for every file of the committed corpus, so
//! `cargo test` runs exactly the fuzz target's code. Not used by the backend itself.
//!
//! What a guest controls on a virtio-blk queue comes from the input ([`layout`]): two bytes
//! choose the disk (read-only layer, layer with a separate tree, composite GPT disk, or the
//! writable scratch disk, [`disks`]), the queue size (1 to 256), event-index mode, and how
//! guest memory is split into regions (one to four, adjacent or with holes); the rest fills
//! guest memory, where the descriptor table and rings sit at fixed offsets. Indirect tables,
//! request headers, data, discard segments and status bytes lie wherever the descriptors say.
//! The backend's own queue pass ([`serve_available`]) walks and executes the chains, for at
//! most [`MAX_PASSES`] passes (a request may read disk data over the available ring and make
//! more chains available). The oracle, checked on every run:
//! - nothing panics;
//! - every disk access is whole sectors inside the disk; no write, discard or write-zeroes
//!   reaches a read-only disk;
//! - every read returns what the disk holds: a model of its bytes, known at the start and
//!   updated by every write, discard and write-zeroes ([`watched`]);
//! - after every pass the queue's indices agree with the chains completed: `next_avail` and
//!   `next_used` both move by the count returned, never by more than the queue size, and the
//!   used ring's `idx` in guest memory matches `next_used`.

pub mod disks;
pub mod engine;
pub mod layout;
pub mod seeds;
mod watched;

use std::io;
use std::sync::atomic::Ordering;

use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};

use self::disks::Disks;
pub use self::disks::{BLOB_BYTE, BLOB_LEN, SERIAL};
pub use self::layout::{CONFIG_LEN, Config, DiskKind, MEM_START};
pub use self::seeds::seeds;
use self::watched::Watched;
use super::queue::serve_available;
use super::request::GuestMem;
use crate::export::DiskError;

/// Queue passes per input.
pub const MAX_PASSES: usize = 4;

/// Why a run could not be set up, or what it found broken.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The disks' files could not be written or reset.
    #[error("cannot write the fuzz disks' files")]
    Files(#[source] io::Error),
    /// A disk could not be opened.
    #[error("cannot open a fuzz disk")]
    Disk(#[source] DiskError),
    /// A disk does not hold what the harness made it of.
    #[error("fuzz disk set-up: {0}")]
    Setup(String),
    /// Guest memory could not be mapped.
    #[error("cannot map guest memory: {0}")]
    Memory(String),
    /// The virtio queue rejected its set-up.
    #[error("cannot create the queue: {0}")]
    Queue(String),
    /// An invariant of the oracle was broken: a bug in the backend (or in the harness).
    #[error("invariant broken: {0}")]
    Violation(#[from] Violation),
    /// The engine could not be started, or a disk not served.
    #[error("cannot start the vhost engine")]
    Start(#[source] super::VhostError),
    /// The harness's own frontend failed outside the protocol (a harness bug, or no fds).
    #[error("the harness's frontend failed: {0}")]
    Frontend(String),
    /// An invariant of the engine harness was broken: a bug in the engine (or in the
    /// harness's model of it).
    #[error("engine invariant broken: {0}")]
    Engine(#[from] engine::EngineViolation),
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A disk access that is not whole sectors inside the disk.
    #[error(
        "{op} of bytes [{offset}, +{len}) on a disk of {size} bytes (outside, or not whole sectors)"
    )]
    OutsideDisk {
        /// The disk operation.
        op: &'static str,
        /// Byte offset asked for.
        offset: u64,
        /// Length asked for.
        len: u64,
        /// The disk's size.
        size: u64,
    },
    /// A write, discard or write-zeroes reached a read-only disk.
    #[error("{op} at byte {offset} reached a read-only disk")]
    WriteToReadOnly {
        /// The disk operation.
        op: &'static str,
        /// Byte offset asked for.
        offset: u64,
    },
    /// A read returned bytes the disk does not hold.
    #[error(
        "read of bytes [{offset}, +{len}) returned other bytes than the disk holds (first at byte {first_difference})"
    )]
    Data {
        /// Byte offset read.
        offset: u64,
        /// Length read.
        len: u64,
        /// Disk offset of the first wrong byte.
        first_difference: u64,
    },
    /// The queue's indices disagree with the chains a pass reported.
    #[error(
        "pass {pass}: {completed:?} completed, next_avail moved by {avail_moved}, next_used by {used_moved} (queue size {queue_size})"
    )]
    Indices {
        /// Pass number, from 0.
        pass: usize,
        /// What `serve_available` returned (`None`: an error).
        completed: Option<usize>,
        /// How far `next_avail` moved.
        avail_moved: u16,
        /// How far `next_used` moved.
        used_moved: u16,
        /// The queue's size.
        queue_size: u16,
    },
    /// The used ring's `idx` in guest memory is not the queue's `next_used`.
    #[error("pass {pass}: used ring idx in guest memory is {in_memory}, next_used is {next_used}")]
    UsedIdx {
        /// Pass number, from 0.
        pass: usize,
        /// `idx` read back from the used ring.
        in_memory: u16,
        /// The queue's `next_used`.
        next_used: u16,
    },
}

/// What one run did (for tests that check an input does what it was made for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Queue passes made.
    pub passes: usize,
    /// Chains completed over all passes.
    pub completed: usize,
    /// Whether a pass ended with a queue error (which ends the run).
    pub queue_error: bool,
    /// `read_at` calls that reached the disk.
    pub disk_reads: u64,
    /// Bytes those calls read.
    pub bytes_read: u64,
    /// Reads whose bytes were compared with the disk's model.
    pub reads_checked: u64,
    /// `write_at` calls inside the disk.
    pub disk_writes: u64,
    /// Bytes those calls wrote.
    pub bytes_written: u64,
    /// Discard and write-zeroes ranges inside the disk.
    pub ranges: u64,
}

impl Outcome {
    /// Adds `other`'s counts to these (`queue_error`: either).
    pub fn add(&mut self, other: &Self) {
        self.passes += other.passes;
        self.completed += other.completed;
        self.queue_error |= other.queue_error;
        self.disk_reads += other.disk_reads;
        self.bytes_read += other.bytes_read;
        self.reads_checked += other.reads_checked;
        self.disk_writes += other.disk_writes;
        self.bytes_written += other.bytes_written;
        self.ranges += other.ranges;
    }
}

/// The fuzz target's state: the disks every run is served against.
#[derive(Debug)]
pub struct QueueHarness {
    disks: Disks,
}

impl QueueHarness {
    /// Writes the disks' files (in `TMPDIR`) and opens them.
    pub fn new() -> Result<Self, HarnessError> {
        Ok(Self {
            disks: Disks::new()?,
        })
    }

    /// Runs one input: lays out fresh guest memory as its configuration asks, serves the
    /// queue for at most [`MAX_PASSES`] passes (until a pass completes nothing or fails) and
    /// checks the oracle.
    pub fn run(&self, input: &[u8]) -> Result<Outcome, HarnessError> {
        self.run_in(input).map(|(outcome, _)| outcome)
    }

    /// [`QueueHarness::run`], also returning guest memory as the run left it.
    pub fn run_in(&self, input: &[u8]) -> Result<(Outcome, GuestMem), HarnessError> {
        let config = Config::of(input);
        let image = input.get(CONFIG_LEN..).unwrap_or_default();
        let mem = layout::guest_memory(&config, image)?;
        let mut queue = layout::queue(&mem, &config)?;
        let used_idx = GuestAddress(config.rings().used + 2);
        let (inner, contents) = self.disks.get(config.disk)?;
        let disk = Watched::new(inner, contents);
        let mut outcome = Outcome::default();
        for pass in 0..MAX_PASSES {
            let (avail, used) = (queue.next_avail(), queue.next_used());
            let result = serve_available(&mut queue, &mem, &disk);
            outcome.passes += 1;
            let avail_moved = queue.next_avail().wrapping_sub(avail);
            let used_moved = queue.next_used().wrapping_sub(used);
            let completed = result.as_ref().ok().copied();
            let consistent = match completed {
                Some(done) => usize::from(avail_moved) == done && usize::from(used_moved) == done,
                // An error may stop a pass half-way: some chains taken, fewer returned.
                None => used_moved <= avail_moved,
            };
            if !consistent || avail_moved > config.queue_size {
                return Err(Violation::Indices {
                    pass,
                    completed,
                    avail_moved,
                    used_moved,
                    queue_size: config.queue_size,
                }
                .into());
            }
            if let Some(v) = disk.violation() {
                return Err(v.into());
            }
            match completed {
                Some(0) => break,
                Some(done) => {
                    outcome.completed += done;
                    // The last thing a pass writes is the used ring's idx.
                    let in_memory: u16 = mem
                        .read_obj(used_idx)
                        .map_err(|e| HarnessError::Memory(e.to_string()))?;
                    let in_memory = u16::from_le(in_memory);
                    if in_memory != queue.next_used() {
                        return Err(Violation::UsedIdx {
                            pass,
                            in_memory,
                            next_used: queue.next_used(),
                        }
                        .into());
                    }
                }
                None => {
                    outcome.completed += usize::from(used_moved);
                    outcome.queue_error = true;
                    break;
                }
            }
        }
        let c = &disk.counters;
        let get = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        outcome.disk_reads = get(&c.reads);
        outcome.bytes_read = get(&c.bytes_read);
        outcome.reads_checked = get(&c.reads_checked);
        outcome.disk_writes = get(&c.writes);
        outcome.bytes_written = get(&c.bytes_written);
        outcome.ranges = get(&c.ranges);
        Ok((outcome, mem))
    }
}
