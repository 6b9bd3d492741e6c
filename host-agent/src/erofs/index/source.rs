//! The tar as it is read: every 512-byte block hashed for dm-verity (as blocks of the tar,
//! renumbered once the metadata's size is known), counted against the limits, and — for
//! a decompressed layer — copied into the file that becomes the tar. One pass, no copy of
//! a plain tar.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;

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
    leaves: LeafDigests,
    /// The tar block `buf[0]` is.
    block: u64,
    /// Bytes read from `inner`.
    total: u64,
    limit: u64,
    copy: Option<Copy>,
    /// A hashing or copying failure, reported as such by [`finish`](Self::finish).
    failed: Option<ErofsError>,
}

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
    /// (block 0 = the tar's first block) and refusing more than `limit` bytes.
    pub fn new(
        inner: Box<dyn Read + Send + 'a>,
        leaves: LeafDigests,
        limit: u64,
        copy: Option<Copy>,
    ) -> Self {
        Self {
            inner,
            buf: vec![0u8; BUFFER],
            pos: 0,
            filled: 0,
            eof: false,
            leaves,
            block: 0,
            total: 0,
            limit,
            copy,
            failed: None,
        }
    }

    /// The failure behind an I/O error this reader returned, if it was its own.
    pub fn take_failure(&mut self) -> Option<ErofsError> {
        self.failed.take()
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
                Err(e) => return Err(self.failed.take().unwrap_or_else(|| read_error(e))),
            }
        }
        if let Some(c) = &mut self.copy {
            c.file
                .flush()
                .and_then(|()| c.file.sync_all())
                .map_err(ErofsError::io("write", &c.path))?;
        }
        Ok((self.leaves, self.total, self.copy))
    }

    /// Hashes (and copies) the consumed buffer, then refills it.
    fn refill(&mut self) -> io::Result<()> {
        if self.filled > 0 {
            if let Err(e) = self.take_in() {
                self.failed = Some(e);
                return Err(io::Error::other("hashing the tar failed"));
            }
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

    /// Records the digests of `buf[..filled]` (a short last block zero-padded, as the
    /// disk pads the tar) and copies it.
    fn take_in(&mut self) -> Result<(), ErofsError> {
        let n = self.filled;
        if let Some(c) = &mut self.copy {
            c.file
                .write_all(&self.buf[..n])
                .map_err(ErofsError::io("write", &c.path))?;
        }
        let whole = n.next_multiple_of(BLOCK);
        self.buf[n..whole].fill(0);
        self.leaves.record(self.block, &self.buf[..whole])?;
        self.block += (whole / BLOCK) as u64;
        Ok(())
    }
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
