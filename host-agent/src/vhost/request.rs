//! virtio-blk requests: parsed from any descriptor layout, checked, executed against a
//! [`Disk`], data moved directly between the disk's files and guest memory.
//!
//! Everything here is guest input. Rules (VIRTIO 1.2 §5.2.6 and "Message Framing"): the
//! 16-byte header is the first 16 readable bytes (it may span descriptors), the status is
//! the last writable byte, a readable descriptor after a writable one makes the chain
//! malformed. Offsets and lengths are checked against the capacity in 512-byte units. A bad
//! request gets IOERR or UNSUPP; a chain without room for a status completes with length 0.

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};

use super::config::MAX_DISCARD_SEG;
use crate::export::{Disk, DiskError, MAX_SERIAL_LEN, SECTOR_SIZE};
use crate::warn_limited;

/// Guest memory as the backend maps it.
pub type GuestMem = GuestMemoryMmap<()>;

const HEADER_LEN: usize = 16;
const DISCARD_SEGMENT_LEN: usize = 16;

/// A guest-physical range from one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// A chain split into its device-readable and device-writable parts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chain {
    pub readable: Vec<Segment>,
    pub writable: Vec<Segment>,
}

/// Why a chain cannot even carry a status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("a device-readable descriptor follows a device-writable one")]
    ReadableAfterWritable,
    #[error("the chain has no device-writable byte for the status")]
    NoStatus,
    #[error("the chain has fewer than 16 device-readable bytes for the header")]
    ShortHeader,
    #[error("the status byte lies outside guest memory")]
    StatusOutsideMemory,
}

/// virtio-blk status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    IoErr,
    Unsupp,
}

impl Status {
    fn code(self) -> u8 {
        // The spec's status values are 0, 1 and 2.
        (match self {
            Self::Ok => VIRTIO_BLK_S_OK,
            Self::IoErr => VIRTIO_BLK_S_IOERR,
            Self::Unsupp => VIRTIO_BLK_S_UNSUPP,
        }) as u8
    }
}

impl Chain {
    /// Splits descriptors (already followed through NEXT and indirect tables) into readable
    /// and writable segments; zero-length descriptors are ignored.
    pub fn split(descs: impl IntoIterator<Item = Descriptor>) -> Result<Self, Malformed> {
        let mut c = Self::default();
        for d in descs {
            if d.len() == 0 {
                continue;
            }
            let seg = Segment {
                addr: d.addr(),
                len: d.len(),
            };
            if d.is_write_only() {
                c.writable.push(seg);
            } else if c.writable.is_empty() {
                c.readable.push(seg);
            } else {
                return Err(Malformed::ReadableAfterWritable);
            }
        }
        Ok(c)
    }

    fn readable_len(&self) -> u64 {
        self.readable.iter().map(|s| u64::from(s.len)).sum()
    }

    fn writable_len(&self) -> u64 {
        self.writable.iter().map(|s| u64::from(s.len)).sum()
    }
}

/// The part of `segs` covering bytes `[skip, skip + len)` of their concatenation.
fn sub_segments(segs: &[Segment], mut skip: u64, mut len: u64) -> Vec<Segment> {
    let mut out = Vec::new();
    for s in segs {
        if len == 0 {
            break;
        }
        let slen = u64::from(s.len);
        if skip >= slen {
            skip -= slen;
            continue;
        }
        let take = (slen - skip).min(len);
        if let Some(addr) = s.addr.0.checked_add(skip) {
            // take <= s.len, a u32.
            out.push(Segment {
                addr: GuestAddress(addr),
                len: take as u32,
            });
        }
        len -= take;
        skip = 0;
    }
    out
}

/// Copies the first `out.len()` bytes of `segs` out of guest memory.
fn read_bytes(mem: &GuestMem, segs: &[Segment], out: &mut [u8]) -> Result<(), ()> {
    let mut done = 0;
    for s in sub_segments(segs, 0, out.len() as u64) {
        let n = s.len as usize;
        mem.read_slice(&mut out[done..done + n], s.addr)
            .map_err(|_| ())?;
        done += n;
    }
    if done == out.len() { Ok(()) } else { Err(()) }
}

