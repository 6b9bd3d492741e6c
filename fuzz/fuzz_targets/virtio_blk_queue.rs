//! Fuzzes what a guest controls on a virtio-blk queue: the descriptor table, the available
//! ring, indirect tables, request headers, data and status addresses. The input fills guest
//! memory; the queue's rings sit at fixed addresses inside it; the backend's own queue pass
//! (`serve_available`) walks the chains and executes them against a small layer disk.
//! Nothing may panic, and every request stays inside the disk.

#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use layerpass::export::layer::LayerDisk;
use layerpass::vhost::queue::serve_available;
use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM_START: u64 = 0x1000;
const MEM_LEN: usize = 0x10000;
const QSIZE: u16 = 16;

fn disk() -> &'static LayerDisk {
    static DISK: OnceLock<(tempfile::NamedTempFile, LayerDisk)> = OnceLock::new();
    &DISK
        .get_or_init(|| {
            let mut f = tempfile::NamedTempFile::new().expect("temp file");
            f.write_all(&[0x5a; 10_000]).expect("write");
            let d = LayerDisk::open(f.path(), None, Some("fuzz")).expect("disk");
            (f, d)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(MEM_START), MEM_LEN)]).expect("memory");
    let n = data.len().min(MEM_LEN);
    mem.write_slice(&data[..n], GuestAddress(MEM_START)).expect("fill");
    let mut q = Queue::new(QSIZE).expect("queue");
    q.set_size(QSIZE);
    q.set_desc_table_address(Some(MEM_START as u32), Some(0));
    q.set_avail_ring_address(Some((MEM_START + 0x100) as u32), Some(0));
    q.set_used_ring_address(Some((MEM_START + 0x200) as u32), Some(0));
    q.set_event_idx(data.first().is_some_and(|b| b & 1 == 1));
    q.set_ready(true);
    // A bounded number of passes: a hostile avail index must not loop forever.
    for _ in 0..4 {
        match serve_available(&mut q, &mem, disk()) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
});
