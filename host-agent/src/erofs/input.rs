//! The layer stream: gzip, zstd or plain tar told apart by magic bytes, and the sha256 of
//! the uncompressed tar (the layer's diff ID) computed while it is read.

use std::io::{self, BufRead, Read};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use sha2::{Digest, Sha256};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The compression found at the start of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "plain",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

/// Reads the first bytes of `input`, detects the compression and returns a reader of the
/// uncompressed tar.
pub fn open<'a, R: Read + 'a>(mut input: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = head[..got].to_vec();
    let compression = if head.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let whole = io::Cursor::new(head).chain(input);
    let reader: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(whole),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(1 << 16, whole),
        )),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
    };
    Ok((compression, reader))
}

/// Bytes read from the stream at a time; each chunk is shared with the hashing thread.
const CHUNK: usize = 1 << 20;
/// Chunks in flight to the hashing thread (bounds the memory it can hold).
const HASH_QUEUE: usize = 4;

type Chunk = Arc<Vec<u8>>;

/// A buffered reader of the uncompressed layer that also counts it and has a helper
/// thread hash it: the converter's thread reads each byte into a shared chunk once and
/// the diff ID costs it no copy. Errors from the inner reader are tagged so they can be
/// told apart from tar format errors.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    chunk: Chunk,
    filled: usize,
    pos: usize,
    tx: Option<mpsc::SyncSender<(Chunk, usize)>>,
    /// Chunks the hashing thread is done with, for reuse.
    free: mpsc::Receiver<Chunk>,
    hasher: Option<thread::JoinHandle<[u8; 32]>>,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        let (tx, rx) = mpsc::sync_channel::<(Chunk, usize)>(HASH_QUEUE);
        let (free_tx, free) = mpsc::sync_channel::<Chunk>(HASH_QUEUE + 2);
        let hasher = thread::Builder::new()
            .name("diff-id".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for (chunk, len) in rx {
                    h.update(&chunk[..len]);
                    let _ = free_tx.try_send(chunk);
                }
                h.finalize().into()
            })
            .ok();
        Self {
            inner,
            chunk: Arc::new(Vec::new()),
            filled: 0,
            pos: 0,
            tx: Some(tx),
            free,
            hasher,
            bytes: 0,
        }
    }

    /// Reads the next chunk from the stream (0 bytes at its end).
    fn refill(&mut self) -> io::Result<()> {
        // give up our reference first, so a chunk coming back can be reused
        self.chunk = Arc::new(Vec::new());
        let mut buf = loop {
            match self.free.try_recv() {
                Ok(c) => {
                    if let Ok(v) = Arc::try_unwrap(c) {
                        break v;
                    }
                }
                Err(_) => break vec![0u8; CHUNK],
            }
        };
        let n = loop {
            match self.inner.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io::Error::new(e.kind(), StreamError(e))),
                Ok(n) => break n,
            }
        };
        self.chunk = Arc::new(buf);
        self.filled = n;
        self.pos = 0;
        self.bytes += n as u64;
        if n > 0
            && let Some(tx) = &self.tx
        {
            // The receiver lives until `finish` drops the sender.
            let _ = tx.send((Arc::clone(&self.chunk), n));
        }
        Ok(())
    }

    /// Reads the rest of the stream (the end-of-archive blocks and any record padding
    /// after them belong to the diff ID too) and returns `sha256:<hex>` and the length.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        loop {
            self.refill()?;
            if self.filled == 0 {
                break;
            }
        }
        drop(self.tx.take());
        let digest: [u8; 32] = match self.hasher.take().map(thread::JoinHandle::join) {
            Some(Ok(d)) => d,
            _ => return Err(io::Error::other("the diff ID hashing thread failed")),
        };
        Ok((format!("sha256:{}", hex::encode(digest)), self.bytes))
    }
}

impl<R: Read> BufRead for HashingReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.filled {
            self.refill()?;
        }
        Ok(&self.chunk[self.pos..self.filled])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.filled);
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// An error of the underlying stream (read or decompression), not of the tar format.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StreamError(#[source] pub io::Error);

/// If `e` came from the underlying stream, returns that error.
pub fn stream_error(e: &io::Error) -> Option<&io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
    while let Some(err) = cur {
        if let Some(s) = err.downcast_ref::<StreamError>() {
            return Some(&s.0);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_compression_by_magic() {
        let plain = b"hello world".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain[..], 1).unwrap();
        for (data, want) in [
            (&plain, Compression::None),
            (&gz, Compression::Gzip),
            (&zst, Compression::Zstd),
        ] {
            let (c, mut r) = open(&data[..]).unwrap();
            assert_eq!(c, want);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, plain);
        }
        let (c, mut r) = open(&b"ab"[..]).unwrap();
        assert_eq!(c, Compression::None);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab");
    }

    #[test]
    fn hashes_everything_read() {
        let mut r = HashingReader::new(&b"abc"[..]);
        let mut one = [0u8; 1];
        r.read_exact(&mut one).unwrap();
        let (digest, n) = r.finish().unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            digest,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
