//! The batch bound, on a ring in memory: a queue of 1024 requests all available.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;

use virtio_bindings::virtio_blk::VIRTIO_BLK_T_IN;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};

use super::*;
use crate::export::layer::LayerDisk;

const SIZE: u16 = 1024;
const DESC: u64 = 0;
const AVAIL: u64 = 0x4000;
const USED: u64 = 0x5000;
const HDR: u64 = 0x8000;
const DATA: u64 = 0x9000;
const STATUS: u64 = 0xa000;

/// A started, enabled queue of [`SIZE`] entries whose every available slot is the same
/// 512-byte read, all [`SIZE`] of them available; and its kick eventfd.
fn saturated() -> (Vring, File, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk");
    std::fs::write(&path, vec![7u8; 4096]).unwrap();
    let disk = Arc::new(LayerDisk::open(&path, None, None).unwrap());
    let mem: GuestMem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    let desc = |i: u64, addr: u64, len: u32, flags: u32, next: u16| {
        let at = GuestAddress(DESC + i * 16);
        mem.write_obj(addr, at).unwrap();
        mem.write_obj(len, GuestAddress(at.0 + 8)).unwrap();
        mem.write_obj(flags as u16, GuestAddress(at.0 + 12))
            .unwrap();
        mem.write_obj(next, GuestAddress(at.0 + 14)).unwrap();
    };
    desc(0, HDR, 16, VRING_DESC_F_NEXT, 1);
    desc(1, DATA, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
    desc(2, STATUS, 1, VRING_DESC_F_WRITE, 0);
    mem.write_obj(VIRTIO_BLK_T_IN, GuestAddress(HDR)).unwrap();
    // Every avail slot is head 0 (zeroed memory); the index says all are available.
    mem.write_obj(SIZE, GuestAddress(AVAIL + 2)).unwrap();

    // SAFETY: eventfd takes an initial value and flags and returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
    assert!(fd >= 0);
    // SAFETY: fd is a fresh file descriptor owned by nothing else.
    let kick = unsafe { File::from_raw_fd(fd) };

    let vring = Vring::new(0, disk, GuestMemoryAtomic::new(mem)).unwrap();
    {
        let mut st = vring.lock();
        st.queue.set_size(SIZE);
        st.queue.set_desc_table_address(Some(DESC as u32), Some(0));
        st.queue.set_avail_ring_address(Some(AVAIL as u32), Some(0));
        st.queue.set_used_ring_address(Some(USED as u32), Some(0));
        st.queue.set_ready(true);
        st.kick = Some(kick.try_clone().unwrap());
        st.enabled = true;
        st.started = true;
    }
    (vring, kick, dir)
}

fn used_idx(vring: &Vring) -> u16 {
    vring
        .memory()
        .memory()
        .read_obj(GuestAddress(USED + 2))
        .unwrap()
}

/// Whether the kick eventfd holds a kick (a zero-timeout poll; nothing is read).
fn kicked(kick: &File) -> bool {
    let mut pfd = libc::pollfd {
        fd: kick.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd it is given, which outlives the call.
    let n = unsafe { libc::poll(&raw mut pfd, 1, 0) };
    n == 1
}

/// Without polling, a full ring is served [`MAX_BATCH`] requests at a time, each batch
/// ending with a kick of its own so the worker comes back after its other queues; the
/// batch that finds the ring empty turns notifications back on and kicks nothing.
#[test]
fn a_batch_ends_at_the_bound_and_kicks_the_queue_again() {
    let (vring, kick, _dir) = saturated();
    assert_eq!(vring.serve(false, false), Pass::Served(MAX_BATCH));
    assert_eq!(usize::from(used_idx(&vring)), MAX_BATCH);
    assert!(kicked(&kick), "the first batch kicked the queue again");
    let batches = usize::from(SIZE) / MAX_BATCH;
    for i in 2..=batches {
        assert_eq!(
            vring.serve(true, false),
            Pass::Served(MAX_BATCH),
            "batch {i}"
        );
        assert_eq!(usize::from(used_idx(&vring)), i * MAX_BATCH);
        assert!(kicked(&kick), "batch {i} kicked the queue again");
    }
    assert_eq!(vring.serve(true, false), Pass::Served(0));
    assert!(!kicked(&kick), "an empty ring is not kicked");
    assert_eq!(vring.served(), u64::from(SIZE));
    let mem = vring.memory().memory();
    assert_eq!(mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), 0);
    assert_eq!(mem.read_obj::<[u8; 8]>(GuestAddress(DATA)).unwrap(), [7; 8]);
}

/// A polled queue's batch ends at the bound too, with no kick: the worker polls it again
/// after its other hot queues.
#[test]
fn a_polled_batch_ends_at_the_bound_without_a_kick() {
    let (vring, kick, _dir) = saturated();
    assert_eq!(vring.serve(false, true), Pass::Served(MAX_BATCH));
    assert!(!kicked(&kick));
    assert_eq!(vring.serve(false, true), Pass::Served(MAX_BATCH));
    assert_eq!(usize::from(used_idx(&vring)), 2 * MAX_BATCH);
}

/// While the control thread waits for the queue no batch starts, and the kick stays unread
/// so the worker is told again.
#[test]
fn no_batch_starts_while_the_control_thread_waits() {
    let (vring, kick, _dir) = saturated();
    self_kick(&kick);
    vring.control_waiting.fetch_add(1, Ordering::SeqCst);
    assert_eq!(vring.serve(true, false), Pass::Served(0));
    assert_eq!(vring.serve(false, true), Pass::Served(0));
    assert_eq!(used_idx(&vring), 0);
    assert!(kicked(&kick), "the kick is left for the worker");
    vring.control_waiting.fetch_sub(1, Ordering::SeqCst);
    assert_eq!(vring.serve(true, false), Pass::Served(MAX_BATCH));
}
