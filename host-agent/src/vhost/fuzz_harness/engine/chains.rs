//! The descriptor chains of a submit: each request's header, data and status written into
//! guest RAM in the framing its [`Request`] byte asks for, and its descriptors into the
//! queue's standard table (or an indirect table).

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES,
};
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Bytes, GuestAddress};

use super::guest::{Guest, RAM_BASE, RAM_LEN, covered};
use super::program::Request;
use super::vrings::Rings;

const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const WRITE: u16 = VRING_DESC_F_WRITE as u16;
const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;
/// A request type no virtio-blk device knows.
const UNKNOWN_TYPE: u32 = 0x42;

/// Queue `q`'s header area (headers, status bytes, indirect tables, discard segments).
fn header_area(q: usize) -> u64 {
    RAM_BASE + 0x1_0000 + q as u64 * 0x4000
}

/// Queue `q`'s data area: 8 KiB per request.
fn data_area(q: usize) -> u64 {
    RAM_BASE + 0x1_8000 + q as u64 * 0x1_4000
}

/// Where request `i` of a submit on queue `q` has its status byte (when the status has a
/// descriptor of its own).
pub fn status_at(q: usize, i: usize) -> u64 {
    header_area(q) + 0x40 * i as u64 + 0x30
}

/// Where request `i` of a submit on queue `q` has its data (when inside guest RAM).
pub fn data_at(q: usize, i: usize) -> u64 {
    data_area(q) + 0x2000 * i as u64
}

/// One descriptor: address, length, flags.
type Desc = (u64, u32, u16);

impl Guest {
    /// Writes guest RAM (only guest RAM: a buffer past it is the backend's problem).
    pub fn write(&self, gpa: u64, bytes: &[u8]) {
        let _ = self.ram.write_slice(bytes, GuestAddress(gpa));
    }

