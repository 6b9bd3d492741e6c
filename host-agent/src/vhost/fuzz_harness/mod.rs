//! The fuzz harness of the virtio-blk queue, in one place for the fuzz target and the tests.
//!
//! `fuzz/fuzz_targets/virtio_blk_queue.rs` hands every input to [`QueueHarness::run`], and so
//! does `host-agent/tests/fuzz_corpus.rs` for every file of the committed corpus, so
//! `cargo test` runs exactly the fuzz target's code. Not used by the backend itself.
//!
//! What a guest controls on a virtio-blk queue comes from the input: it fills guest memory
//! from [`MEM_START`], where the descriptor table, the available ring and the used ring sit at
//! fixed addresses; indirect tables, request headers, data and status buffers lie wherever the
//! descriptors say. The backend's own queue pass ([`serve_available`]) walks and executes the
//! chains against a small read-only layer disk, for at most [`MAX_PASSES`] passes (a request
//! may read disk data over the available ring and make more chains available). The oracle,
//! checked on every run:
//! - nothing panics;
//! - every disk access is whole sectors inside the disk, no write or discard reaches the
//!   read-only disk;
//! - after every pass the queue's indices agree with the chains completed: `next_avail` and
//!   `next_used` both move by the count returned, never by more than the queue size, and the
//!   used ring's `idx` in guest memory matches `next_used`.

use std::io::{self, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::NamedTempFile;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, VolatileSlice};

use super::queue::serve_available;
use super::request::GuestMem;
use crate::export::layer::LayerDisk;
use crate::export::{Disk, DiskError, SECTOR_SIZE, slices_len};

/// Guest-physical address of the first byte of guest memory (and of the input).
pub const MEM_START: u64 = 0x1000;
/// Size of guest memory; input bytes beyond it are ignored, memory beyond the input is zero.
pub const MEM_LEN: usize = 0x10000;
/// Queue size.
pub const QUEUE_SIZE: u16 = 16;
/// The descriptor table, at the start of guest memory (`QUEUE_SIZE` × 16 bytes).
pub const DESC_TABLE: u64 = MEM_START;
/// The available ring: flags, idx, `QUEUE_SIZE` heads, used_event.
pub const AVAIL_RING: u64 = MEM_START + 0x100;
/// The used ring: flags, idx, `QUEUE_SIZE` elements, avail_event.
pub const USED_RING: u64 = MEM_START + 0x200;
/// Queue passes per input.
pub const MAX_PASSES: usize = 4;
/// Length of the layer blob behind the disk (the disk is padded to 4096: 12 288 bytes).
pub const BLOB_LEN: usize = 10_000;
/// The byte the blob is filled with.
pub const BLOB_BYTE: u8 = 0x5a;
/// The disk's serial.
pub const SERIAL: &str = "fuzz";

