//! File contents, streamed: whole blocks go straight into the image after block 0 in tar
//! order; a tail that will live inline after its inode goes to an anonymous spill file
//! until the metadata is written. Nothing but one copy buffer is held in memory.

use std::fs::File;
use std::io::{self, BufRead, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::ErofsError;
use super::format::{BLOCK_SIZE, EXTENDED_INODE_SIZE, NULL_ADDR};
use super::tree::Data;

const TAIL_BUFFER: usize = BLOCK_SIZE as usize;
const IMAGE_BUFFER: usize = 64 << 10;
/// Blocks written between two progress reports (1 MiB).
const REPORT_BLOCKS: u64 = 256;
/// Bytes of the image reserved ahead of the writing at a time (64 MiB). The reservation
/// follows what is written, never a header's declared size: a crafted header may declare
/// terabytes that never come.
const PREALLOCATE: u64 = 64 << 20;

/// Told, now and then, that every image block before the given one is in the file.
pub type Written = Box<dyn FnMut(u64) + Send>;

/// Whether a tail of `tail` bytes goes inline: it must fit in one block of `block_size`
/// bytes with the inode (counted as extended, the larger kind) and the xattrs (counted
/// all inline, the most they can take), so the decision made while streaming holds
/// whatever the layout does.
pub fn tail_fits_inline(tail: u64, xattr_bytes: u64, block_size: u64) -> bool {
    tail > 0 && EXTENDED_INODE_SIZE + xattr_bytes + tail <= block_size
}

pub struct DataWriter {
    /// Block size in bytes.
    bs: u64,
    image: BufWriter<File>,
    image_path: PathBuf,
    /// Next free block of the image.
    next_block: u64,
    tails: BufWriter<File>,
    tails_len: u64,
    buf: Vec<u8>,
    written: Option<Written>,
    /// The block last passed to `written`.
    reported: u64,
    /// Bytes of the image reserved so far (see [`reserve`]).
    reserved: u64,
}

impl std::fmt::Debug for DataWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataWriter")
            .field("image_path", &self.image_path)
            .field("next_block", &self.next_block)
            .field("tails_len", &self.tails_len)
            .field("reported", &self.reported)
            .finish_non_exhaustive()
    }
}

/// Where reading the content of an entry failed.
#[derive(Debug)]
pub enum CopyError {
    /// The entry ended before `got` reached its size.
    Short { got: u64 },
    /// Reading the tar failed.
    Read(io::Error),
    /// Writing the image or spill file failed.
    Write(ErofsError),
}

impl DataWriter {
    /// Starts the data area at block 1 of `image` (block 0 is left for the superblock);
    /// the spill file is anonymous in `spill_dir`.
    pub fn new(image: File, image_path: &Path, spill_dir: &Path) -> Result<Self, ErofsError> {
        Self::with_blocks(image, image_path, spill_dir, BLOCK_SIZE, 1)
    }

    /// Starts the data area at block `first` of `image`, in blocks of `bs` bytes.
    pub fn with_blocks(
        image: File,
        image_path: &Path,
        spill_dir: &Path,
        bs: u64,
        first: u64,
    ) -> Result<Self, ErofsError> {
        let tails = tempfile::tempfile_in(spill_dir)
            .map_err(ErofsError::io("create a spill file in", spill_dir))?;
        // small: content slices of at least this size go to the file without a copy
        let mut image = BufWriter::with_capacity(IMAGE_BUFFER, image);
        image
            .seek(SeekFrom::Start(first * bs))
            .map_err(ErofsError::io("seek", image_path))?;
        Ok(Self {
            bs,
            image,
            image_path: image_path.to_owned(),
            next_block: first,
            tails: BufWriter::with_capacity(1 << 16, tails),
            tails_len: 0,
            buf: vec![0u8; TAIL_BUFFER],
            written: None,
            reported: 0,
            reserved: 0,
        })
    }

    /// Has `f` told, about every 1 MiB, how far the image is written (flushed to the
    /// file), so that another thread can read it back while the writing goes on.
    pub fn report_written(&mut self, f: Written) {
        self.written = Some(f);
    }

    /// Flushes and reports `end` if enough was written since the last report.
    fn maybe_report(&mut self, end: u64) -> Result<(), ErofsError> {
        if self.written.is_none() || end < self.reported + REPORT_BLOCKS {
            return Ok(());
        }
        self.image.flush().map_err(|e| self.write_err(e))?;
        if let Some(f) = &mut self.written {
            f(end);
        }
        self.reported = end;
        Ok(())
    }

