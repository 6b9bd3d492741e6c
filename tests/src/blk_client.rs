//! An independent virtio-blk client over vhost-user: libblkio's Rust implementation (the
//! `blkio` crate, driver `virtio-blk-vhost-user`). Used by tests and by `layerpass-bench blk`.

use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use blkio::{Blkio, Blkioq, Completion, MemoryRegion, ReqFlags};

/// A connected client with one queue and one shared buffer.
pub struct BlkClient {
    // Field order: the queue and the driver go before the region is forgotten.
    queue: Blkioq,
    blkio: Blkio,
    region: MemoryRegion,
    capacity: u64,
    socket: PathBuf,
}

impl std::fmt::Debug for BlkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlkClient")
            .field("socket", &self.socket)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[allow(clippy::needless_pass_by_value, reason = "used as map_err(err)")]
fn err(e: blkio::Error) -> anyhow::Error {
    anyhow!("blkio: {} (errno {})", e.message(), e.errno())
}

/// How long [`BlkClient::read_stream`] waits for a completion before giving up (a server
/// that died never completes anything, and nothing else wakes the client).
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(30);

/// `-5` as `Input/output error`: the errno text without the `(os error 5)` suffix.
pub fn errno_text(ret: i32) -> String {
    let text = std::io::Error::from_raw_os_error(ret.saturating_neg()).to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

impl BlkClient {
    /// Connects to `socket`; `read_only` must match the device's RO flag (libblkio refuses
    /// otherwise). `buf_len` bytes of shared buffer are mapped for I/O.
    pub fn connect(socket: &Path, read_only: bool, buf_len: usize) -> anyhow::Result<Self> {
        let mut blkio = Blkio::new("virtio-blk-vhost-user").map_err(err)?;
        let path = socket.to_str().context("socket path is not UTF-8")?;
        blkio.set_str("path", path).map_err(err)?;
        blkio.set_bool("read-only", read_only).map_err(err)?;
        blkio
            .connect()
            .map_err(err)
            .with_context(|| format!("cannot connect to {path}"))?;
        let capacity = blkio.get_u64("capacity").map_err(err)?;
        blkio.set_i32("num-queues", 1).map_err(err)?;
        let mut started = blkio.start().map_err(err)?;
        let queue = started.queues.pop().context("no queue")?;
        let region = blkio.alloc_mem_region(buf_len).map_err(err)?;
        blkio.map_mem_region(&region).map_err(err)?;
        Ok(Self {
            queue,
            blkio,
            region,
            capacity,
            socket: socket.to_owned(),
        })
    }

    /// Device size in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The shared buffer.
    pub fn buffer(&mut self) -> &mut [u8] {
        // SAFETY: the region is `len` bytes of memory mapped by libblkio for this client and
        // stays mapped until `self` is dropped; `&mut self` prevents aliasing from Rust, and
        // no request is in flight (every method waits for its completions).
        unsafe { std::slice::from_raw_parts_mut(self.region.addr as *mut u8, self.region.len) }
    }

    /// Reads `len` bytes at `offset` into the start of the buffer; returns a copy.
    pub fn read(&mut self, offset: u64, len: usize) -> anyhow::Result<Vec<u8>> {
        ensure!(
            len <= self.region.len,
            "read of {len} bytes exceeds the buffer"
        );
        let ptr = self.region.addr as *mut u8;
        self.queue.read(offset, ptr, len, 0, ReqFlags::empty());
        self.wait(1)?;
        Ok(self.buffer()[..len].to_vec())
    }

    /// Writes `data` at `offset` through the buffer.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> anyhow::Result<()> {
        ensure!(data.len() <= self.region.len, "write exceeds the buffer");
        self.buffer()[..data.len()].copy_from_slice(data);
        let ptr = self.region.addr as *const u8;
        self.queue
            .write(offset, ptr, data.len(), 0, ReqFlags::empty());
        self.wait(1)
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.queue.flush(0, ReqFlags::empty());
        self.wait(1)
    }

    pub fn discard(&mut self, offset: u64, len: u64) -> anyhow::Result<()> {
        self.queue.discard(offset, len, 0, ReqFlags::empty());
        self.wait(1)
    }

    /// Submits `count` reads of `len` bytes at `offsets` (each into its own slice of the
    /// buffer, `len` apart) and waits for all; for benchmarks. Fails on the first error.
    pub fn read_batch(&mut self, offsets: &[u64], len: usize) -> anyhow::Result<()> {
        ensure!(
            offsets.len() * len <= self.region.len,
            "batch exceeds the buffer"
        );
        for (i, &off) in offsets.iter().enumerate() {
            // i * len < region.len, checked above.
            let ptr = (self.region.addr + i * len) as *mut u8;
            self.queue.read(off, ptr, len, i, ReqFlags::empty());
        }
        self.wait(offsets.len())
    }

    /// Submits reads of `len` bytes at the offsets `next` returns, keeping `depth` in flight,
    /// until `next` returns `None` and every read has completed; for benchmarks. Returns the
    /// number of reads completed.
    ///
    /// With `latencies`, each successful read's time from submission to completion is pushed
    /// in nanoseconds (saturating at `u32::MAX`, 4.3 s): one `Instant` per slot, taken just
    /// before the request is queued (libblkio publishes it in the avail ring right away, and
    /// a polling server may start on it before `do_io` kicks), and one clock read after each
    /// `do_io` for all the completions it returns. Preallocate the vector so pushes never
    /// reallocate.
    ///
    /// A failed read stops further submissions; the reads in flight are still waited for
    /// (the buffer stays mapped until they are done), then the first failure is returned
    /// with its offset, length, socket and errno.
    pub fn read_stream(
        &mut self,
        depth: usize,
        len: usize,
        mut next: impl FnMut() -> Option<u64>,
        mut latencies: Option<&mut Vec<u32>>,
    ) -> anyhow::Result<u64> {
        ensure!(
            depth > 0 && depth * len <= self.region.len,
            "queue depth {depth} x {len} bytes does not fit the {}-byte buffer",
            self.region.len
        );
        let mut completions: Vec<MaybeUninit<Completion>> =
            (0..depth).map(|_| MaybeUninit::uninit()).collect();
        let mut free: Vec<usize> = (0..depth).rev().collect();
        // Per slot: the offset being read and when its request went to the device.
        let mut offsets = vec![0u64; depth];
        let mut started = vec![Instant::now(); depth];
        let recording = latencies.is_some();
        let mut in_flight = 0usize;
        let mut done = 0u64;
        let mut more = true;
        let mut failures = 0u64;
        let mut first_failure: Option<(u64, i32)> = None;
        loop {
            while more
                && first_failure.is_none()
                && let Some(slot) = free.pop()
            {
                let Some(offset) = next() else {
                    free.push(slot);
                    more = false;
                    break;
                };
                offsets[slot] = offset;
                // slot * len + len <= depth * len <= region.len, checked above.
                let ptr = (self.region.addr + slot * len) as *mut u8;
                if recording {
                    started[slot] = Instant::now();
                }
                self.queue.read(offset, ptr, len, slot, ReqFlags::empty());
                in_flight += 1;
            }
            if in_flight == 0 {
                break;
            }
            let mut timeout = COMPLETION_TIMEOUT;
            let n = self
                .queue
                .do_io(&mut completions, 1, Some(&mut timeout), None)
                .map_err(err)
                .with_context(|| format!("reading from {}", self.socket.display()))?;
            ensure!(
                n > 0,
                "no completion within {} s from {} ({in_flight} reads in flight)",
                COMPLETION_TIMEOUT.as_secs(),
                self.socket.display()
            );
            let now = recording.then(Instant::now);
            for c in &completions[..n] {
                // SAFETY: do_io initialised the first n completions.
                let c = unsafe { c.assume_init_ref() };
                let slot = c.user_data;
                ensure!(slot < depth, "completion for unknown slot {slot}");
                free.push(slot);
                in_flight -= 1;
                if c.ret != 0 {
                    failures += 1;
                    first_failure.get_or_insert((offsets[slot], c.ret));
                    continue;
                }
                done += 1;
                if let (Some(lat), Some(now)) = (latencies.as_deref_mut(), now) {
                    let ns = now.saturating_duration_since(started[slot]).as_nanos();
                    lat.push(u32::try_from(ns).unwrap_or(u32::MAX));
                }
            }
        }
        if let Some((offset, ret)) = first_failure {
            bail!(
                "read failed at offset {offset} (+{len}) on {}: {ret} ({}); {failures} of {} reads failed",
                self.socket.display(),
                errno_text(ret),
                done + failures
            );
        }
        Ok(done)
    }

    fn wait(&mut self, count: usize) -> anyhow::Result<()> {
        let mut completions: Vec<MaybeUninit<Completion>> =
            (0..count).map(|_| MaybeUninit::uninit()).collect();
        let mut got = 0;
        while got < count {
            let mut timeout = Duration::from_secs(30);
            let n = self
                .queue
                .do_io(
                    &mut completions[got..],
                    count - got,
                    Some(&mut timeout),
                    None,
                )
                .map_err(err)?;
            ensure!(
                n > 0,
                "no completion within 30 s from {}",
                self.socket.display()
            );
            for c in &completions[got..got + n] {
                // SAFETY: do_io initialised these n completions.
                let c = unsafe { c.assume_init_ref() };
                if c.ret != 0 {
                    bail!(
                        "request failed on {}: {} ({})",
                        self.socket.display(),
                        c.ret,
                        errno_text(c.ret)
                    );
                }
            }
            got += n;
        }
        Ok(())
    }
}

impl Drop for BlkClient {
    fn drop(&mut self) {
        self.blkio.unmap_mem_region(&self.region);
        self.blkio.free_mem_region(&self.region);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_text_drops_the_os_error_suffix() {
        assert_eq!(errno_text(-5), "Input/output error");
        assert_eq!(errno_text(-95), "Operation not supported");
    }
}
