//! The seeds of `fuzz/corpus/virtio_blk_queue/`: well-formed requests of every type on every
//! kind of disk, guest memory split into regions, and the largest queue. Each is built by
//! [`Image`], which writes descriptors, rings and buffers at offsets of the memory image and
//! turns them into guest addresses through the seed's [`Config`]. An input ends where the
//! last structure in it does: memory beyond it is zero.

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};

use super::layout::{Config, DiskKind, MEM_LEN, MEM_START};

/// Offset of the first request header in the memory image.
pub const SEED_HEADER: usize = 0x400;
/// Offset of an indirect descriptor table.
pub const SEED_INDIRECT: usize = 0x600;
/// Offset of the first data buffer (beyond the input for reads: zero guest memory).
pub const SEED_DATA: usize = 0x800;
/// Offset of the first status byte; later requests use the bytes after it.
pub const SEED_STATUS: usize = 0x3f0;
/// The sector the single-request seeds ask for.
pub const SEED_SECTOR: u64 = 1;
/// Offset of the second read's buffer in the scratch seeds.
pub const SEED_READ_BACK: usize = 0x1000;
/// Start of partition 2 of the composite disk (1 MiB aligned, after partition 1).
pub const COMPOSITE_PART2: u64 = 2 << 20;

/// Flag values as the descriptor's 16-bit field holds them (1, 2 and 4).
const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const WRITE: u16 = VRING_DESC_F_WRITE as u16;
const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

/// The configuration of the first harness: layer disk, queue of 16, one region.
pub const BASIC: Config = Config {
    event_idx: false,
    disk: DiskKind::Layer,
    queue_size: 16,
    regions: 1,
    holes: false,
};

/// A request's data buffer: at an image offset, this long, and whether the device writes
/// it (a read or GET_ID) or reads it (a write, or a discard segment list).
#[derive(Debug, Clone, Copy)]
pub struct Buffer {
    pub at: usize,
    pub len: u32,
    pub device_writes: bool,
}

/// One request in three descriptors: header, data (if any), status.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub kind: u32,
    pub sector: u64,
    pub header_at: usize,
    pub data: Option<Buffer>,
    pub status_at: usize,
}

/// A memory image under construction.
#[derive(Debug)]
pub struct Image {
    config: Config,
    mem: Vec<u8>,
}

impl Image {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            mem: Vec::new(),
        }
    }

    /// Puts `bytes` at image offset `at`, growing the image.
    pub fn put(&mut self, at: usize, bytes: &[u8]) {
        let end = at + bytes.len();
        if self.mem.len() < end {
            self.mem.resize(end, 0);
        }
        self.mem[at..end].copy_from_slice(bytes);
    }

    /// The guest address of image offset `at`.
    pub fn addr(&self, at: usize) -> u64 {
        self.config.address_of(at).map_or(u64::MAX, |a| a.0)
    }

    /// Descriptor `index` of the table at image offset `table`.
    pub fn desc(&mut self, table: usize, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.put(table + 16 * usize::from(index), &d);
    }

    /// Writes `req` as descriptors `first`.. of the table at `table` and its header; returns
    /// the index after the last descriptor used.
    pub fn request(&mut self, table: usize, first: u16, req: Request) -> u16 {
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&req.kind.to_le_bytes());
        header[8..16].copy_from_slice(&req.sector.to_le_bytes());
        self.put(req.header_at, &header);
        let mut i = first;
        self.desc(table, i, self.addr(req.header_at), 16, NEXT, i + 1);
        i += 1;
        if let Some(b) = req.data {
            let flags = if b.device_writes { NEXT | WRITE } else { NEXT };
            self.desc(table, i, self.addr(b.at), b.len, flags, i + 1);
            i += 1;
        }
        self.desc(table, i, self.addr(req.status_at), 1, WRITE, 0);
        i + 1
    }

    /// Makes `heads` available (the available ring's idx is their count).
    pub fn avail(&mut self, heads: &[u16]) {
        let at = (self.config.rings().avail - MEM_START) as usize;
        // At most 256 heads.
        let n = heads.len() as u16;
        self.put(at + 2, &n.to_le_bytes());
        for (i, h) in heads.iter().enumerate() {
            self.put(at + 4 + 2 * i, &h.to_le_bytes());
        }
    }

    /// The input: configuration, then the image.
    pub fn finish(self) -> Vec<u8> {
        let mut out = self.config.encode().to_vec();
        out.extend_from_slice(&self.mem[..self.mem.len().min(MEM_LEN)]);
        out
    }
}