    /// Writes request `i` of a submit; returns its head and, for a well-formed request whose
    /// header and status lie in guest memory, the address of its status byte.
    pub fn request(&mut self, q: usize, i: usize, r: Request, pattern: u8) -> (u16, Option<u64>) {
        let hdr_area = status_at(q, i) - 0x30;
        let table = header_area(q) + 0x1000 + 0x40 * i as u64;
        let segments = header_area(q) + 0x2000 + 0x40 * i as u64;
        let outside = r.kind & 0x80 != 0;
        let mut data = if outside {
            // Past guest RAM: in no region, or in one past the end of its file.
            RAM_BASE + RAM_LEN + 0x2000 * i as u64
        } else {
            data_at(q, i)
        };
        let (kind, len, device_writes) = match r.kind & 7 {
            1 => (VIRTIO_BLK_T_OUT, sectors(r.len), false),
            2 => (VIRTIO_BLK_T_FLUSH, 0, false),
            3 => (VIRTIO_BLK_T_GET_ID, 20, true),
            4 | 5 => {
                let kind = if r.kind & 7 == 4 {
                    VIRTIO_BLK_T_DISCARD
                } else {
                    VIRTIO_BLK_T_WRITE_ZEROES
                };
                let n = 1 + u32::from(r.len >> 5 & 1);
                let mut seg = Vec::new();
                for k in 0..u64::from(n) {
                    seg.extend((u64::from(r.sector) + k * 4).to_le_bytes());
                    seg.extend((1 + u32::from(r.len >> 6)).to_le_bytes());
                    seg.extend(u32::from(r.len >> 4 & 1).to_le_bytes());
                }
                if !outside {
                    data = segments;
                }
                self.write(data, &seg);
                (kind, 16 * n, false)
            }
            6 => (UNKNOWN_TYPE, sectors(r.len), true),
            _ => (VIRTIO_BLK_T_IN, sectors(r.len), true),
        };
        if kind == VIRTIO_BLK_T_OUT && !outside {
            self.write(data, &vec![pattern; len as usize]);
        }
        let framing = r.kind >> 3 & 3;
        let merged_readable = framing == 1 && !device_writes && len > 0;
        let hdr = if merged_readable { data - 16 } else { hdr_area };
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&kind.to_le_bytes());
        header[8..16].copy_from_slice(&u64::from(r.sector).to_le_bytes());
        self.write(hdr, &header);
        let status = if framing == 1 && device_writes && len > 0 {
            data + u64::from(len)
        } else {
            status_at(q, i)
        };
        self.write(status, &[0xff]);
        let dflag = if device_writes { WRITE } else { 0 };
        let chain: Vec<Desc> = match (framing, len) {
            (1, 0) | (0 | 2, _) | (3, _) => {
                let mut c = vec![(hdr, 16, 0)];
                if len > 0 {
                    c.push((data, len, dflag));
                }
                c.push((status, 1, WRITE));
                c
            }
            (_, _) if merged_readable => vec![(hdr, 16 + len, 0), (status, 1, WRITE)],
            _ => vec![(hdr, 16, 0), (data, len + 1, WRITE)],
        };
        let malformed = (framing == 3).then_some(r.kind >> 5 & 3);
        let chain = match malformed {
            Some(0) => {
                let mut c = chain;
                c[0].1 = 8;
                c
            }
            Some(1) if len > 0 => {
                let mut c = chain;
                c[1].2 ^= WRITE;
                c
            }
            _ => chain,
        };
        let head = if framing == 2 || malformed == Some(3) {
            self.table(table, &chain);
            let cut = if malformed == Some(3) { 3 } else { 0 };
            let slot = self.slot(q, 1);
            self.desc(q, slot, (table, 16 * chain.len() as u32 - cut, INDIRECT), 0);
            slot
        } else {
            let first = self.slot(q, chain.len() as u16);
            let size = self.queues[q].size;
            for (k, d) in chain.iter().enumerate() {
                let at = first.wrapping_add(k as u16) % size;
                let last = k + 1 == chain.len();
                let (flags, next) = if malformed == Some(2) && k == 0 {
                    (d.2 | NEXT, at)
                } else if last {
                    (d.2, 0)
                } else {
                    (d.2 | NEXT, (at + 1) % size)
                };
                self.desc(q, at, (d.0, d.1, flags), next);
            }
            first
        };
        // The status of a well-formed chain the backend can walk is always written (IOERR
        // when the header or data cannot be read).
        let checkable = malformed.is_none()
            && covered(&self.regions, status, 1)
            && (framing != 2 || covered(&self.regions, table, 16 * chain.len() as u64));
        (head, checkable.then_some(status))
    }

    /// Takes `n` descriptor slots; returns the first.
    fn slot(&mut self, q: usize, n: u16) -> u16 {
        let s = &mut self.queues[q];
        let first = s.cursor % s.size;
        s.cursor = (first + n) % s.size;
        first
    }

    fn desc(&self, q: usize, slot: u16, d: Desc, next: u16) {
        let at = Rings::standard(q).desc + 16 * u64::from(slot);
        self.write(at, &encode(d, next));
    }

    /// An indirect table holding `chain`.
    fn table(&self, at: u64, chain: &[Desc]) {
        for (k, d) in chain.iter().enumerate() {
            let last = k + 1 == chain.len();
            let (flags, next) = if last {
                (d.2, 0)
            } else {
                (d.2 | NEXT, k as u16 + 1)
            };
            self.write(at + 16 * k as u64, &encode((d.0, d.1, flags), next));
        }
    }
}

/// A descriptor as the table holds it.
fn encode(d: Desc, next: u16) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&d.0.to_le_bytes());
    b[8..12].copy_from_slice(&d.1.to_le_bytes());
    b[12..14].copy_from_slice(&d.2.to_le_bytes());
    b[14..16].copy_from_slice(&next.to_le_bytes());
    b
}

/// The data length a request's `len` byte asks for.
fn sectors(len: u8) -> u32 {
    u32::from(len & 0x0f) * 512 + if len & 0x10 != 0 { 100 } else { 0 }
}