/// Why a run could not be set up, or what it found broken.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The disk's blob could not be written.
    #[error("cannot write the fuzz disk's blob")]
    Blob(#[source] io::Error),
    /// The disk could not be opened.
    #[error("cannot open the fuzz disk")]
    Disk(#[source] DiskError),
    /// Guest memory could not be mapped.
    #[error("cannot map guest memory: {0}")]
    Memory(String),
    /// The virtio queue rejected its set-up.
    #[error("cannot create the queue: {0}")]
    Queue(String),
    /// An invariant of the oracle was broken: a bug in the backend (or in the harness).
    #[error("invariant broken: {0}")]
    Violation(#[from] Violation),
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
    /// A write, discard or write-zeroes reached the read-only disk.
    #[error("{op} at byte {offset} reached the read-only disk")]
    WriteToReadOnly {
        /// The disk operation.
        op: &'static str,
        /// Byte offset asked for.
        offset: u64,
    },
    /// The queue's indices disagree with the chains a pass reported.
    #[error(
        "pass {pass}: {completed:?} completed, next_avail moved by {avail_moved}, next_used by {used_moved} (queue size {QUEUE_SIZE})"
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
}

/// The fuzz target's state: the small layer disk every run is served against.
#[derive(Debug)]
pub struct QueueHarness {
    disk: LayerDisk,
    // Kept open so the blob lives as long as the disk; removed on drop.
    _blob: NamedTempFile,
}

impl QueueHarness {
    /// Writes the blob ([`BLOB_LEN`] bytes of [`BLOB_BYTE`]) to a temporary file and opens it
    /// as a layer disk with serial [`SERIAL`].
    pub fn new() -> Result<Self, HarnessError> {
        let mut blob = NamedTempFile::new().map_err(HarnessError::Blob)?;
        blob.write_all(&[BLOB_BYTE; BLOB_LEN])
            .map_err(HarnessError::Blob)?;
        let disk = LayerDisk::open(blob.path(), None, Some(SERIAL)).map_err(HarnessError::Disk)?;
        Ok(Self { disk, _blob: blob })
    }

    /// Runs one input: fills fresh guest memory with it, serves the queue for at most
    /// [`MAX_PASSES`] passes (until a pass completes nothing or fails) and checks the oracle.
    pub fn run(&self, input: &[u8]) -> Result<Outcome, HarnessError> {
        self.run_in(input).map(|(outcome, _)| outcome)
    }

    /// [`QueueHarness::run`], also returning guest memory as the run left it.
    pub fn run_in(&self, input: &[u8]) -> Result<(Outcome, GuestMem), HarnessError> {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(MEM_START), MEM_LEN)])
            .map_err(|e| HarnessError::Memory(e.to_string()))?;
        let n = input.len().min(MEM_LEN);
        mem.write_slice(&input[..n], GuestAddress(MEM_START))
            .map_err(|e| HarnessError::Memory(e.to_string()))?;
        let mut queue = queue(&mem, input.first().is_some_and(|b| b & 1 == 1))?;
        let disk = Watched::new(&self.disk);
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
            if !consistent || avail_moved > QUEUE_SIZE {
                return Err(Violation::Indices {
                    pass,
                    completed,
                    avail_moved,
                    used_moved,
                }
                .into());
            }
            if let Some(v) = disk.violation.get() {
                return Err(v.clone().into());
            }
            match completed {
                Some(0) => break,
                Some(done) => {
                    outcome.completed += done;
                    // The last thing a pass writes is the used ring's idx.
                    let in_memory: u16 = mem
                        .read_obj(GuestAddress(USED_RING + 2))
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
        outcome.disk_reads = disk.reads.load(Ordering::Relaxed);
        outcome.bytes_read = disk.bytes_read.load(Ordering::Relaxed);
        Ok((outcome, mem))
    }
}

/// The queue at its fixed addresses, ready.
fn queue(mem: &GuestMem, event_idx: bool) -> Result<Queue, HarnessError> {
    let mut q = Queue::new(QUEUE_SIZE).map_err(|e| HarnessError::Queue(e.to_string()))?;
    q.set_size(QUEUE_SIZE);
    // The rings lie below 4 GiB: the high halves are 0.
    q.set_desc_table_address(Some(DESC_TABLE as u32), Some(0));
    q.set_avail_ring_address(Some(AVAIL_RING as u32), Some(0));
    q.set_used_ring_address(Some(USED_RING as u32), Some(0));
    q.set_event_idx(event_idx);
    q.set_ready(true);
    if q.is_valid(mem) {
        Ok(q)
    } else {
        Err(HarnessError::Queue(
            "not valid at the fixed addresses".into(),
        ))
    }
}

/// The disk as the backend sees it, checking every access against the oracle. The first
/// violation is kept (the backend goes on with the inner disk's answer).
#[derive(Debug)]
struct Watched<'d> {
    inner: &'d dyn Disk,
    violation: OnceLock<Violation>,
    reads: AtomicU64,
    bytes_read: AtomicU64,
}

impl<'d> Watched<'d> {
    fn new(inner: &'d dyn Disk) -> Self {
        Self {
            inner,
            violation: OnceLock::new(),
            reads: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
        }
    }

    fn check(&self, op: &'static str, offset: u64, len: u64, write: bool) {
        let size = self.inner.size();
        let inside = offset.checked_add(len).is_some_and(|end| end <= size);
        let whole = offset.is_multiple_of(SECTOR_SIZE) && len.is_multiple_of(SECTOR_SIZE);
        let v = if !inside || !whole {
            Violation::OutsideDisk {
                op,
                offset,
                len,
                size,
            }
        } else if write && self.inner.read_only() {
            Violation::WriteToReadOnly { op, offset }
        } else {
            return;
        };
        // Only the first violation is kept.
        let _ = self.violation.set(v);
    }
}