/// A discard or write-zeroes segment.
fn segment(sector: u64, sectors: u32, flags: u32) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[0..8].copy_from_slice(&sector.to_le_bytes());
    s[8..12].copy_from_slice(&sectors.to_le_bytes());
    s[12..16].copy_from_slice(&flags.to_le_bytes());
    s
}

/// The bytes the scratch seeds write: `i * 7 + 3`, never all zero.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

/// One request of `kind` on the layer disk (header, 512-byte data, status), in the main
/// table or through an indirect table.
fn single(kind: u32, indirect: bool) -> Vec<u8> {
    let mut m = Image::new(BASIC);
    let req = Request {
        kind,
        sector: SEED_SECTOR,
        header_at: SEED_HEADER,
        data: Some(Buffer {
            at: SEED_DATA,
            len: 512,
            device_writes: kind != VIRTIO_BLK_T_OUT,
        }),
        status_at: SEED_STATUS,
    };
    if indirect {
        m.request(SEED_INDIRECT, 0, req);
        let table = m.addr(SEED_INDIRECT);
        m.desc(0, 0, table, 48, INDIRECT, 0);
    } else {
        m.request(0, 0, req);
    }
    m.avail(&[0]);
    m.finish()
}

/// On the scratch disk: writes [`pattern`] over sectors 1–2, then (with `range`) discards
/// or zeroes sector 2, then reads sectors 1–2 back into [`SEED_READ_BACK`].
fn scratch(range: Option<u32>) -> Vec<u8> {
    let mut m = Image::new(Config {
        disk: DiskKind::Scratch,
        ..BASIC
    });
    m.put(SEED_DATA, &pattern(1024));
    let mut next = m.request(
        0,
        0,
        Request {
            kind: VIRTIO_BLK_T_OUT,
            sector: 1,
            header_at: SEED_HEADER,
            data: Some(Buffer {
                at: SEED_DATA,
                len: 1024,
                device_writes: false,
            }),
            status_at: SEED_STATUS,
        },
    );
    let mut heads = vec![0];
    if let Some(kind) = range {
        let flags = if kind == VIRTIO_BLK_T_WRITE_ZEROES {
            VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
        } else {
            0
        };
        let list = SEED_HEADER + 0x40;
        m.put(list, &segment(2, 1, flags));
        heads.push(next);
        next = m.request(
            0,
            next,
            Request {
                kind,
                sector: 0,
                header_at: SEED_HEADER + 0x20,
                data: Some(Buffer {
                    at: list,
                    len: 16,
                    device_writes: false,
                }),
                status_at: SEED_STATUS + 1,
            },
        );
    }
    heads.push(next);
    m.request(
        0,
        next,
        Request {
            kind: VIRTIO_BLK_T_IN,
            sector: 1,
            header_at: SEED_HEADER + 0x60,
            data: Some(Buffer {
                at: SEED_READ_BACK,
                len: 1024,
                device_writes: true,
            }),
            status_at: SEED_STATUS + 2,
        },
    );
    m.avail(&heads);
    m.finish()
}

/// A read of `len` bytes at `sector` into [`SEED_DATA`], the only request.
pub fn read(config: Config, sector: u64, len: u32) -> Vec<u8> {
    read_over(config, sector, len, None)
}

/// [`read`] into a buffer that holds `fill` bytes before the read (in the input), so that
/// bytes the disk fails to fill stay visible.
pub fn read_over(config: Config, sector: u64, len: u32, fill: Option<u8>) -> Vec<u8> {
    let mut m = Image::new(config);
    if let Some(b) = fill {
        m.put(SEED_DATA, &vec![b; len as usize]);
    }
    m.request(
        0,
        0,
        Request {
            kind: VIRTIO_BLK_T_IN,
            sector,
            header_at: SEED_HEADER,
            data: Some(Buffer {
                at: SEED_DATA,
                len,
                device_writes: true,
            }),
            status_at: SEED_STATUS,
        },
    );
    m.avail(&[0]);
    m.finish()
}

