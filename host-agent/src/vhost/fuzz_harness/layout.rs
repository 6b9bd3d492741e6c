//! How a fuzz input becomes a queue: a two-byte configuration, then guest memory.
//!
//! - byte 0: bit 0 `VIRTIO_RING_F_EVENT_IDX`; bits 1–2 the disk ([`DiskKind`]);
//! - byte 1: bits 0–3 the queue size, `1 << (v % 9)` (1 to 256); bits 4–5 the number of
//!   guest memory regions less one; bit 6 a [`HOLE`] between consecutive regions (else they
//!   are adjacent, so one buffer may span two regions);
//! - the rest fills guest memory: the regions in address order, as if they were one buffer
//!   (input bytes beyond [`MEM_LEN`] are ignored, memory beyond the input is zero).
//!
//! The rings sit at fixed offsets of the first region that depend only on the queue size
//! ([`Rings`]); for a queue of 16 they are where the first harness put them, so its corpus
//! carried over with the prefix `[first byte & 1, 4]`.

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::HarnessError;
use crate::vhost::request::GuestMem;

/// Length of the configuration before guest memory in an input.
pub const CONFIG_LEN: usize = 2;
/// Guest-physical address of the first byte of guest memory.
pub const MEM_START: u64 = 0x1000;
/// Bytes of guest memory over all regions.
pub const MEM_LEN: usize = 0x10000;
/// The gap between two regions when byte 1 asks for holes.
pub const HOLE: u64 = 0x1000;
/// The largest queue (`1 << 8`).
pub const MAX_QUEUE_SIZE: u16 = 256;

/// Which disk a run serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskKind {
    /// A read-only layer disk: a blob padded to 4096.
    Layer,
    /// The writable scratch disk, empty at the start of every run.
    Scratch,
    /// A read-only composite disk: a GPT and two layers.
    Composite,
    /// A read-only layer disk whose hash tree is a separate file.
    LayerWithTree,
}

/// What the first [`CONFIG_LEN`] bytes of an input ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub event_idx: bool,
    pub disk: DiskKind,
    pub queue_size: u16,
    /// 1 to 4.
    pub regions: usize,
    pub holes: bool,
}

impl Config {
    /// The configuration of `input` (missing bytes read as zero).
    pub fn of(input: &[u8]) -> Self {
        let b0 = input.first().copied().unwrap_or(0);
        let b1 = input.get(1).copied().unwrap_or(0);
        let disk = match (b0 >> 1) & 3 {
            0 => DiskKind::Layer,
            1 => DiskKind::Scratch,
            2 => DiskKind::Composite,
            _ => DiskKind::LayerWithTree,
        };
        Self {
            event_idx: b0 & 1 == 1,
            disk,
            queue_size: 1 << ((b1 & 0x0f) % 9),
            regions: usize::from((b1 >> 4) & 3) + 1,
            holes: b1 & 0x40 != 0,
        }
    }

    /// The two bytes that ask for this configuration.
    pub fn encode(&self) -> [u8; CONFIG_LEN] {
        let disk = match self.disk {
            DiskKind::Layer => 0,
            DiskKind::Scratch => 1,
            DiskKind::Composite => 2,
            DiskKind::LayerWithTree => 3,
        };
        // queue_size is a power of two of at most 256, regions 1 to 4.
        let exp = self.queue_size.trailing_zeros() as u8;
        let regions = (self.regions.clamp(1, 4) - 1) as u8;
        [
            u8::from(self.event_idx) | disk << 1,
            exp | regions << 4 | u8::from(self.holes) << 6,
        ]
    }

    /// The guest memory regions: `(start, len)` in address order.
    pub fn regions(&self) -> Vec<(GuestAddress, usize)> {
        let lens: &[usize] = match self.regions {
            1 => &[MEM_LEN],
            2 => &[MEM_LEN / 2, MEM_LEN / 2],
            3 => &[MEM_LEN / 4, MEM_LEN / 4, MEM_LEN / 2],
            _ => &[MEM_LEN / 4; 4],
        };
        let gap = if self.holes { HOLE } else { 0 };
        let mut at = MEM_START;
        lens.iter()
            .map(|&len| {
                let r = (GuestAddress(at), len);
                at += len as u64 + gap;
                r
            })
            .collect()
    }

    /// Where the rings are.
    pub fn rings(&self) -> Rings {
        Rings::of(self.queue_size)
    }

