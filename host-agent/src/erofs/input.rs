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
pub fn open<'a, R: Read + Send + 'a>(
    mut input: R,
) -> io::Result<(Compression, Box<dyn Read + Send + 'a>)> {
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
    let reader: Box<dyn Read + Send + 'a> = match compression {
        Compression::None => Box::new(whole),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(1 << 16, whole),
        )),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
    };
    Ok((compression, reader))
}

/// Bytes read from the stream at a time; each chunk is shared with the hashing thread.
const CHUNK: usize = 256 << 10;
/// Chunks in flight to each of the converter and the hashing thread (with `CHUNK`, bounds
/// the memory the pipeline holds to a few MiB).
const QUEUE: usize = 4;

type Chunk = Arc<Vec<u8>>;

/// The uncompressed layer, read (and decompressed) on a thread of its own and hashed on
/// another: the reading thread fills shared chunks that go both to the converter, through
/// [`BufRead`], and to the diff-ID hash, so that decompression, hashing and conversion run
/// side by side and each byte is copied out of the stream once. Errors from the stream
/// are tagged so they can be told apart from tar format errors.
#[derive(Debug)]
pub struct HashingReader<'scope> {
    data: mpsc::Receiver<io::Result<(Chunk, usize)>>,
    chunk: Chunk,
    filled: usize,
    pos: usize,
    eof: bool,
    /// The stream failed: it has no end to reach, and no diff ID.
    failed: bool,
    hasher: Option<thread::ScopedJoinHandle<'scope, [u8; 32]>>,
    bytes: u64,
}

impl<'scope> HashingReader<'scope> {
    /// Starts reading `inner` on a thread of `scope`. If the converter stops early, the
    /// reading thread ends after the read it is in returns.
    pub fn spawn<R: Read + Send + 'scope>(
        scope: &'scope thread::Scope<'scope, '_>,
        mut inner: R,
    ) -> io::Result<Self> {
        let (data_tx, data) = mpsc::sync_channel::<io::Result<(Chunk, usize)>>(QUEUE);
        let (hash_tx, hash_rx) = mpsc::sync_channel::<(Chunk, usize)>(QUEUE);
        let (free_tx, free) = mpsc::sync_channel::<Chunk>(QUEUE + 2);
        let hasher =
            thread::Builder::new()
                .name("diff-id".into())
                .spawn_scoped(scope, move || {
                    let mut h = Sha256::new();
                    for (chunk, len) in hash_rx {
                        h.update(&chunk[..len]);
                        let _ = free_tx.try_send(chunk);
                    }
                    let digest: [u8; 32] = h.finalize().into();
                    digest
                })?;
        thread::Builder::new()
            .name("layer-read".into())
            .spawn_scoped(scope, move || {
                loop {
                    let mut buf = loop {
                        match free.try_recv() {
                            Ok(c) => {
                                if let Ok(v) = Arc::try_unwrap(c) {
                                    break v;
                                }
                            }
                            Err(_) => break vec![0u8; CHUNK],
                        }
                    };
                    let n = loop {
                        match inner.read(&mut buf) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            r => break r,
                        }
                    };
                    let n = match n {
                        Ok(n) => n,
                        Err(e) => {
                            let _ = data_tx.send(Err(io::Error::new(e.kind(), StreamError(e))));
                            return;
                        }
                    };
                    let chunk = Arc::new(buf);
                    if n > 0 && hash_tx.send((Arc::clone(&chunk), n)).is_err() {
                        return;
                    }
                    if data_tx.send(Ok((chunk, n))).is_err() || n == 0 {
                        return;
                    }
                }
            })?;
        Ok(Self {
            data,
            chunk: Arc::new(Vec::new()),
            filled: 0,
            pos: 0,
            eof: false,
            failed: false,
            hasher: Some(hasher),
            bytes: 0,
        })
    }

    /// Takes the next chunk from the reading thread (none at the end of the stream).
    fn refill(&mut self) -> io::Result<()> {
        // give up our reference first, so that the reading thread can reuse the buffer
        self.chunk = Arc::new(Vec::new());
        self.filled = 0;
        self.pos = 0;
        if self.failed {
            return Err(io::Error::other(StreamError(io::Error::other(
                "the layer stream failed before its end",
            ))));
        }
        if self.eof {
            return Ok(());
        }
        match self.data.recv() {
            Ok(Ok((chunk, n))) => {
                self.chunk = chunk;
                self.filled = n;
                self.bytes += n as u64;
                self.eof = n == 0;
                Ok(())
            }
            Ok(Err(e)) => {
                self.failed = true;
                Err(e)
            }
            Err(_) => {
                self.failed = true;
                Err(io::Error::other(StreamError(io::Error::other(
                    "the layer reading thread stopped",
                ))))
            }
        }
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
        let digest: [u8; 32] = match self.hasher.take().map(thread::ScopedJoinHandle::join) {
            Some(Ok(d)) => d,
            _ => return Err(io::Error::other("the diff ID hashing thread failed")),
        };
        Ok((format!("sha256:{}", hex::encode(digest)), self.bytes))
    }
}

impl BufRead for HashingReader<'_> {
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

impl Read for HashingReader<'_> {
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
        thread::scope(|s| {
            let mut r = HashingReader::spawn(s, &b"abc"[..]).unwrap();
            let mut one = [0u8; 1];
            r.read_exact(&mut one).unwrap();
            let (digest, n) = r.finish().unwrap();
            assert_eq!(n, 3);
            assert_eq!(
                digest,
                "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            );
        });
    }

    #[test]
    fn many_chunks_arrive_in_order_and_are_hashed() {
        let data: Vec<u8> = (0..(3 * CHUNK * QUEUE + 12_345))
            .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
            .collect();
        thread::scope(|s| {
            let mut r = HashingReader::spawn(s, &data[..]).unwrap();
            let mut got = vec![0u8; 1_000_000];
            r.read_exact(&mut got).unwrap();
            assert!(got == data[..1_000_000]);
            let (digest, n) = r.finish().unwrap();
            assert_eq!(n, data.len() as u64);
            assert_eq!(
                digest,
                format!("sha256:{}", hex::encode(Sha256::digest(&data)))
            );
        });
    }

    /// A reader failing after some bytes.
    struct Failing(usize);

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad block"));
            }
            let n = self.0.min(buf.len());
            buf[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn stream_errors_are_tagged_and_stop_the_reader() {
        thread::scope(|s| {
            let mut r = HashingReader::spawn(s, Failing(CHUNK + 10)).unwrap();
            let mut all = Vec::new();
            let e = r.read_to_end(&mut all).unwrap_err();
            assert_eq!(all.len(), CHUNK + 10);
            let inner = stream_error(&e).expect("tagged as a stream error");
            assert_eq!(inner.to_string(), "bad block");
            assert!(r.finish().is_err());
        });
    }

    #[test]
    fn a_reader_dropped_early_does_not_hold_up_the_scope() {
        // an endless stream: the reading thread must stop once nobody takes its chunks
        thread::scope(|s| {
            let mut r = HashingReader::spawn(s, io::repeat(1)).unwrap();
            let mut some = [0u8; 100];
            r.read_exact(&mut some).unwrap();
            drop(r);
        });
    }
}
