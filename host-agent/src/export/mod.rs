//! Exported disks: what a VM sees as a virtio-blk device, described without any virtio.
//!
//! A [`Disk`] is a byte range with a size, a read-only flag and a serial; reads and writes go
//! straight between its backing files and the caller's memory slices (guest memory in the
//! vhost-user backend, plain buffers in tests). Three kinds exist:
//! - [`layer::LayerDisk`]: one layer blob, optionally followed by a separate hash tree file,
//!   or an index layer: EROFS metadata, the tar it points into and its tree ([`index`]);
//! - [`composite::CompositeDisk`]: every layer of an image as GPT partitions, synthesised;
//! - [`scratch::ScratchDisk`]: a writable sparse file (ext4 when new).

pub mod composite;
mod error;
pub mod extent;
pub mod gpt;
pub mod index;
mod io;
pub mod layer;
pub mod scratch;
pub mod spec;

#[cfg(test)]
pub(crate) mod index_fixture;
#[cfg(test)]
mod index_tests;

use std::fmt::Debug;

use vm_memory::VolatileSlice;

pub use error::DiskError;

/// Sector size of the virtio-blk protocol (offsets and capacity are in these units).
pub const SECTOR_SIZE: u64 = 512;
/// Longest serial GET_ID can return.
pub const MAX_SERIAL_LEN: usize = 20;

/// A disk as the guest sees it.
pub trait Disk: Send + Sync + Debug {
    /// Size in bytes, a multiple of 4096.
    fn size(&self) -> u64;
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
    /// The virtio-blk serial (at most [`MAX_SERIAL_LEN`] bytes).
    fn serial(&self) -> &[u8];
    /// The logical block size the guest sees (`virtio_blk_config.blk_size`). dm-verity in
    /// the guest refuses data or hash blocks smaller than this, so the plan builder checks
    /// each layer against its disk's value.
    fn logical_block_size(&self) -> u32 {
        layerpass_types::envelope::DEFAULT_LOGICAL_BLOCK_SIZE
    }
    /// Fills `dst` (taken as one contiguous buffer) with the bytes at `offset`.
    /// `offset + len(dst)` must not exceed [`Disk::size`].
    fn read_at(&self, offset: u64, dst: &[VolatileSlice<'_>]) -> Result<(), DiskError>;
    /// Writes `src` (one contiguous buffer) at `offset`.
    fn write_at(&self, offset: u64, src: &[VolatileSlice<'_>]) -> Result<(), DiskError>;
    /// Makes written data durable.
    fn flush(&self) -> Result<(), DiskError>;
    /// Whether [`Disk::discard`] and [`Disk::write_zeroes`] are supported.
    fn supports_discard(&self) -> bool {
        false
    }
    /// Drops the range's data (reads as zeros afterwards).
    fn discard(&self, _offset: u64, _len: u64) -> Result<(), DiskError> {
        Err(DiskError::Unsupported("discard"))
    }
    /// Makes the range read as zeros.
    fn write_zeroes(&self, _offset: u64, _len: u64) -> Result<(), DiskError> {
        Err(DiskError::Unsupported("write zeroes"))
    }
}

/// Checks that `[offset, offset + len)` lies inside a disk of `size` bytes.
pub fn check_range(offset: u64, len: u64, size: u64) -> Result<(), DiskError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(DiskError::OutOfRange { offset, len, size }),
    }
}

/// Total length of a list of slices.
pub fn slices_len(slices: &[VolatileSlice<'_>]) -> u64 {
    slices.iter().map(|s| s.len() as u64).sum()
}

/// A serial from text: at most 20 bytes, cut at a character boundary.
pub fn serial_from(text: &str) -> Vec<u8> {
    let mut end = text.len().min(MAX_SERIAL_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.as_bytes()[..end].to_vec()
}
