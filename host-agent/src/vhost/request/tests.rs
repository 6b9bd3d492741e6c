use std::sync::Mutex;

use vm_memory::{GuestAddress, VolatileSlice};

use super::*;
use crate::export::{Disk, DiskError, check_range, slices_len};

#[derive(Debug)]
struct MemDisk {
    data: Mutex<Vec<u8>>,
    read_only: bool,
}

impl MemDisk {
    fn new(size: usize, read_only: bool) -> Self {
        Self {
            data: Mutex::new((0..size).map(|i| (i * 7 % 251) as u8).collect()),
            read_only,
        }
    }
}

impl Disk for MemDisk {
    fn size(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn serial(&self) -> &[u8] {
        b"0123456789abcdefghijKLMN"
    }
    fn read_at(&self, offset: u64, dst: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        let d = self.data.lock().unwrap();
        check_range(offset, slices_len(dst), d.len() as u64)?;
        let mut at = offset as usize;
        for s in dst {
            s.copy_from(&d[at..at + s.len()]);
            at += s.len();
        }
        Ok(())
    }
    fn write_at(&self, offset: u64, src: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        let mut d = self.data.lock().unwrap();
        check_range(offset, slices_len(src), d.len() as u64)?;
        let mut at = offset as usize;
        for s in src {
            s.copy_to(&mut d[at..at + s.len()]);
            at += s.len();
        }
        Ok(())
    }
    fn flush(&self) -> Result<(), DiskError> {
        Ok(())
    }
    fn supports_discard(&self) -> bool {
        !self.read_only
    }
    fn discard(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        let mut d = self.data.lock().unwrap();
        d[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.discard(offset, len)
    }
}

/// Two guest memory regions back to back: [0x10000, 0x20000) and [0x20000, 0x40000).
fn memory() -> GuestMem {
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0x10000), 0x10000),
        (GuestAddress(0x20000), 0x20000),
    ])
    .unwrap()
}

fn seg(addr: u64, len: u32) -> Segment {
    Segment {
        addr: GuestAddress(addr),
        len,
    }
}

fn header(mem: &GuestMem, at: u64, kind: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    mem.write_slice(&h, GuestAddress(at)).unwrap();
}

fn status(mem: &GuestMem, at: u64) -> u8 {
    mem.read_obj::<u8>(GuestAddress(at)).unwrap()
}

fn read_mem(mem: &GuestMem, at: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    mem.read_slice(&mut v, GuestAddress(at)).unwrap();
    v
}

fn expected(disk: &MemDisk, offset: usize, len: usize) -> Vec<u8> {
    disk.data.lock().unwrap()[offset..offset + len].to_vec()
}

#[test]
fn read_with_separate_descriptors() {
    let mem = memory();
    let disk = MemDisk::new(1 << 20, true);
    header(&mem, 0x10000, VIRTIO_BLK_T_IN, 8);
    mem.write_obj(0xffu8, GuestAddress(0x12000)).unwrap();
    let chain = Chain {
        readable: vec![seg(0x10000, 16)],
        writable: vec![seg(0x11000, 4096), seg(0x12000, 1)],
    };
    assert_eq!(execute(&mem, &chain, &disk), 4097);
    assert_eq!(status(&mem, 0x12000), 0);
    assert_eq!(read_mem(&mem, 0x11000, 4096), expected(&disk, 4096, 4096));
}

#[test]
fn data_and_status_share_a_descriptor_and_header_is_split() {
    let mem = memory();
    let disk = MemDisk::new(1 << 20, true);
    header(&mem, 0x10000, VIRTIO_BLK_T_IN, 3);
    // Header split 10 + 6 bytes over two descriptors.
    let mut h = [0u8; 16];
    mem.read_slice(&mut h, GuestAddress(0x10000)).unwrap();
    mem.write_slice(&h[..10], GuestAddress(0x10100)).unwrap();
    mem.write_slice(&h[10..], GuestAddress(0x10200)).unwrap();
    let chain = Chain {
        readable: vec![seg(0x10100, 10), seg(0x10200, 6)],
        writable: vec![seg(0x11000, 1024 + 1)],
    };
    assert_eq!(execute(&mem, &chain, &disk), 1025);
    assert_eq!(status(&mem, 0x11000 + 1024), 0);
    assert_eq!(
        read_mem(&mem, 0x11000, 1024),
        expected(&disk, 3 * 512, 1024)
    );
}

