//! The layer stream: gzip, zstd or plain tar told apart by magic bytes, and the sha256 of
//! the uncompressed tar (the layer's diff ID) computed while it is read.

use std::io::{self, BufRead, Read};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use sha2::{Digest, Sha256};

pub use crate::compression::Compression;

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
    let compression = Compression::sniff(&head);
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
const CHUNK: usize = 1 << 20;
/// Chunks in flight to the hashing thread, and from a reading thread to the converter
/// (with `CHUNK`, bounds the memory the pipeline holds to a few MiB; with fewer, measured,
/// the threads wait on each other more).
const QUEUE: usize = 4;

type Chunk = Arc<Vec<u8>>;

/// Reads chunks of the stream and hands a share of each to the hashing thread.
struct Producer<'a> {
    inner: Box<dyn Read + Send + 'a>,
    hash_tx: mpsc::SyncSender<(Chunk, usize)>,
    /// Chunks the hashing thread is done with, for reuse.
    free: mpsc::Receiver<Chunk>,
}

impl Producer<'_> {
    /// The next chunk (0 bytes at the end of the stream). `Ok(None)`: the hashing thread
    /// is gone.
    fn next(&mut self) -> io::Result<Option<(Chunk, usize)>> {
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
        let chunk = Arc::new(buf);
        if n > 0 && self.hash_tx.send((Arc::clone(&chunk), n)).is_err() {
            return Ok(None);
        }
        Ok(Some((chunk, n)))
    }
}

/// Where the converter's chunks come from.
enum Source<'a> {
    /// Read on the converter's thread (a plain tar: reading is one copy, cheaper where the
    /// bytes are then used).
    Inline(Producer<'a>),
    /// Read (decompressed) on a thread of its own.
    Thread(mpsc::Receiver<io::Result<(Chunk, usize)>>),
    /// Closed, so that the hashing thread sees the end of its input.
    Done,
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Inline(_) => "Inline",
            Self::Thread(_) => "Thread",
            Self::Done => "Done",
        })
    }
}

/// The uncompressed layer, hashed on a thread of its own while the converter reads it:
/// each chunk read from the stream is shared by the converter, through [`BufRead`], and the
/// diff-ID hash, so each byte is copied out of the stream once. A compressed layer is also
/// decompressed on a thread of its own, so that decompression, hashing and conversion run
/// side by side. Errors from the stream are tagged so they can be told apart from tar
/// format errors.
#[derive(Debug)]
pub struct HashingReader<'scope> {
    source: Source<'scope>,
    chunk: Chunk,
    filled: usize,
    pos: usize,
    eof: bool,
    /// The stream failed: it has no end to reach, and no diff ID.
    failed: bool,
    hasher: Option<thread::ScopedJoinHandle<'scope, [u8; 32]>>,
    bytes: u64,
    /// Most bytes the stream may give (see [`OverLimit`]).
    limit: u64,
}

impl<'scope> HashingReader<'scope> {
    /// Starts hashing `inner` on a thread of `scope`, and reading it on another when
    /// `read_thread`. If the converter stops early, the reading thread ends after the
    /// read it is in returns. A stream giving more than `limit` bytes fails with
    /// [`OverLimit`] once it has (`over_limit` finds it), and gives nothing more.
    pub fn spawn<R: Read + Send + 'scope>(
        scope: &'scope thread::Scope<'scope, '_>,
        inner: R,
        read_thread: bool,
        limit: u64,
    ) -> io::Result<Self> {
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
        let mut producer = Producer {
            inner: Box::new(inner),
            hash_tx,
            free,
        };
        let source = if read_thread {
            let (data_tx, data) = mpsc::sync_channel::<io::Result<(Chunk, usize)>>(QUEUE);
            thread::Builder::new()
                .name("layer-read".into())
                .spawn_scoped(scope, move || {
                    loop {
                        let (msg, last) = match producer.next() {
                            Ok(None) => return,
                            Ok(Some((c, n))) => (Ok((c, n)), n == 0),
                            Err(e) => (Err(e), true),
                        };
                        if data_tx.send(msg).is_err() || last {
                            return;
                        }
                    }
                })?;
            Source::Thread(data)
        } else {
            Source::Inline(producer)
        };
        Ok(Self {
            source,
            chunk: Arc::new(Vec::new()),
            filled: 0,
            pos: 0,
            eof: false,
            failed: false,
            hasher: Some(hasher),
            bytes: 0,
            limit,
        })
    }

    /// Takes the next chunk (none at the end of the stream).
    fn refill(&mut self) -> io::Result<()> {
        // give up our reference first, so that the buffer can be reused
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
        // `Ok(None)`: a reading or hashing thread is gone
        let next = match &mut self.source {
            Source::Inline(p) => p.next(),
            Source::Thread(rx) => rx.recv().map_or(Ok(None), |r| r.map(Some)),
            Source::Done => Ok(None),
        };
        match next {
            Ok(Some((chunk, n))) => {
                self.bytes += n as u64;
                if self.bytes > self.limit {
                    self.failed = true;
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        OverLimit { limit: self.limit },
                    ));
                }
                self.chunk = chunk;
                self.filled = n;
                self.eof = n == 0;
                Ok(())
            }
            Ok(None) => {
                self.failed = true;
                Err(io::Error::other(StreamError(io::Error::other(
                    "a layer reading or hashing thread stopped",
                ))))
            }
            Err(e) => {
                self.failed = true;
                Err(e)
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
        self.source = Source::Done;
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
        read_buffered(self, buf)
    }
}