    /// Copies `size` bytes of `src`; the tail goes inline when `inline_tail`.
    pub fn copy(
        &mut self,
        src: &mut dyn BufRead,
        size: u64,
        inline_tail: bool,
    ) -> Result<Data, CopyError> {
        let bs = self.bs;
        let tail_len = size % bs;
        let full = size - tail_len;
        let inline = inline_tail && tail_len > 0;
        let data = self.allocate(size, inline).map_err(CopyError::Write)?;
        let mut done = 0u64;
        // whole blocks: written straight from the reader's buffer
        while done < full {
            let avail = src.fill_buf().map_err(CopyError::Read)?;
            if avail.is_empty() {
                return Err(CopyError::Short { got: done });
            }
            let n = avail
                .len()
                .min(usize::try_from(full - done).unwrap_or(usize::MAX));
            self.reserve_through((u64::from(data.blkaddr) * bs) + done + n as u64);
            if let Err(e) = self.image.write_all(&avail[..n]) {
                return Err(CopyError::Write(self.write_err(e)));
            }
            src.consume(n);
            done += n as u64;
            self.maybe_report(u64::from(data.blkaddr) + done / bs)
                .map_err(CopyError::Write)?;
        }
        if tail_len > 0 {
            let tail_len = tail_len as usize;
            let mut got = 0;
            while got < tail_len {
                let n = read_some(src, &mut self.buf[got..tail_len]).map_err(CopyError::Read)?;
                if n == 0 {
                    return Err(CopyError::Short {
                        got: done + got as u64,
                    });
                }
                got += n;
            }
            self.put_tail(inline, tail_len).map_err(CopyError::Write)?;
        }
        self.maybe_report(self.next_block)
            .map_err(CopyError::Write)?;
        Ok(data)
    }

    /// Stores `bytes` (a symlink target) like file content.
    pub fn store(&mut self, bytes: &[u8], inline_tail: bool) -> Result<Data, ErofsError> {
        let mut src = bytes;
        self.copy(&mut src, bytes.len() as u64, inline_tail)
            .map_err(|e| match e {
                CopyError::Write(e) => e,
                CopyError::Short { .. } | CopyError::Read(_) => ErofsError::Io {
                    op: "store data in",
                    path: self.image_path.clone(),
                    source: io::Error::other("in-memory copy ended early"),
                },
            })
    }

    fn allocate(&mut self, size: u64, inline: bool) -> Result<Data, ErofsError> {
        let blocks = if inline {
            size / self.bs
        } else {
            size.div_ceil(self.bs)
        };
        let tail = inline.then_some(self.tails_len);
        let blkaddr = if blocks == 0 {
            if inline { NULL_ADDR } else { 0 }
        } else {
            u32::try_from(self.next_block)
                .ok()
                .filter(|_| self.next_block + blocks < u64::from(u32::MAX))
                .ok_or(ErofsError::TooLarge {
                    blocks: self.next_block + blocks,
                })?
        };
        self.next_block += blocks;
        Ok(Data {
            size,
            blkaddr,
            blocks,
            tail,
        })
    }

    /// Reserves disk space for the image up to byte `end`, [`PREALLOCATE`] at a time, as
    /// the writing reaches it. (ext4 then skips per-page delayed allocation: a fifth of
    /// the writer's system time.)
    fn reserve_through(&mut self, end: u64) {
        if end > self.reserved {
            let len = (end - self.reserved).max(PREALLOCATE);
            crate::fshint::reserve(self.image.get_ref(), self.reserved, len);
            self.reserved += len;
        }
    }

    /// Writes the tail held in `buf[..len]`: to the spill file, or zero-padded to a block.
    fn put_tail(&mut self, inline: bool, len: usize) -> Result<(), ErofsError> {
        if inline {
            self.tails
                .write_all(&self.buf[..len])
                .map_err(ErofsError::io("write", "the tail spill file"))?;
            self.tails_len += len as u64;
        } else {
            let bs = self.bs as usize;
            self.buf[len..bs].fill(0);
            self.reserve_through(self.next_block * self.bs);
            self.image
                .write_all(&self.buf[..bs])
                .map_err(|e| self.write_err(e))?;
        }
        Ok(())
    }

    fn write_err(&self, e: io::Error) -> ErofsError {
        ErofsError::Io {
            op: "write",
            path: self.image_path.clone(),
            source: e,
        }
    }

    /// The first block after the data area.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// Flushes both files and hands them back: the image, and the tails for reading.
    pub fn finish(self) -> Result<(File, Tails), ErofsError> {
        let image = self.image.into_inner().map_err(|e| ErofsError::Io {
            op: "write",
            path: self.image_path.clone(),
            source: e.into_error(),
        })?;
        let tails = self.tails.into_inner().map_err(|e| ErofsError::Io {
            op: "write",
            path: "the tail spill file".into(),
            source: e.into_error(),
        })?;
        Ok((image, Tails(tails, self.bs)))
    }
}

/// The spill file of inline tails, read back while writing the metadata.
#[derive(Debug)]
pub struct Tails(File, u64);