/// Copies `data` into the start of `segs` in guest memory.
fn write_bytes(mem: &GuestMem, segs: &[Segment], data: &[u8]) -> Result<(), ()> {
    let mut done = 0;
    for s in sub_segments(segs, 0, data.len() as u64) {
        let n = s.len as usize;
        mem.write_slice(&data[done..done + n], s.addr)
            .map_err(|_| ())?;
        done += n;
    }
    if done == data.len() { Ok(()) } else { Err(()) }
}

/// Host mappings of guest ranges (split at memory-region boundaries).
fn slices<'m>(mem: &'m GuestMem, segs: &[Segment]) -> Result<Vec<VolatileSlice<'m>>, ()> {
    let mut out = Vec::with_capacity(segs.len());
    for s in segs {
        for slice in GuestMemoryBackend::get_slices(mem, s.addr, s.len as usize) {
            out.push(slice.map_err(|_| ())?);
        }
    }
    Ok(out)
}

/// Executes one request and writes its status. Returns the used length (bytes written into
/// the chain's writable part), 0 when not even a status could be written.
pub fn execute(mem: &GuestMem, chain: &Chain, disk: &dyn Disk) -> u32 {
    match try_execute(mem, chain, disk) {
        Ok(len) => len,
        Err(m) => {
            warn_limited!(error = %m, "malformed virtio-blk request");
            0
        }
    }
}

fn try_execute(mem: &GuestMem, chain: &Chain, disk: &dyn Disk) -> Result<u32, Malformed> {
    let writable = chain.writable_len();
    if writable == 0 {
        return Err(Malformed::NoStatus);
    }
    let status_seg = sub_segments(&chain.writable, writable - 1, 1);
    let Some(status_at) = status_seg.first().map(|s| s.addr) else {
        return Err(Malformed::NoStatus);
    };
    let mut header = [0u8; HEADER_LEN];
    let (status, written) = if chain.readable_len() < HEADER_LEN as u64
        || read_bytes(mem, &chain.readable, &mut header).is_err()
    {
        // No readable header: the request cannot be understood, but it can be failed.
        warn_limited!(
            readable = chain.readable_len(),
            "virtio-blk request without a header"
        );
        (Status::IoErr, 0)
    } else {
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let mut sector = [0u8; 8];
        sector.copy_from_slice(&header[8..16]);
        let sector = u64::from_le_bytes(sector);
        run(mem, chain, disk, kind, sector, writable - 1)
    };
    mem.write_obj(status.code(), status_at)
        .map_err(|_| Malformed::StatusOutsideMemory)?;
    // written <= writable - 1 < 2^32 (the chain iterator caps a chain at 4 GiB).
    Ok(written as u32 + 1)
}

