//! The tar as it is read: every 512-byte block hashed for dm-verity (as blocks of the tar,
//! renumbered once the metadata's size is known) on a thread of its own while the next
//! 1 MiB is read, counted against the limits, and — for a decompressed layer — copied into
//! the file that becomes the tar. One pass, no copy of a plain tar.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;

use crate::erofs::error::ErofsError;
use crate::erofs::input::{OverLimit, StreamError};
use crate::verity::LeafDigests;

/// Bytes read and hashed at a time (hashed on all cores, see [`LeafDigests::record`]).
const BUFFER: usize = 1 << 20;
/// The tar's (and the index's) block size.
const BLOCK: usize = 512;

/// Where the decompressed tar is written.
#[derive(Debug)]
pub struct Copy {
    pub file: File,
    pub path: PathBuf,
}

pub struct TarSource<'a> {
    inner: Box<dyn Read + Send + 'a>,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    eof: bool,
    /// The tar block `buf[0]` is.
    block: u64,
    /// Bytes read from `inner`.
    total: u64,
    limit: u64,
    /// Full buffers to the hashing thread, empty ones back: reading goes on while the
    /// previous buffer is hashed.
    to_hash: Option<mpsc::SyncSender<(Vec<u8>, usize, u64)>>,
    free: mpsc::Receiver<Vec<u8>>,
    hasher: Option<thread::JoinHandle<Hashed>>,
}

type Hashed = Result<(LeafDigests, Option<Copy>), ErofsError>;

impl std::fmt::Debug for TarSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarSource")
            .field("total", &self.total)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<'a> TarSource<'a> {
    /// Reads `inner` (the uncompressed tar), recording block digests into `leaves`
    /// (block 0 = the tar's first block) on a thread of its own and refusing more than
    /// `limit` bytes.
    ///
    /// # Errors
    /// The hashing thread cannot be started.
    pub fn new(
        inner: Box<dyn Read + Send + 'a>,
        leaves: LeafDigests,
        limit: u64,
        copy: Option<Copy>,
    ) -> Result<Self, ErofsError> {
        let (to_hash, work) = mpsc::sync_channel::<(Vec<u8>, usize, u64)>(1);
        let (give_back, free) = mpsc::channel();
        give_back
            .send(vec![0u8; BUFFER])
            .map_err(|_| ErofsError::Read(io::Error::other("buffer channel closed")))?;
        let hasher = thread::Builder::new()
            .name("tar-leaves".into())
            .spawn(move || hash_buffers(&work, &give_back, leaves, copy))
            .map_err(ErofsError::io("start the hashing thread for", "the tar"))?;
        Ok(Self {
            inner,
            buf: vec![0u8; BUFFER],
            pos: 0,
            filled: 0,
            eof: false,
            block: 0,
            total: 0,
            limit,
            to_hash: Some(to_hash),
            free,
            hasher: Some(hasher),
        })
    }

    /// Stops the hashing thread and returns what it recorded, or its failure.
    fn stop(&mut self) -> Hashed {
        self.to_hash = None;
        match self.hasher.take().map(thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(ErofsError::Read(io::Error::other(
                "the tar hashing thread failed",
            ))),
        }
    }

    /// The failure behind an I/O error this reader returned, if it was its own (the
    /// hashing thread's: recording or copying).
    pub fn take_failure(&mut self) -> Option<ErofsError> {
        self.stop().err()
    }

    /// Reads (and hashes) the rest of the stream — whatever follows the end-of-archive
    /// blocks is part of the tar file, so of the disk — and returns the digests, the
    /// tar's length and the copy, flushed.
    pub fn finish(mut self) -> Result<(LeafDigests, u64, Option<Copy>), ErofsError> {
        loop {
            match self.fill_buf() {
                Ok([]) => break,
                Ok(b) => {
                    let n = b.len();
                    self.consume(n);
                }
                Err(e) => {
                    return Err(self.stop().err().unwrap_or_else(|| read_error(e)));
                }
            }
        }
        let (leaves, mut copy) = self.stop()?;
        if let Some(c) = &mut copy {
            c.file
                .flush()
                .and_then(|()| c.file.sync_all())
                .map_err(ErofsError::io("write", &c.path))?;
        }
        Ok((leaves, self.total, copy))
    }

    /// Hands the consumed buffer to the hashing thread, then refills another.
    fn refill(&mut self) -> io::Result<()> {
        if self.filled > 0 {
            let gone = || io::Error::other("hashing the tar failed");
            let next = self.free.recv().map_err(|_| gone())?;
            let full = std::mem::replace(&mut self.buf, next);
            let blocks = self.filled.div_ceil(BLOCK) as u64;
            self.to_hash
                .as_ref()
                .ok_or_else(gone)?
                .send((full, self.filled, self.block))
                .map_err(|_| gone())?;
            self.block += blocks;
            self.filled = 0;
            self.pos = 0;
        }
        while !self.eof && self.filled < self.buf.len() {
            match self.inner.read(&mut self.buf[self.filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.filled += n;
                    self.total += n as u64;
                    if self.total > self.limit {
                        return Err(io::Error::other(OverLimit { limit: self.limit }));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io::Error::other(StreamError(e))),
            }
        }
        Ok(())
    }
}

impl Drop for TarSource<'_> {
    fn drop(&mut self) {
        self.to_hash = None;
        if let Some(h) = self.hasher.take() {
            let _ = h.join();
        }
    }
}

/// The hashing thread: records the digests of each buffer's first `n` bytes (a short last
/// block zero-padded, as the disk pads the tar) as blocks from `block`, copies them, and
/// gives the buffer back.
fn hash_buffers(
    work: &mpsc::Receiver<(Vec<u8>, usize, u64)>,
    give_back: &mpsc::Sender<Vec<u8>>,
    mut leaves: LeafDigests,
    mut copy: Option<Copy>,
) -> Hashed {
    for (mut buf, n, block) in work {
        if let Some(c) = &mut copy {
            c.file
                .write_all(&buf[..n])
                .map_err(ErofsError::io("write", &c.path))?;
        }
        let whole = n.next_multiple_of(BLOCK);
        buf[n..whole].fill(0);
        leaves.record(block, &buf[..whole])?;
        // the reader may be gone (it stopped early); nothing to give back to then
        let _ = give_back.send(buf);
    }
    Ok((leaves, copy))
}

impl BufRead for TarSource<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.filled && !(self.eof && self.filled == 0) {
            self.refill()?;
        }
        Ok(&self.buf[self.pos..self.filled])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.filled);
    }
}

impl Read for TarSource<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

fn read_error(e: io::Error) -> ErofsError {
    if let Some(limit) = crate::erofs::input::over_limit(&e) {
        return ErofsError::LayerTooLarge { limit };
    }
    ErofsError::Read(e)
}