/// On the scratch disk, guest memory in four adjacent regions of 16 KiB: writes
/// [`pattern`] from a buffer across the first boundary, reads it back into a buffer across
/// the second.
fn split_regions() -> Vec<u8> {
    let config = Config {
        disk: DiskKind::Scratch,
        regions: 4,
        ..BASIC
    };
    let quarter = MEM_LEN / 4;
    let (from, to) = (quarter - 512, 2 * quarter - 512);
    let mut m = Image::new(config);
    m.put(from, &pattern(1024));
    let buf = |at, device_writes| {
        Some(Buffer {
            at,
            len: 1024,
            device_writes,
        })
    };
    let kinds = [(VIRTIO_BLK_T_OUT, from, false), (VIRTIO_BLK_T_IN, to, true)];
    let mut next = 0;
    let mut heads = Vec::new();
    for (i, (kind, at, device_writes)) in kinds.into_iter().enumerate() {
        heads.push(next);
        next = m.request(
            0,
            next,
            Request {
                kind,
                sector: 4,
                header_at: SEED_HEADER + 0x20 * i,
                data: buf(at, device_writes),
                status_at: SEED_STATUS + i,
            },
        );
    }
    m.avail(&heads);
    m.finish()
}

/// The largest queue (256) with event index on: one read in its last three descriptors.
fn queue_256() -> Vec<u8> {
    let config = Config {
        event_idx: true,
        queue_size: 256,
        ..BASIC
    };
    let mut m = Image::new(config);
    m.request(
        0,
        253,
        Request {
            kind: VIRTIO_BLK_T_IN,
            sector: SEED_SECTOR,
            header_at: 0x2000,
            data: Some(Buffer {
                at: 0x2200,
                len: 512,
                device_writes: true,
            }),
            status_at: 0x2100,
        },
    );
    m.avail(&[253]);
    m.finish()
}

/// The seeds, named as their files in `fuzz/corpus/virtio_blk_queue/`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let two_regions_with_hole = Config {
        regions: 2,
        holes: true,
        ..BASIC
    };
    vec![
        ("seed-read", single(VIRTIO_BLK_T_IN, false)),
        ("seed-write", single(VIRTIO_BLK_T_OUT, false)),
        ("seed-getid", single(VIRTIO_BLK_T_GET_ID, false)),
        ("seed-flush", single(VIRTIO_BLK_T_FLUSH, false)),
        ("seed-discard", single(VIRTIO_BLK_T_DISCARD, false)),
        ("seed-read-indirect", single(VIRTIO_BLK_T_IN, true)),
        ("seed-scratch-write-read", scratch(None)),
        (
            "seed-scratch-write-zeroes",
            scratch(Some(VIRTIO_BLK_T_WRITE_ZEROES)),
        ),
        ("seed-scratch-discard", scratch(Some(VIRTIO_BLK_T_DISCARD))),
        (
            "seed-composite-read",
            read(
                Config {
                    disk: DiskKind::Composite,
                    ..BASIC
                },
                COMPOSITE_PART2 / 512,
                0x3000,
            ),
        ),
        (
            "seed-layer-tree-read",
            read(
                Config {
                    disk: DiskKind::LayerWithTree,
                    ..BASIC
                },
                0,
                0x3000,
            ),
        ),
        // Sectors 19–20 of the layer disk: the blob's last 272 bytes, then zero padding (into a buffer
        // of 0xee, so padding left unfilled shows).
        ("seed-read-padding", read_over(BASIC, 19, 1024, Some(0xee))),
        // One sector past the end of the layer disk: IOERR before the disk is asked.
        ("seed-read-past-end", read(BASIC, 23, 1024)),
        ("seed-split-regions", split_regions()),
        // The data buffer ends 256 bytes into the hole after the first region.
        ("seed-read-into-hole", {
            let mut m = Image::new(two_regions_with_hole);
            let at = MEM_LEN / 2 - 256;
            m.request(
                0,
                0,
                Request {
                    kind: VIRTIO_BLK_T_IN,
                    sector: SEED_SECTOR,
                    header_at: SEED_HEADER,
                    data: Some(Buffer {
                        at,
                        len: 512,
                        device_writes: true,
                    }),
                    status_at: SEED_STATUS,
                },
            );
            m.avail(&[0]);
            m.finish()
        }),
        ("seed-queue-256", queue_256()),
    ]
}