#[test]
fn a_buffer_across_two_memory_regions() {
    let mem = memory();
    let disk = MemDisk::new(1 << 20, true);
    header(&mem, 0x10000, VIRTIO_BLK_T_IN, 0);
    // 8 KiB starting 4 KiB before the region boundary at 0x20000.
    let chain = Chain {
        readable: vec![seg(0x10000, 16)],
        writable: vec![seg(0x1f000, 8192), seg(0x30000, 1)],
    };
    assert_eq!(execute(&mem, &chain, &disk), 8193);
    assert_eq!(status(&mem, 0x30000), 0);
    assert_eq!(read_mem(&mem, 0x1f000, 8192), expected(&disk, 0, 8192));
}

#[test]
fn writes_on_read_only_disks_fail_and_writes_land_otherwise() {
    let mem = memory();
    mem.write_slice(&[0x5a; 512], GuestAddress(0x11000))
        .unwrap();
    header(&mem, 0x10000, VIRTIO_BLK_T_OUT, 2);
    let chain = Chain {
        readable: vec![seg(0x10000, 16), seg(0x11000, 512)],
        writable: vec![seg(0x12000, 1)],
    };
    let ro = MemDisk::new(1 << 20, true);
    let before = expected(&ro, 1024, 512);
    assert_eq!(execute(&mem, &chain, &ro), 1);
    assert_eq!(status(&mem, 0x12000), 1);
    assert_eq!(expected(&ro, 1024, 512), before);
    let rw = MemDisk::new(1 << 20, false);
    assert_eq!(execute(&mem, &chain, &rw), 1);
    assert_eq!(status(&mem, 0x12000), 0);
    assert_eq!(expected(&rw, 1024, 512), vec![0x5a; 512]);
    // Header and data in one readable descriptor.
    mem.write_slice(&[0x77; 512], GuestAddress(0x10010))
        .unwrap();
    let chain = Chain {
        readable: vec![seg(0x10000, 16 + 512)],
        writable: vec![seg(0x12000, 1)],
    };
    assert_eq!(execute(&mem, &chain, &rw), 1);
    assert_eq!(expected(&rw, 1024, 512), vec![0x77; 512]);
}

#[test]
fn bad_ranges_get_ioerr_and_the_disk_is_untouched() {
    let mem = memory();
    let disk = MemDisk::new(1 << 20, false);
    let sectors = (1u64 << 20) / 512;
    for (sector, len) in [
        (sectors, 512u32),
        (sectors - 1, 1024),
        (u64::MAX, 512),
        (u64::MAX / 256, 512),
        (0, 100),
        (0, 513),
    ] {
        header(&mem, 0x10000, VIRTIO_BLK_T_IN, sector);
        let chain = Chain {
            readable: vec![seg(0x10000, 16)],
            writable: vec![seg(0x11000, len), seg(0x12000, 1)],
        };
        assert_eq!(
            execute(&mem, &chain, &disk),
            len + 1,
            "sector {sector} len {len}"
        );
        assert_eq!(status(&mem, 0x12000), 1, "sector {sector} len {len}");
    }
    // A data buffer outside guest memory.
    header(&mem, 0x10000, VIRTIO_BLK_T_IN, 0);
    let chain = Chain {
        readable: vec![seg(0x10000, 16)],
        writable: vec![seg(0x3f000, 8192), seg(0x12000, 1)],
    };
    execute(&mem, &chain, &disk);
    assert_eq!(status(&mem, 0x12000), 1);
}

