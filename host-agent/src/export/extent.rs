//! A disk as a list of contiguous extents, each backed by zeros, bytes in memory or a range
//! of a file. Reads map the requested range onto the extents with no copy through a buffer.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use vm_memory::VolatileSlice;

use super::Disk;
use super::error::DiskError;
use super::io::{pread_exact, window, zero};
use super::{check_range, slices_len};

/// What an extent's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Reads as zeros.
    Zero,
    /// Bytes synthesised in memory (e.g. GPT headers).
    Bytes(Arc<[u8]>),
    /// `len` bytes of `file` from `offset`; the extent's bytes past `len` read as zeros (the
    /// padding of a blob to a whole block).
    File {
        file: Arc<File>,
        path: Arc<Path>,
        offset: u64,
        len: u64,
    },
}

/// One extent: `len` bytes from disk byte `start`.
#[derive(Debug, Clone)]
pub struct Extent {
    pub start: u64,
    pub len: u64,
    pub source: Source,
}

/// Contiguous extents covering `[0, size)`.
#[derive(Debug, Clone, Default)]
pub struct ExtentMap {
    extents: Vec<Extent>,
    size: u64,
}

impl ExtentMap {
    /// Appends an extent of `len` bytes after the current end. Empty extents are dropped.
    pub fn push(&mut self, len: u64, source: Source) {
        if len == 0 {
            return;
        }
        self.extents.push(Extent {
            start: self.size,
            len,
            source,
        });
        self.size += len;
    }

    /// Bytes covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn extents(&self) -> &[Extent] {
        &self.extents
    }

    /// Fills `dst` with the bytes at `offset`.
    pub fn read_at(&self, offset: u64, dst: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        let total = slices_len(dst);
        check_range(offset, total, self.size)?;
        let mut index = self.extents.partition_point(|e| e.start + e.len <= offset);
        let mut done = 0u64;
        while done < total {
            let Some(e) = self.extents.get(index) else {
                return Err(DiskError::OutOfRange {
                    offset,
                    len: total,
                    size: self.size,
                });
            };
            let at = offset + done - e.start;
            let n = (e.len - at).min(total - done);
            // n <= total, which is a sum of usize lengths.
            let piece = window(dst, done as usize, n as usize);
            match &e.source {
                Source::Zero => zero(&piece),
                Source::Bytes(bytes) => {
                    let mut from = at as usize;
                    for s in &piece {
                        s.copy_from(&bytes[from..from + s.len()]);
                        from += s.len();
                    }
                }
                Source::File {
                    file,
                    path,
                    offset: file_offset,
                    len,
                } => {
                    let in_file = len.saturating_sub(at).min(n);
                    if in_file > 0 {
                        let head = window(&piece, 0, in_file as usize);
                        pread_exact(file, &head, file_offset + at)
                            .map_err(DiskError::io("read", path.as_ref()))?;
                    }
                    if in_file < n {
                        zero(&window(&piece, in_file as usize, (n - in_file) as usize));
                    }
                }
            }
            done += n;
            index += 1;
        }
        Ok(())
    }
}

/// A read-only disk whose contents are an extent map: layer and composite disks.
pub trait ReadOnlyExtents: Send + Sync + std::fmt::Debug {
    fn extent_map(&self) -> &ExtentMap;
    fn serial_bytes(&self) -> &[u8];
    /// See [`Disk::logical_block_size`].
    fn block_size(&self) -> u32 {
        layerpass_types::envelope::DEFAULT_LOGICAL_BLOCK_SIZE
    }
}

impl<T: ReadOnlyExtents> Disk for T {
    fn size(&self) -> u64 {
        self.extent_map().size()
    }

    fn read_only(&self) -> bool {
        true
    }

    fn serial(&self) -> &[u8] {
        self.serial_bytes()
    }

    fn logical_block_size(&self) -> u32 {
        self.block_size()
    }

    fn read_at(&self, offset: u64, dst: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        self.extent_map().read_at(offset, dst)
    }

    fn write_at(&self, _offset: u64, _src: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        Err(DiskError::ReadOnly)
    }

    fn flush(&self) -> Result<(), DiskError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn read(map: &ExtentMap, offset: u64, lens: &[usize]) -> Vec<u8> {
        let mut bufs: Vec<Vec<u8>> = lens.iter().map(|&l| vec![0xEE; l]).collect();
        {
            let slices: Vec<VolatileSlice<'_>> = bufs
                .iter_mut()
                .map(|b| VolatileSlice::from(b.as_mut_slice()))
                .collect();
            map.read_at(offset, &slices).unwrap();
        }
        bufs.concat()
    }

    #[test]
    fn reads_span_extents_and_slices() {
        let mut f = tempfile::tempfile().unwrap();
        let content: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        f.write_all(&content).unwrap();
        let file = Arc::new(f);
        let mut map = ExtentMap::default();
        map.push(100, Source::Bytes(Arc::from(vec![7u8; 100])));
        map.push(50, Source::Zero);
        map.push(
            12_288,
            Source::File {
                file,
                path: Arc::from(Path::new("blob")),
                offset: 0,
                len: 10_000,
            },
        );
        let mut expected = vec![7u8; 100];
        expected.extend(vec![0u8; 50]);
        expected.extend(&content);
        expected.extend(vec![0u8; 2288]);
        assert_eq!(map.size(), expected.len() as u64);
        // Whole disk into oddly split buffers.
        assert_eq!(read(&map, 0, &[1, 99, 3, 5000, 7335]), expected);
        // A window that starts in the middle of an extent and ends in the padding.
        assert_eq!(read(&map, 90, &[20, 12_000]), expected[90..12_110]);
        assert!(matches!(
            map.read_at(
                12_400,
                &[VolatileSlice::from(vec![0u8; 100].as_mut_slice())]
            ),
            Err(DiskError::OutOfRange { .. })
        ));
    }

    #[test]
    fn a_shrunk_file_is_an_error_not_garbage() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[1u8; 100]).unwrap();
        let mut map = ExtentMap::default();
        map.push(
            4096,
            Source::File {
                file: Arc::new(f),
                path: Arc::from(Path::new("b")),
                offset: 0,
                len: 4096,
            },
        );
        let mut buf = vec![0u8; 4096];
        let err = map
            .read_at(0, &[VolatileSlice::from(buf.as_mut_slice())])
            .unwrap_err();
        assert!(matches!(err, DiskError::Io { op: "read", .. }), "{err}");
    }
}
