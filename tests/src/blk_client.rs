//! An independent virtio-blk client over vhost-user: libblkio's Rust implementation (the
//! `blkio` crate, driver `virtio-blk-vhost-user`). Used by tests and by `layerpass-bench blk`.

use std::mem::MaybeUninit;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use blkio::{Blkio, Blkioq, Completion, MemoryRegion, ReqFlags};

/// A connected client with one queue and one shared buffer.
pub struct BlkClient {
    // Field order: the queue and the driver go before the region is forgotten.
    queue: Blkioq,
    blkio: Blkio,
    region: MemoryRegion,
    capacity: u64,
}

impl std::fmt::Debug for BlkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlkClient")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[allow(clippy::needless_pass_by_value, reason = "used as map_err(err)")]
fn err(e: blkio::Error) -> anyhow::Error {
    anyhow!("blkio: {} (errno {})", e.message(), e.errno())
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

    /// Submits reads keeping `depth` in flight until `total` have completed; for benchmarks.
    pub fn read_stream(
        &mut self,
        depth: usize,
        len: usize,
        total: usize,
        mut next: impl FnMut() -> u64,
    ) -> anyhow::Result<()> {
        ensure!(
            depth * len <= self.region.len,
            "queue depth exceeds the buffer"
        );
        let mut completions: Vec<MaybeUninit<Completion>> =
            (0..depth).map(|_| MaybeUninit::uninit()).collect();
        let mut submitted = 0;
        let mut done = 0;
        let mut free: Vec<usize> = (0..depth).collect();
        while done < total {
            while submitted < total
                && let Some(slot) = free.pop()
            {
                let ptr = (self.region.addr + slot * len) as *mut u8;
                self.queue.read(next(), ptr, len, slot, ReqFlags::empty());
                submitted += 1;
            }
            let n = self
                .queue
                .do_io(&mut completions, 1, None, None)
                .map_err(err)?;
            for c in &completions[..n] {
                // SAFETY: do_io initialised the first n completions.
                let c = unsafe { c.assume_init_ref() };
                if c.ret != 0 {
                    bail!("read failed: {}", c.ret);
                }
                free.push(c.user_data);
            }
            done += n;
        }
        Ok(())
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
            ensure!(n > 0, "no completion within 30 s");
            for c in &completions[got..got + n] {
                // SAFETY: do_io initialised these n completions.
                let c = unsafe { c.assume_init_ref() };
                if c.ret != 0 {
                    bail!(
                        "request failed with {} ({})",
                        c.ret,
                        std::io::Error::from_raw_os_error(-c.ret)
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
