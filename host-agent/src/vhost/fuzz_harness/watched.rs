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
//!
//! Two ways to watch:
//! - [`Watched::new`] (the queue harness: one queue, one thread): the inner disk reads and
//!   writes guest memory itself, the bytes are compared and recorded around its call;
//! - [`Watched::shared`] (the engine harness: a long-lived disk served by several queue
//!   workers while the harness writes guest memory): every access is *buffered* and
//!   *serialised*: a read goes into a private buffer that is compared with the model and only
//!   then copied to guest memory, a write is gathered once and the inner disk writes that
//!   copy, and the model's lock is held across the inner call. Whatever another queue or the
//!   guest does to the same guest memory or disk range meanwhile, the model and the disk
//!   cannot disagree. [`Watched::reset`] brings the model back to the start between runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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

impl Counters {
    fn reset(&self) {
        for c in [
            &self.reads,
            &self.bytes_read,
            &self.reads_checked,
            &self.writes,
            &self.bytes_written,
            &self.ranges,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// A borrowed or shared handle.
#[derive(Debug)]
enum Handle<'d, T: ?Sized> {
    Borrowed(&'d T),
    Shared(Arc<T>),
}

impl<T: ?Sized> std::ops::Deref for Handle<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            Self::Borrowed(t) => t,
            Self::Shared(t) => t,
        }
    }
}

#[derive(Debug)]
struct Model {
    /// The disk's bytes once changed (`None`: as at the start).
    changed: Option<Vec<u8>>,
    /// A write failed: what the disk holds is unknown from here on.
    unknown: bool,
}

/// The checking wrapper.
#[derive(Debug)]
pub struct Watched<'d> {
    inner: Handle<'d, dyn Disk + 'd>,
    /// What the disk holds at the start of a run.
    start: Handle<'d, [u8]>,
    model: Mutex<Model>,
    buffered: bool,
    violation: Mutex<Option<Violation>>,
    pub counters: Counters,
}

impl<'d> Watched<'d> {
    /// Wraps `inner`, which holds `contents` (as long as the disk) at the start of the run;
    /// the inner disk accesses guest memory itself.
    pub fn new(inner: &'d dyn Disk, contents: &'d [u8]) -> Self {
        Self::with(Handle::Borrowed(inner), Handle::Borrowed(contents), false)
    }

    fn with(inner: Handle<'d, dyn Disk + 'd>, start: Handle<'d, [u8]>, buffered: bool) -> Self {
        let unknown = start.len() as u64 != inner.size();
        Self {
            inner,
            start,
            model: Mutex::new(Model {
                changed: None,
                unknown,
            }),
            buffered,
            violation: Mutex::new(None),
            counters: Counters::default(),
        }
    }