    /// Guest address of byte `offset` of the memory image (the regions as one buffer).
    pub fn address_of(&self, offset: usize) -> Option<GuestAddress> {
        let mut skip = offset;
        for (start, len) in self.regions() {
            if skip < len {
                return Some(GuestAddress(start.0 + skip as u64));
            }
            skip -= len;
        }
        None
    }
}

/// Addresses of the split rings in the first region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rings {
    /// The descriptor table, at [`MEM_START`] (`size` × 16 bytes).
    pub desc: u64,
    /// The available ring, right after the table: flags, idx, `size` heads, used_event.
    pub avail: u64,
    /// The used ring, at the next multiple of 256 bytes after the available ring: flags,
    /// idx, `size` elements, avail_event.
    pub used: u64,
}

impl Rings {
    fn of(size: u16) -> Self {
        let size = u64::from(size);
        let avail = 16 * size;
        let used = (avail + 6 + 2 * size).next_multiple_of(0x100);
        Self {
            desc: MEM_START,
            avail: MEM_START + avail,
            used: MEM_START + used,
        }
    }
}

/// Guest memory as `config` lays it out, filled with `memory`.
pub fn guest_memory(config: &Config, memory: &[u8]) -> Result<GuestMem, HarnessError> {
    let regions = config.regions();
    let mem = GuestMemoryMmap::<()>::from_ranges(&regions)
        .map_err(|e| HarnessError::Memory(e.to_string()))?;
    let mut rest = &memory[..memory.len().min(MEM_LEN)];
    for (start, len) in regions {
        let n = rest.len().min(len);
        mem.write_slice(&rest[..n], start)
            .map_err(|e| HarnessError::Memory(e.to_string()))?;
        rest = &rest[n..];
    }
    Ok(mem)
}

/// The queue at its fixed addresses, ready.
pub fn queue(mem: &GuestMem, config: &Config) -> Result<Queue, HarnessError> {
    let rings = config.rings();
    let mut q = Queue::new(MAX_QUEUE_SIZE).map_err(|e| HarnessError::Queue(e.to_string()))?;
    q.set_size(config.queue_size);
    // The rings lie below 4 GiB: the high halves are 0.
    let low = |a: u64| Some(a as u32);
    q.set_desc_table_address(low(rings.desc), Some(0));
    q.set_avail_ring_address(low(rings.avail), Some(0));
    q.set_used_ring_address(low(rings.used), Some(0));
    q.set_event_idx(config.event_idx);
    q.set_ready(true);
    if q.is_valid(mem) {
        Ok(q)
    } else {
        Err(HarnessError::Queue(format!(
            "not valid at the fixed addresses ({config:?})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configuration_round_trips_and_gives_a_valid_queue() {
        for b0 in 0..8u8 {
            for b1 in 0..0x80u8 {
                let c = Config::of(&[b0, b1]);
                assert_eq!(Config::of(&c.encode()), c, "{b0:#x} {b1:#x}");
                let mem = guest_memory(&c, &[]).unwrap();
                queue(&mem, &c).unwrap();
            }
        }
    }

    #[test]
    fn the_first_harness_layout_is_a_queue_of_16() {
        let c = Config::of(&[0, 4]);
        assert_eq!(c.queue_size, 16);
        assert_eq!(
            c.rings(),
            Rings {
                desc: MEM_START,
                avail: MEM_START + 0x100,
                used: MEM_START + 0x200
            }
        );
    }

    #[test]
    fn regions_cover_the_memory_image_in_order() {
        let c = Config::of(&[0, 0x70]); // four regions with holes
        let r = c.regions();
        assert_eq!(r.len(), 4);
        assert_eq!(r.iter().map(|(_, l)| l).sum::<usize>(), MEM_LEN);
        assert_eq!(c.address_of(0), Some(GuestAddress(MEM_START)));
        let second = MEM_START + (MEM_LEN / 4) as u64 + HOLE;
        assert_eq!(c.address_of(MEM_LEN / 4), Some(GuestAddress(second)));
        assert_eq!(c.address_of(MEM_LEN), None);
        let image: Vec<u8> = (0..MEM_LEN).map(|i| (i % 251) as u8).collect();
        let mem = guest_memory(&c, &image).unwrap();
        let b: u8 = mem.read_obj(GuestAddress(second)).unwrap();
        assert_eq!(b, image[MEM_LEN / 4]);
        // The hole is not memory.
        assert!(mem.read_obj::<u8>(GuestAddress(second - 1)).is_err());
    }
}