/// Runs a request of type `kind`; `data_out` is the writable length before the status.
/// Returns the status and the number of data bytes written into the chain.
fn run(
    mem: &GuestMem,
    chain: &Chain,
    disk: &dyn Disk,
    kind: u32,
    sector: u64,
    data_out: u64,
) -> (Status, u64) {
    let data_in = chain.readable_len() - HEADER_LEN as u64;
    match kind {
        VIRTIO_BLK_T_IN => {
            let segs = sub_segments(&chain.writable, 0, data_out);
            (
                transfer(mem, &segs, disk, sector, data_out, Direction::Read),
                data_out,
            )
        }
        VIRTIO_BLK_T_OUT => {
            if disk.read_only() {
                warn_limited!(sector, "write to a read-only disk refused");
                return (Status::IoErr, 0);
            }
            let segs = sub_segments(&chain.readable, HEADER_LEN as u64, data_in);
            (
                transfer(mem, &segs, disk, sector, data_in, Direction::Write),
                0,
            )
        }
        VIRTIO_BLK_T_FLUSH => match disk.flush() {
            Ok(()) => (Status::Ok, 0),
            Err(e) => {
                warn_limited!(error = %e, "flush failed");
                (Status::IoErr, 0)
            }
        },
        VIRTIO_BLK_T_GET_ID => {
            let n = data_out.min(MAX_SERIAL_LEN as u64) as usize;
            let mut id = [0u8; MAX_SERIAL_LEN];
            let serial = disk.serial();
            id[..serial.len().min(MAX_SERIAL_LEN)]
                .copy_from_slice(&serial[..serial.len().min(MAX_SERIAL_LEN)]);
            match write_bytes(mem, &chain.writable, &id[..n]) {
                Ok(()) => (Status::Ok, n as u64),
                Err(()) => (Status::IoErr, 0),
            }
        }
        VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => (
            ranges(mem, chain, disk, kind == VIRTIO_BLK_T_WRITE_ZEROES, data_in),
            0,
        ),
        other => {
            warn_limited!(kind = other, "unsupported virtio-blk request type");
            (Status::Unsupp, 0)
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Read,
    Write,
}

/// Checks a data transfer and moves the bytes.
fn transfer(
    mem: &GuestMem,
    segs: &[Segment],
    disk: &dyn Disk,
    sector: u64,
    len: u64,
    dir: Direction,
) -> Status {
    let Some(offset) = byte_range(sector, len, disk.size()) else {
        warn_limited!(
            sector,
            len,
            size = disk.size(),
            "virtio-blk request outside the disk or not in whole sectors"
        );
        return Status::IoErr;
    };
    let Ok(slices) = slices(mem, segs) else {
        warn_limited!(sector, len, "virtio-blk data buffer outside guest memory");
        return Status::IoErr;
    };
    let result = match dir {
        Direction::Read => disk.read_at(offset, &slices),
        Direction::Write => disk.write_at(offset, &slices),
    };
    match result {
        Ok(()) => Status::Ok,
        Err(e) => {
            warn_limited!(error = %e, sector, len, "virtio-blk I/O failed");
            Status::IoErr
        }
    }
}

/// `sector * 512` if `[sector * 512, + len)` is whole sectors inside a disk of `size` bytes.
fn byte_range(sector: u64, len: u64, size: u64) -> Option<u64> {
    if !len.is_multiple_of(SECTOR_SIZE) {
        return None;
    }
    let offset = sector.checked_mul(SECTOR_SIZE)?;
    (offset.checked_add(len)? <= size).then_some(offset)
}

/// DISCARD and WRITE_ZEROES: an array of `{sector: le64, num_sectors: le32, flags: le32}`.
fn ranges(mem: &GuestMem, chain: &Chain, disk: &dyn Disk, zeroes: bool, data_in: u64) -> Status {
    if !disk.supports_discard() {
        return Status::Unsupp;
    }
    if disk.read_only() {
        return Status::IoErr;
    }
    if data_in == 0
        || !data_in.is_multiple_of(DISCARD_SEGMENT_LEN as u64)
        || data_in / DISCARD_SEGMENT_LEN as u64 > u64::from(MAX_DISCARD_SEG)
    {
        warn_limited!(
            bytes = data_in,
            "discard/write-zeroes request with a bad segment list"
        );
        return Status::IoErr;
    }
    let segs = sub_segments(&chain.readable, HEADER_LEN as u64, data_in);
    let mut raw = vec![0u8; data_in as usize];
    if read_bytes(mem, &segs, &mut raw).is_err() {
        return Status::IoErr;
    }
    let allowed = if zeroes {
        VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
    } else {
        0
    };
    for seg in raw.chunks_exact(DISCARD_SEGMENT_LEN) {
        let mut s = [0u8; 8];
        s.copy_from_slice(&seg[0..8]);
        let sector = u64::from_le_bytes(s);
        let sectors = u32::from_le_bytes([seg[8], seg[9], seg[10], seg[11]]);
        let flags = u32::from_le_bytes([seg[12], seg[13], seg[14], seg[15]]);
        if flags & !allowed != 0 {
            return Status::Unsupp;
        }
        let len = u64::from(sectors) * SECTOR_SIZE;
        let Some(offset) = byte_range(sector, len, disk.size()) else {
            warn_limited!(sector, sectors, "discard/write-zeroes outside the disk");
            return Status::IoErr;
        };
        let r = if zeroes {
            disk.write_zeroes(offset, len)
        } else {
            disk.discard(offset, len)
        };
        if let Err(e) = r {
            warn_limited!(error = %e, "discard/write-zeroes failed");
            return match e {
                DiskError::Unsupported(_) => Status::Unsupp,
                _ => Status::IoErr,
            };
        }
    }
    Status::Ok
}

#[cfg(test)]
mod tests;