    /// The first violation seen since the start (or the last [`Watched::reset`]).
    pub fn violation(&self) -> Option<Violation> {
        self.violation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn violate(&self, v: Violation) {
        // Only the first violation is kept.
        self.violation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(v);
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

    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a change that reached the disk to the model: `data` at `offset`, or zeros.
    fn apply(&self, m: &mut Model, offset: u64, len: u64, data: Option<&[u8]>, ok: bool) {
        if !ok {
            m.unknown = true;
            return;
        }
        // check() passed: the range is inside the disk, and the model is as long.
        let (Ok(start), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            m.unknown = true;
            return;
        };
        let bytes = m.changed.get_or_insert_with(|| self.start.to_vec());
        let Some(range) = bytes.get_mut(start..start + len) else {
            m.unknown = true;
            return;
        };
        match data {
            Some(d) => range.copy_from_slice(d),
            None => range.fill(0),
        }
    }

    /// Compares the bytes a read returned with the model.
    fn compare(&self, m: &Model, offset: u64, got: &[u8]) {
        if m.unknown {
            return;
        }
        let bytes = m.changed.as_deref().unwrap_or(&self.start);
        let Some(want) = usize::try_from(offset)
            .ok()
            .and_then(|start| bytes.get(start..start + got.len()))
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

impl Watched<'static> {
    /// Wraps a disk shared with a long-lived engine, buffered and serialised (see the module
    /// documentation); `contents` is what it holds at the start of every run.
    pub fn shared(inner: Arc<dyn Disk>, contents: Arc<[u8]>) -> Self {
        Self::with(Handle::Shared(inner), Handle::Shared(contents), true)
    }

    /// Back to the start of a run: the model as the disk's contents at the start (the caller
    /// has emptied a writable disk), no violation, counters at zero.
    pub fn reset(&self) {
        let mut m = self.model();
        m.changed = None;
        m.unknown = self.start.len() as u64 != self.inner.size();
        drop(m);
        *self
            .violation
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.counters.reset();
    }

    /// What the model says `[offset, +len)` holds now (`None`: unknown, or outside).
    pub fn expected(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let m = self.model();
        if m.unknown {
            return None;
        }
        let bytes = m.changed.as_deref().unwrap_or(&self.start);
        let start = usize::try_from(offset).ok()?;
        bytes
            .get(start..start.checked_add(len)?)
            .map(<[u8]>::to_vec)
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

/// Copies `src` into `slices`, in order.
fn scatter(src: &[u8], slices: &[VolatileSlice<'_>]) {
    let mut at = 0;
    for s in slices {
        let Some(rest) = src.get(at..) else {
            return;
        };
        s.copy_from(rest);
        at += s.len().min(rest.len());
    }
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
        if !self.buffered {
            let r = self.inner.read_at(offset, dst);
            if fine && r.is_ok() && !overlapping(dst) {
                self.compare(&self.model(), offset, &gather(dst));
            }
            return r;
        }
        // Checked above: a read that reaches the disk is at most the disk's size.
        let mut buf = vec![0u8; if fine { len as usize } else { 0 }];
        let m = self.model();
        let r = if fine {
            self.inner
                .read_at(offset, &[VolatileSlice::from(&mut buf[..])])
        } else {
            self.inner.read_at(offset, dst)
        };
        if fine && r.is_ok() {
            self.compare(&m, offset, &buf);
            scatter(&buf, dst);
        }
        r
    }

    fn write_at(&self, offset: u64, src: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        let len = slices_len(src);
        let fine = self.check("write", offset, len, true);
        // Only a write inside the disk is gathered (at most the disk's size); the backend
        // only reads `src`, so gathering first or after is the same.
        let mut data = if fine { gather(src) } else { Vec::new() };
        let held = self.buffered.then(|| self.model());
        let r = if fine && self.buffered {
            self.inner
                .write_at(offset, &[VolatileSlice::from(&mut data[..])])
        } else {
            self.inner.write_at(offset, src)
        };
        if fine {
            self.counters.writes.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes_written
                .fetch_add(len, Ordering::Relaxed);
            let mut m = held.unwrap_or_else(|| self.model());
            self.apply(&mut m, offset, len, Some(&data), r.is_ok());
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
        self.range("discard", offset, len, |d| d.discard(offset, len))
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.range("write-zeroes", offset, len, |d| d.write_zeroes(offset, len))
    }
}

impl Watched<'_> {
    /// A discard or write-zeroes: the range reads as zeros afterwards.
    fn range(
        &self,
        op: &'static str,
        offset: u64,
        len: u64,
        call: impl FnOnce(&dyn Disk) -> Result<(), DiskError>,
    ) -> Result<(), DiskError> {
        let fine = self.check(op, offset, len, true);
        let held = self.buffered.then(|| self.model());
        let r = call(&*self.inner);
        if fine {
            self.counters.ranges.fetch_add(1, Ordering::Relaxed);
            let mut m = held.unwrap_or_else(|| self.model());
            self.apply(&mut m, offset, len, None, r.is_ok());
        }
        r
    }
}