impl Tails {
    /// Appends the tail of `data` to `out`.
    pub fn read_into(&self, data: &Data, out: &mut Vec<u8>) -> Result<(), ErofsError> {
        let Some(offset) = data.tail else {
            return Ok(());
        };
        let len = (data.size % self.1) as usize;
        let start = out.len();
        out.resize(start + len, 0);
        self.0
            .read_exact_at(&mut out[start..], offset)
            .map_err(ErofsError::io("read", "the tail spill file"))
    }
}

fn read_some(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match src.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &Path) -> (DataWriter, PathBuf) {
        let path = dir.join("img");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        (DataWriter::new(file, &path, dir).unwrap(), path)
    }

    #[test]
    fn whole_blocks_go_to_the_image_and_tails_to_the_spill() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = writer(dir.path());
        let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let a = w.copy(&mut &content[..], 10_000, true).unwrap();
        assert_eq!(
            a,
            Data {
                size: 10_000,
                blkaddr: 1,
                blocks: 2,
                tail: Some(0)
            }
        );
        let b = w.copy(&mut &content[..5], 5, false).unwrap();
        assert_eq!(
            b,
            Data {
                size: 5,
                blkaddr: 3,
                blocks: 1,
                tail: None
            }
        );
        let c = w.copy(&mut &content[..5], 5, true).unwrap();
        assert_eq!(
            c,
            Data {
                size: 5,
                blkaddr: NULL_ADDR,
                blocks: 0,
                tail: Some(10_000 % 4096)
            }
        );
        assert!(matches!(
            w.copy(&mut &content[..3], 5, true),
            Err(CopyError::Short { got: 3 })
        ));
        assert_eq!(w.next_block(), 4);
        let (image, tails) = w.finish().unwrap();
        let mut tail = Vec::new();
        tails.read_into(&a, &mut tail).unwrap();
        assert_eq!(tail, content[8192..]);
        let mut block = vec![0u8; 8192];
        image.read_exact_at(&mut block, 4096).unwrap();
        assert_eq!(block, content[..8192]);
        assert!(tail_fits_inline(4032, 0, 4096));
        assert!(!tail_fits_inline(4033, 0, 4096));
        assert!(!tail_fits_inline(0, 0, 4096));
        assert!(tail_fits_inline(448, 0, 512));
        assert!(!tail_fits_inline(449, 0, 512));
    }

    #[test]
    fn disk_space_is_reserved_as_content_arrives_not_as_declared() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (mut w, path) = writer(dir.path());
        // a header declares 2 GiB; 5000 bytes come
        let declared = 2u64 << 30;
        let got = w.copy(&mut &[1u8; 5000][..], declared, false);
        assert!(
            matches!(got, Err(CopyError::Short { got: 5000 })),
            "{got:?}"
        );
        let reserved = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(
            reserved <= 2 * PREALLOCATE,
            "{reserved} bytes reserved for a 2 GiB declaration with 5000 bytes of content"
        );
        // what is written gets a window reserved ahead of it
        let (mut w, path) = writer(dir.path());
        let mib = vec![3u8; 1 << 20];
        w.copy(&mut &mib[..], mib.len() as u64, false).unwrap();
        w.image.flush().unwrap();
        let reserved = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(reserved >= PREALLOCATE, "{reserved}");
        assert!(reserved <= 2 * PREALLOCATE, "{reserved}");
    }

    #[test]
    fn reports_come_after_the_blocks_are_in_the_file_and_reserve_keeps_the_size() {
        use std::sync::{Arc, Mutex};
        let dir = tempfile::tempdir().unwrap();
        let (mut w, path) = writer(dir.path());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, p) = (Arc::clone(&seen), path.clone());
        w.report_written(Box::new(move |end| {
            let len = std::fs::metadata(&p).unwrap().len();
            s.lock().unwrap().push((end, len));
        }));
        // one file of 5 MiB + 100 bytes (reported while copied), then small ones
        let big: Vec<u8> = (0..5 * 1024 * 1024 + 100)
            .map(|i| (i % 253) as u8)
            .collect();
        w.copy(
            &mut std::io::BufReader::with_capacity(100_000, &big[..]),
            big.len() as u64,
            false,
        )
        .unwrap();
        for _ in 0..300 {
            w.copy(&mut &big[..5000], 5000, false).unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        assert!(seen.len() >= 6, "{seen:?}");
        assert!(seen.windows(2).all(|p| p[0].0 < p[1].0), "{seen:?}");
        for &(end, len) in &seen {
            assert!(
                len >= end * BLOCK_SIZE,
                "block {end} reported, file has {len} bytes"
            );
            assert!(end <= w.next_block());
        }
        // reported in the middle of the big file, before it was done
        assert!(seen[0].0 < 1 + big.len() as u64 / BLOCK_SIZE, "{seen:?}");
        // the reservation ahead does not show in the size
        let (image, _) = w.finish().unwrap();
        // (block 0, the big file's 1281 blocks, 2 blocks for each small file)
        assert_eq!(
            image.metadata().unwrap().len(),
            (1 + 1281 + 300 * 2) * BLOCK_SIZE
        );
    }
}
