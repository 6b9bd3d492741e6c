//! Where an index puts contents: a regular file's stay in the tar (their offset is
//! recorded and they are read past, never copied); a symlink's target goes into the
//! metadata as the full writer stores it, with 512-byte blocks.

use std::io::BufRead;

use super::MAX_TAR_BYTES;
use crate::erofs::data::{CopyError, DataWriter, tail_fits_inline};
use crate::erofs::error::ErofsError;
use crate::erofs::tarread::Contents;
use crate::erofs::tree::Data;

/// The index's block size.
const BS: u64 = 512;

#[derive(Debug)]
pub struct IndexContents {
    /// Symlink targets, in the metadata file from the first block after the superblock.
    pub meta: DataWriter,
}

impl Contents for IndexContents {
    fn file(
        &mut self,
        offset: u64,
        src: &mut dyn BufRead,
        size: u64,
        _xattr_bytes: u64,
    ) -> Result<Data, CopyError> {
        // Refused before any of the content is read: a header may claim terabytes.
        let end = offset.saturating_add(size.next_multiple_of(BS));
        if end > MAX_TAR_BYTES {
            return Err(CopyError::Write(ErofsError::TarTooLarge { bytes: end }));
        }
        let blkaddr = u32::try_from(offset / BS)
            .ok()
            .filter(|_| offset.is_multiple_of(BS))
            .ok_or(CopyError::Write(ErofsError::TarTooLarge { bytes: end }))?;
        // Read past the content without copying it (the source hashes it).
        let mut done = 0u64;
        while done < size {
            let avail = src.fill_buf().map_err(CopyError::Read)?.len();
            if avail == 0 {
                return Err(CopyError::Short { got: done });
            }
            let n = avail.min(usize::try_from(size - done).unwrap_or(usize::MAX));
            src.consume(n);
            done += n as u64;
        }
        Ok(Data {
            size,
            blkaddr,
            blocks: size.div_ceil(BS),
            tail: None,
        })
    }

    fn symlink(&mut self, target: &[u8], xattr_bytes: u64) -> Result<Data, ErofsError> {
        let tail = target.len() as u64 % BS;
        self.meta
            .store(target, tail_fits_inline(tail, xattr_bytes, BS))
    }
}