impl Disk for Watched<'_> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_only(&self) -> bool {
        self.inner.read_only()
    }

    fn serial(&self) -> &[u8] {
        self.inner.serial()
    }

    fn read_at(&self, offset: u64, dst: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        let len = slices_len(dst);
        self.check("read", offset, len, false);
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes_read.fetch_add(len, Ordering::Relaxed);
        self.inner.read_at(offset, dst)
    }

    fn write_at(&self, offset: u64, src: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        self.check("write", offset, slices_len(src), true);
        self.inner.write_at(offset, src)
    }

    fn flush(&self) -> Result<(), DiskError> {
        self.inner.flush()
    }

    fn supports_discard(&self) -> bool {
        self.inner.supports_discard()
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.check("discard", offset, len, true);
        self.inner.discard(offset, len)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.check("write-zeroes", offset, len, true);
        self.inner.write_zeroes(offset, len)
    }
}

/// Offset of a seed's request header in guest memory.
pub const SEED_HEADER: u64 = 0x400;
/// Offset of a seed's indirect descriptor table.
pub const SEED_INDIRECT: u64 = 0x600;
/// Offset of a seed's 512-byte data buffer (beyond the input: zero guest memory).
pub const SEED_DATA: u64 = 0x800;
/// Offset of a seed's status byte.
pub const SEED_STATUS: u64 = 0x3f0;
/// The sector every seed asks for.
pub const SEED_SECTOR: u64 = 1;

/// The seeds of the corpus: one well-formed request of each type (header, 512-byte data,
/// status, each in its own descriptor, made available as the first chain), and a read
/// through an indirect table. Named as their files in `fuzz/corpus/virtio_blk_queue/`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let kinds = [
        ("seed-read", VIRTIO_BLK_T_IN),
        ("seed-write", VIRTIO_BLK_T_OUT),
        ("seed-getid", VIRTIO_BLK_T_GET_ID),
        ("seed-flush", VIRTIO_BLK_T_FLUSH),
        ("seed-discard", VIRTIO_BLK_T_DISCARD),
    ];
    let mut out: Vec<_> = kinds
        .into_iter()
        .map(|(name, kind)| (name, seed(kind, false)))
        .collect();
    out.push(("seed-read-indirect", seed(VIRTIO_BLK_T_IN, true)));
    out
}

/// One request in the seed layout; the input ends where the last structure in it does.
fn seed(kind: u32, indirect: bool) -> Vec<u8> {
    // The flag values are 1, 2 and 4.
    let (next, write) = (VRING_DESC_F_NEXT as u16, VRING_DESC_F_WRITE as u16);
    let data_flags = if kind == VIRTIO_BLK_T_OUT {
        next
    } else {
        next | write
    };
    let chain = [
        (MEM_START + SEED_HEADER, 16, next, 1),
        (MEM_START + SEED_DATA, 512, data_flags, 2),
        (MEM_START + SEED_STATUS, 1, write, 0),
    ];
    let table = if indirect { SEED_INDIRECT } else { 0 };
    let mut m = vec![0u8; (SEED_HEADER + 16).max(table + 48) as usize];
    let mut desc = |at: u64, (addr, len, flags, next): (u64, u32, u16, u16)| {
        let at = at as usize;
        m[at..at + 8].copy_from_slice(&addr.to_le_bytes());
        m[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
        m[at + 12..at + 14].copy_from_slice(&flags.to_le_bytes());
        m[at + 14..at + 16].copy_from_slice(&next.to_le_bytes());
    };
    for (i, d) in chain.into_iter().enumerate() {
        desc(table + 16 * i as u64, d);
    }
    if indirect {
        // The head points at the table; its flags are INDIRECT alone (value 4).
        desc(
            0,
            (
                MEM_START + SEED_INDIRECT,
                48,
                VRING_DESC_F_INDIRECT as u16,
                0,
            ),
        );
    }
    // Available ring: flags 0, idx 1, ring[0] = head 0.
    let avail = (AVAIL_RING - MEM_START) as usize;
    m[avail + 2..avail + 4].copy_from_slice(&1u16.to_le_bytes());
    // Header: type, ioprio 0, sector.
    let h = SEED_HEADER as usize;
    m[h..h + 4].copy_from_slice(&kind.to_le_bytes());
    m[h + 8..h + 16].copy_from_slice(&SEED_SECTOR.to_le_bytes());
    m
}