#[test]
fn get_id_fills_twenty_bytes_without_nul() {
    let mem = memory();
    let disk = MemDisk::new(4096, true);
    header(&mem, 0x10000, VIRTIO_BLK_T_GET_ID, 0);
    let chain = Chain {
        readable: vec![seg(0x10000, 16)],
        writable: vec![seg(0x11000, 20), seg(0x12000, 1)],
    };
    assert_eq!(execute(&mem, &chain, &disk), 21);
    assert_eq!(read_mem(&mem, 0x11000, 20), b"0123456789abcdefghij");
    let chain = Chain {
        readable: vec![seg(0x10000, 16)],
        writable: vec![seg(0x11000, 9)],
    };
    assert_eq!(execute(&mem, &chain, &disk), 9);
    assert_eq!(read_mem(&mem, 0x11000, 8), b"01234567");
    assert_eq!(status(&mem, 0x11008), 0);
}

#[test]
fn unknown_types_are_unsupported_and_malformed_chains_complete_empty() {
    let mem = memory();
    let disk = MemDisk::new(4096, true);
    header(&mem, 0x10000, 99, 0);
    let chain = Chain {
        readable: vec![seg(0x10000, 16)],
        writable: vec![seg(0x12000, 1)],
    };
    assert_eq!(execute(&mem, &chain, &disk), 1);
    assert_eq!(status(&mem, 0x12000), 2);
    // No writable byte: nothing can be reported.
    let chain = Chain {
        readable: vec![seg(0x10000, 16)],
        writable: vec![],
    };
    assert_eq!(execute(&mem, &chain, &disk), 0);
    // Short header: IOERR.
    let chain = Chain {
        readable: vec![seg(0x10000, 8)],
        writable: vec![seg(0x12000, 1)],
    };
    assert_eq!(execute(&mem, &chain, &disk), 1);
    assert_eq!(status(&mem, 0x12000), 1);
    // Status outside guest memory.
    let chain = Chain {
        readable: vec![seg(0x10000, 16)],
        writable: vec![seg(0x9000_0000, 1)],
    };
    assert_eq!(execute(&mem, &chain, &disk), 0);
}

#[test]
fn split_rejects_readable_after_writable() {
    let d = |addr, len, flags| Descriptor::new(addr, len, flags, 0);
    let write = virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16;
    assert_eq!(
        Chain::split([d(0x1000, 16, 0), d(0x2000, 8, write), d(0x3000, 4, 0)]),
        Err(Malformed::ReadableAfterWritable)
    );
    let c = Chain::split([d(0x1000, 16, 0), d(0x5000, 0, 0), d(0x2000, 8, write)]).unwrap();
    assert_eq!((c.readable.len(), c.writable.len()), (1, 1));
}

#[test]
fn discard_and_write_zeroes() {
    let mem = memory();
    let disk = MemDisk::new(1 << 20, false);
    let mut seg_bytes = [0u8; 16];
    seg_bytes[0..8].copy_from_slice(&4u64.to_le_bytes());
    seg_bytes[8..12].copy_from_slice(&8u32.to_le_bytes());
    mem.write_slice(&seg_bytes, GuestAddress(0x11000)).unwrap();
    for kind in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
        header(&mem, 0x10000, kind, 0);
        let chain = Chain {
            readable: vec![seg(0x10000, 16), seg(0x11000, 16)],
            writable: vec![seg(0x12000, 1)],
        };
        assert_eq!(execute(&mem, &chain, &disk), 1);
        assert_eq!(status(&mem, 0x12000), 0);
        assert_eq!(expected(&disk, 2048, 4096), vec![0; 4096]);
    }
    // Unknown flags: UNSUPP; read-only disk: UNSUPP (not offered).
    seg_bytes[12] = 2;
    mem.write_slice(&seg_bytes, GuestAddress(0x11000)).unwrap();
    let chain = Chain {
        readable: vec![seg(0x10000, 16), seg(0x11000, 16)],
        writable: vec![seg(0x12000, 1)],
    };
    execute(&mem, &chain, &disk);
    assert_eq!(status(&mem, 0x12000), 2);
    execute(&mem, &chain, &MemDisk::new(4096, true));
    assert_eq!(status(&mem, 0x12000), 2);
}
