//! The disk as the backend sees it in a fuzz run, checking every access against the oracle
//! and a model of the disk's bytes.
//!
//! The model is what the disk holds at the start of the run (built independently of the
//! backend, see `disks.rs`), updated by every write, discard and write-zeroes that reached
//! the disk (discard and write-zeroes read as zeros afterwards: [`Disk::discard`]). Every
//! successful read is compared with it, unless two of the read's destination buffers
//! overlap in guest memory (then the later one wins and the bytes cannot be predicted), or
//! an earlier write failed half-way (then the model is unknown for the rest of the run).
//! The first violation is kept; the backend goes on with the inner disk's answer.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use vm_memory::VolatileSlice;

use super::Violation;
use crate::export::{Disk, DiskError, SECTOR_SIZE, slices_len};

/// Counters of what reached the disk in one run.
#[derive(Debug, Default)]
pub struct Counters {
    pub reads: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Reads whose bytes were compared with the model.
    pub reads_checked: AtomicU64,
    pub writes: AtomicU64,
    pub bytes_written: AtomicU64,
    /// Discard and write-zeroes ranges.
    pub ranges: AtomicU64,
}

#[derive(Debug)]
struct Model<'m> {
    bytes: Cow<'m, [u8]>,
    /// A write failed: what the disk holds is unknown from here on.
    unknown: bool,
}

/// The checking wrapper.
#[derive(Debug)]
pub struct Watched<'d> {
    inner: &'d dyn Disk,
    model: Mutex<Model<'d>>,
    pub violation: OnceLock<Violation>,
    pub counters: Counters,
}

impl<'d> Watched<'d> {
    /// Wraps `inner`, which holds `contents` (as long as the disk) at the start of the run.
    pub fn new(inner: &'d dyn Disk, contents: &'d [u8]) -> Self {
        Self {
            inner,
            model: Mutex::new(Model {
                bytes: Cow::Borrowed(contents),
                unknown: contents.len() as u64 != inner.size(),
            }),
            violation: OnceLock::new(),
            counters: Counters::default(),
        }
    }

    fn violate(&self, v: Violation) {
        // Only the first violation is kept.
        let _ = self.violation.set(v);
    }

    /// Whether `[offset, +len)` is whole sectors inside the disk and, for a change, the disk
    /// is writable; records the violation if not.
    fn check(&self, op: &'static str, offset: u64, len: u64, write: bool) -> bool {
        let size = self.inner.size();
        let inside = offset.checked_add(len).is_some_and(|end| end <= size);
        let whole = offset.is_multiple_of(SECTOR_SIZE) && len.is_multiple_of(SECTOR_SIZE);
        if !inside || !whole {
            self.violate(Violation::OutsideDisk {
                op,
                offset,
                len,
                size,
            });
            false
        } else if write && self.inner.read_only() {
            self.violate(Violation::WriteToReadOnly { op, offset });
            false
        } else {
            true
        }
    }

    fn model(&self) -> std::sync::MutexGuard<'_, Model<'d>> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a change that reached the disk to the model: `data` at `offset`, or zeros.
    fn apply(&self, offset: u64, len: u64, data: Option<&[u8]>, ok: bool) {
        let mut m = self.model();
        if !ok {
            m.unknown = true;
            return;
        }
        // check() passed: the range is inside the disk, and the model is as long.
        let (Ok(start), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            m.unknown = true;
            return;
        };
        let Some(range) = m.bytes.to_mut().get_mut(start..start + len) else {
            m.unknown = true;
            return;
        };
        match data {
            Some(d) => range.copy_from_slice(d),
            None => range.fill(0),
        }
    }

    /// Compares what a read put in `dst` with the model.
    fn compare(&self, offset: u64, dst: &[VolatileSlice<'_>]) {
        if overlapping(dst) {
            return;
        }
        let m = self.model();
        if m.unknown {
            return;
        }
        let got = gather(dst);
        let Some(want) = usize::try_from(offset)
            .ok()
            .and_then(|start| m.bytes.get(start..start + got.len()))
        else {
            return;
        };
        self.counters.reads_checked.fetch_add(1, Ordering::Relaxed);
        if let Some(at) = got.iter().zip(want).position(|(g, w)| g != w) {
            self.violate(Violation::Data {
                offset,
                len: got.len() as u64,
                first_difference: offset + at as u64,
            });
        }
    }
}

/// The bytes of `slices`, in order.
fn gather(slices: &[VolatileSlice<'_>]) -> Vec<u8> {
    let mut out = vec![0u8; slices_len(slices) as usize];
    let mut at = 0;
    for s in slices {
        at += s.copy_to(&mut out[at..]);
    }
    out
}

/// Whether two of `slices` share a byte of host memory.
fn overlapping(slices: &[VolatileSlice<'_>]) -> bool {
    let mut spans: Vec<(usize, usize)> = slices
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            let start = s.ptr_guard().as_ptr() as usize;
            (start, start + s.len())
        })
        .collect();
    spans.sort_unstable();
    spans.windows(2).any(|w| w[1].0 < w[0].1)
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

    fn logical_block_size(&self) -> u32 {
        self.inner.logical_block_size()
    }

    fn read_at(&self, offset: u64, dst: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        let len = slices_len(dst);
        let fine = self.check("read", offset, len, false);
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_read.fetch_add(len, Ordering::Relaxed);
        let r = self.inner.read_at(offset, dst);
        if fine && r.is_ok() {
            self.compare(offset, dst);
        }
        r
    }

    fn write_at(&self, offset: u64, src: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        let len = slices_len(src);
        let fine = self.check("write", offset, len, true);
        // Only a write inside the disk is gathered (at most the disk's size); the backend
        // only reads `src`, so gathering first or after is the same.
        let data = if fine { gather(src) } else { Vec::new() };
        let r = self.inner.write_at(offset, src);
        if fine {
            self.counters.writes.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes_written
                .fetch_add(len, Ordering::Relaxed);
            self.apply(offset, len, Some(&data), r.is_ok());
        }
        r
    }

    fn flush(&self) -> Result<(), DiskError> {
        self.inner.flush()
    }

    fn supports_discard(&self) -> bool {
        self.inner.supports_discard()
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        let fine = self.check("discard", offset, len, true);
        let r = self.inner.discard(offset, len);
        if fine {
            self.counters.ranges.fetch_add(1, Ordering::Relaxed);
            self.apply(offset, len, None, r.is_ok());
        }
        r
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        let fine = self.check("write-zeroes", offset, len, true);
        let r = self.inner.write_zeroes(offset, len);
        if fine {
            self.counters.ranges.fetch_add(1, Ordering::Relaxed);
            self.apply(offset, len, None, r.is_ok());
        }
        r
    }
}