/// `Read::read` for a reader whose buffer is the source: one copy out of `fill_buf`.
pub(super) fn read_buffered(r: &mut impl BufRead, buf: &mut [u8]) -> io::Result<usize> {
    let avail = r.fill_buf()?;
    let n = avail.len().min(buf.len());
    buf[..n].copy_from_slice(&avail[..n]);
    r.consume(n);
    Ok(n)
}

/// An error of the underlying stream (read or decompression), not of the tar format.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StreamError(#[source] pub io::Error);

/// The uncompressed stream went past its limit (`ConvertOptions::max_layer_bytes`).
#[derive(Debug, thiserror::Error)]
#[error("the uncompressed layer exceeds {limit} bytes")]
pub struct OverLimit {
    pub limit: u64,
}

/// If `e` is (or wraps) an [`OverLimit`], returns the limit.
pub fn over_limit(e: &io::Error) -> Option<u64> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
    while let Some(err) = cur {
        if let Some(o) = err.downcast_ref::<OverLimit>() {
            return Some(o.limit);
        }
        cur = err.source();
    }
    None
}

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
            let mut r = HashingReader::spawn(s, &b"abc"[..], false, u64::MAX).unwrap();
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
        for threaded in [false, true] {
            let data: Vec<u8> = (0..(3 * CHUNK * QUEUE + 12_345))
                .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
                .collect();
            thread::scope(|s| {
                let mut r = HashingReader::spawn(s, &data[..], threaded, u64::MAX).unwrap();
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
        for threaded in [false, true] {
            thread::scope(|s| {
                let mut r =
                    HashingReader::spawn(s, Failing(CHUNK + 10), threaded, u64::MAX).unwrap();
                let mut all = Vec::new();
                let e = r.read_to_end(&mut all).unwrap_err();
                assert_eq!(all.len(), CHUNK + 10);
                let inner = stream_error(&e).expect("tagged as a stream error");
                assert_eq!(inner.to_string(), "bad block");
                assert!(r.finish().is_err());
            });
        }
    }

    #[test]
    fn a_stream_past_its_limit_stops_with_over_limit() {
        for threaded in [false, true] {
            thread::scope(|s| {
                let limit = 3 * CHUNK as u64 + 5;
                // finite, so that without the limit the copy ends (and the test fails)
                let input = io::repeat(0).take(limit + 8 * CHUNK as u64);
                let mut r = HashingReader::spawn(s, input, threaded, limit).unwrap();
                let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
                assert_eq!(over_limit(&e), Some(limit), "{e}");
                assert!(r.finish().is_err());
            });
            // exactly at the limit is fine
            let data = vec![1u8; 1000];
            thread::scope(|s| {
                let r = HashingReader::spawn(s, &data[..], threaded, 1000).unwrap();
                assert_eq!(r.finish().unwrap().1, 1000);
            });
        }
    }

    #[test]
    fn a_reader_dropped_early_does_not_hold_up_the_scope() {
        for threaded in [false, true] {
            // an endless stream: the reading thread must stop once nobody takes its chunks
            thread::scope(|s| {
                let mut r = HashingReader::spawn(s, io::repeat(1), threaded, u64::MAX).unwrap();
                let mut some = [0u8; 100];
                r.read_exact(&mut some).unwrap();
                drop(r);
            });
        }
    }
}
