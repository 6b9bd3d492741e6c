//! The vhost-user-blk socket driven by the vhost crate's own frontend, in process, with
//! memfd-backed guest memory in two regions and a hand-written split virtqueue: the
//! handshake QEMU performs, then reads, GET_ID, writes on a read-only disk, bad ranges, a
//! buffer across two memory regions, EVENT_IDX notification suppression and reconnects.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use layerpass::export::layer::LayerDisk;
use layerpass_tests::served::Served;
use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::virtio_blk::{VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT,
    VRING_DESC_F_WRITE, VRING_USED_F_NO_NOTIFY,
};
use vm_memory::{Address, Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

const QSIZE: u16 = 256;
const REGION: usize = 2 << 20;
const RING: u64 = 0x10_0000;
const DESC: u64 = RING;
const AVAIL: u64 = RING + 0x1000;
const USED: u64 = RING + 0x2000;
/// Request buffers: header, data, status.
const HDR: u64 = 0x11_0000;
const DATA: u64 = 0x12_0000;
const STATUS: u64 = 0x1f_0000;
/// An indirect descriptor table.
const INDIRECT: u64 = 0x1e_0000;
/// A data buffer straddling the two regions (the boundary is at 0x30_0000).
const STRADDLE: u64 = 0x30_0000 - 0x1000;
/// How long the test waits for the backend (a completion, an interrupt) before failing: a
/// guard against a hang, never a performance threshold.
const DEADLINE: Duration = Duration::from_secs(10);

struct Guest {
    mem: GuestMemoryMmap<()>,
    frontend: Frontend,
    kick: EventFd,
    call: EventFd,
    avail_idx: u16,
    used_seen: u16,
}

/// Whether `fd` is readable within `timeout` (poll(2); zero: is it readable now).
fn readable(fd: RawFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one pollfd it is given, which outlives the call.
        let n = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if n >= 0 {
            assert_eq!(
                pfd.revents & !libc::POLLIN,
                0,
                "poll: unexpected events {:#x}",
                pfd.revents
            );
            return n > 0;
        }
        let e = io::Error::last_os_error();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted, "poll: {e}");
    }
}

fn memfd() -> File {
    let name = c"layerpass-test-guest";
    // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create failed");
    // SAFETY: fd is a fresh, owned file descriptor.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(2 * REGION as u64).unwrap();
    f
}

impl Guest {
    /// Connects and performs QEMU's handshake on queue 0.
    fn connect(socket: &Path, event_idx: bool) -> Self {
        let file = memfd();
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files(&[
            (
                GuestAddress(0x10_0000),
                REGION,
                Some(FileOffset::new(file.try_clone().unwrap(), 0)),
            ),
            (
                GuestAddress(0x30_0000),
                REGION,
                Some(FileOffset::new(file, REGION as u64)),
            ),
        ])
        .unwrap();
        let mut frontend = Frontend::connect(socket, 8).unwrap();
        frontend.set_owner().unwrap();
        let features = frontend.get_features().unwrap();
        assert_ne!(
            features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits(),
            0
        );
        let proto = frontend.get_protocol_features().unwrap();
        assert!(proto.contains(VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::MQ));
        assert!(!proto.contains(VhostUserProtocolFeatures::INFLIGHT_SHMFD));
        frontend
            .set_protocol_features(
                VhostUserProtocolFeatures::CONFIG
                    | VhostUserProtocolFeatures::MQ
                    | VhostUserProtocolFeatures::REPLY_ACK,
            )
            .unwrap();
        assert_eq!(frontend.get_queue_num().unwrap(), 2);
        // QEMU 10 asks for 57 bytes.
        let (_, config) = frontend
            .get_config(0, 57, VhostUserConfigFlags::WRITABLE, &[0u8; 57])
            .unwrap();
        assert_eq!(config.len(), 57);
        assert_eq!(
            u64::from_le_bytes(config[0..8].try_into().unwrap()),
            3 * 4096 / 512
        );
        assert_eq!(u32::from_le_bytes(config[20..24].try_into().unwrap()), 4096);
        let mut want = (1u64 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        if event_idx {
            want |= 1 << VIRTIO_RING_F_EVENT_IDX;
        }
        assert_eq!(
            features & want,
            want,
            "backend lacks a wanted feature: {features:#x}"
        );
        frontend.set_features(features & want).unwrap();
        let regions: Vec<VhostUserMemoryRegionInfo> = mem
            .iter()
            .map(|r| VhostUserMemoryRegionInfo::from_guest_region(r).unwrap())
            .collect();
        frontend.set_mem_table(&regions).unwrap();
        frontend.set_vring_num(0, QSIZE).unwrap();
        let va = |gpa: u64| mem.get_host_address(GuestAddress(gpa)).unwrap() as u64;
        frontend
            .set_vring_addr(
                0,
                &VringConfigData {
                    queue_max_size: QSIZE,
                    queue_size: QSIZE,
                    flags: 0,
                    desc_table_addr: va(DESC),
                    used_ring_addr: va(USED),
                    avail_ring_addr: va(AVAIL),
                    log_addr: None,
                },
            )
            .unwrap();
        frontend.set_vring_base(0, 0).unwrap();
        let call = EventFd::new(EFD_NONBLOCK).unwrap();
        let kick = EventFd::new(EFD_NONBLOCK).unwrap();
        frontend.set_vring_call(0, &call).unwrap();
        frontend.set_vring_kick(0, &kick).unwrap();
        frontend.set_vring_enable(0, true).unwrap();
        Self {
            mem,
            frontend,
            kick,
            call,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    fn desc_at(&self, table: u64, index: u16, addr: u64, len: u32, flags: u32, next: u16) {
        let at = GuestAddress(table + u64::from(index) * 16);
        self.mem.write_obj(addr, at).unwrap();
        self.mem.write_obj(len, at.unchecked_add(8)).unwrap();
        self.mem
            .write_obj(flags as u16, at.unchecked_add(12))
            .unwrap();
        self.mem.write_obj(next, at.unchecked_add(14)).unwrap();
    }

    /// Posts a chain of (addr, len, writable) buffers with `used_event` (if given) written
    /// first, kicks, waits for the completion and returns its used length. Interrupts are
    /// left on the call eventfd: see `interrupts`.
    fn submit(&mut self, bufs: &[(u64, u32, bool)], used_event: Option<u16>) -> u32 {
        self.submit_as(bufs, used_event, false)
    }

    /// Like `submit`; with `indirect` the chain lives in an indirect table that the one
    /// descriptor in the ring points at.
    fn submit_as(
        &mut self,
        bufs: &[(u64, u32, bool)],
        used_event: Option<u16>,
        indirect: bool,
    ) -> u32 {
        let table = if indirect { INDIRECT } else { DESC };
        for (i, &(addr, len, write)) in bufs.iter().enumerate() {
            let mut flags = if write { VRING_DESC_F_WRITE } else { 0 };
            if i + 1 < bufs.len() {
                flags |= VRING_DESC_F_NEXT;
            }
            self.desc_at(table, i as u16, addr, len, flags, i as u16 + 1);
        }
        if indirect {
            self.desc_at(
                DESC,
                0,
                INDIRECT,
                16 * bufs.len() as u32,
                VRING_DESC_F_INDIRECT,
                0,
            );
        }
        let slot = AVAIL + 4 + 2 * u64::from(self.avail_idx % QSIZE);
        self.mem.write_obj(0u16, GuestAddress(slot)).unwrap();
        if let Some(e) = used_event {
            self.mem
                .write_obj(e, GuestAddress(AVAIL + 4 + 2 * u64::from(QSIZE)))
                .unwrap();
        }
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx, GuestAddress(AVAIL + 2))
            .unwrap();
        self.kick.write(1).unwrap();
        // Wait for the used index to move (the backend completes one chain at a time here).
        let deadline = Instant::now() + DEADLINE;
        loop {
            let used = self.used_idx();
            if used != self.used_seen {
                assert_eq!(used, self.used_seen.wrapping_add(1), "one completion");
                let elem = USED + 4 + 8 * u64::from(self.used_seen % QSIZE);
                let len: u32 = self.mem.read_obj(GuestAddress(elem + 4)).unwrap();
                self.used_seen = used;
                return len;
            }
            assert!(
                Instant::now() < deadline,
                "request {} not completed within {DEADLINE:?}",
                self.avail_idx
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The used ring's index, as the backend last published it.
    fn used_idx(&self) -> u16 {
        self.mem
            .load(GuestAddress(USED + 2), Ordering::Acquire)
            .unwrap()
    }

    /// Waits (up to `DEADLINE`) for the call eventfd to be signalled, then reads it: the
    /// number of interrupts since the last read (a read returns the accumulated count and
    /// resets it). Fails the test if no interrupt comes.
    fn interrupts(&self) -> u64 {
        assert!(
            readable(self.call.as_raw_fd(), DEADLINE),
            "no interrupt within {DEADLINE:?} (used index {})",
            self.used_idx()
        );
        self.call.read().unwrap()
    }

    /// Whether an interrupt is pending now (a zero-timeout poll; nothing is read).
    fn interrupt_pending(&self) -> bool {
        readable(self.call.as_raw_fd(), Duration::ZERO)
    }

    fn header(&self, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(HDR)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
    }

    fn status(&self) -> u8 {
        self.mem.read_obj(GuestAddress(STATUS)).unwrap()
    }

    fn bytes(&self, at: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    }
}

fn serve(dir: &Path) -> (Served, Vec<u8>) {
    let blob: Vec<u8> = (0..10_000u32).map(|i| (i % 241) as u8).collect();
    fs::write(dir.join("blob"), &blob).unwrap();
    let disk = LayerDisk::open(&dir.join("blob"), None, Some("layer-serial-0123456789")).unwrap();
    let server = Served::start(&dir.join("blk.sock"), Arc::new(disk), 2).unwrap();
    let mut expected = blob;
    expected.resize(3 * 4096, 0);
    (server, expected)
}

#[test]
fn requests_over_a_real_vhost_user_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (server, disk) = serve(dir.path());
    let mut g = Guest::connect(server.socket(), false);
    // Without EVENT_IDX every completion interrupts: each request below waits for its
    // interrupt (`interrupts` fails the test if none comes).

    // READ 4096 from sector 8: used length = data + status.
    g.header(VIRTIO_BLK_T_IN, 8);
    let len = g.submit(
        &[(HDR, 16, false), (DATA, 4096, true), (STATUS, 1, true)],
        None,
    );
    g.interrupts();
    assert_eq!((len, g.status()), (4097, 0));
    assert_eq!(g.bytes(DATA, 4096), disk[4096..8192]);

    // GET_ID: 20 bytes, no NUL.
    g.header(VIRTIO_BLK_T_GET_ID, 0);
    let len = g.submit(
        &[(HDR, 16, false), (DATA, 20, true), (STATUS, 1, true)],
        None,
    );
    g.interrupts();
    assert_eq!((len, g.status()), (21, 0));
    assert_eq!(g.bytes(DATA, 20), b"layer-serial-0123456");

    // WRITE on a read-only disk: IOERR, file untouched.
    g.header(VIRTIO_BLK_T_OUT, 0);
    let len = g.submit(
        &[(HDR, 16, false), (DATA, 512, false), (STATUS, 1, true)],
        None,
    );
    g.interrupts();
    assert_eq!((len, g.status()), (1, 1));
    assert_eq!(
        fs::read(dir.path().join("blob")).unwrap()[..512],
        disk[..512]
    );

    // Past the end, and a length that is not whole sectors: IOERR.
    g.header(VIRTIO_BLK_T_IN, 24);
    g.submit(
        &[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)],
        None,
    );
    g.interrupts();
    assert_eq!(g.status(), 1);
    g.header(VIRTIO_BLK_T_IN, 0);
    g.submit(
        &[(HDR, 16, false), (DATA, 100, true), (STATUS, 1, true)],
        None,
    );
    g.interrupts();
    assert_eq!(g.status(), 1);

    // A data buffer across the two memory regions, data and status in one descriptor.
    g.header(VIRTIO_BLK_T_IN, 0);
    let len = g.submit(&[(HDR, 16, false), (STRADDLE, 8192 + 1, true)], None);
    g.interrupts();
    g.mem.write_obj(0u8, GuestAddress(STATUS)).unwrap();
    assert_eq!(len, 8193);
    assert_eq!(g.bytes(STRADDLE + 8192, 1), [0]);
    assert_eq!(g.bytes(STRADDLE, 8192), disk[..8192]);

    // The same read through an indirect descriptor table.
    g.header(VIRTIO_BLK_T_IN, 8);
    g.mem.write_slice(&[0u8; 4096], GuestAddress(DATA)).unwrap();
    let len = g.submit_as(
        &[(HDR, 16, false), (DATA, 4096, true), (STATUS, 1, true)],
        None,
        true,
    );
    g.interrupts();
    assert_eq!((len, g.status()), (4097, 0));
    assert_eq!(g.bytes(DATA, 4096), disk[4096..8192]);

    // The queue survived every bad request: one more good read.
    g.header(VIRTIO_BLK_T_IN, 16);
    g.submit(
        &[(HDR, 16, false), (DATA, 4096, true), (STATUS, 1, true)],
        None,
    );
    g.interrupts();
    assert_eq!(
        (g.status(), g.bytes(DATA, 4096)),
        (0, disk[8192..].to_vec())
    );

    // GET_VRING_BASE stops the queue and returns the next available index.
    assert_eq!(
        g.frontend.get_vring_base(0).unwrap(),
        u32::from(g.avail_idx)
    );
}

/// EVENT_IDX (virtio 1.2, 2.7.10): the backend interrupts only when a batch of completions
/// moves the used index past `used_event`, i.e. from `used_event` to `used_event + 1` or
/// beyond. The backend completes in order on one worker per queue and decides whether to
/// interrupt for a batch before it takes the next one, so once a later completion shows in
/// the used ring, every interrupt for the earlier ones has been sent: counting the
/// interrupts then decides the suppression without a time window.
#[test]
fn event_idx_suppresses_notifications_until_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (server, disk) = serve(dir.path());
    let mut g = Guest::connect(server.socket(), true);
    let read = [(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)];

    // used_event 0: the first completion moves the used index from 0 to 1, past it.
    g.header(VIRTIO_BLK_T_IN, 0);
    assert_eq!(g.submit(&read, Some(0)), 513);
    assert_eq!(g.bytes(DATA, 512), disk[..512]);
    assert_eq!(g.interrupts(), 1, "one interrupt for the first completion");

    // used_event still 0, already passed: 1 -> 2 does not cross it, no interrupt.
    g.header(VIRTIO_BLK_T_IN, 1);
    assert_eq!(g.submit(&read, None), 513);
    assert_eq!(g.bytes(DATA, 512), disk[512..1024]);
    // used_event far ahead: 2 -> 3 does not reach it, no interrupt. (Changing it may race
    // with the backend's decision for the previous completion; 100 suppresses that one too.)
    g.header(VIRTIO_BLK_T_IN, 2);
    assert_eq!(g.submit(&read, Some(100)), 513);
    assert_eq!(g.bytes(DATA, 512), disk[1024..1536]);
    assert_eq!(g.used_idx(), 3, "the suppressed requests completed");
    // An interrupt for the second request was sent, if at all, before the third completed.
    assert!(
        !g.interrupt_pending(),
        "interrupted although used_event said not to (used index {})",
        g.used_idx()
    );

    // used_event = 3: the next completion moves the used index past it: interrupt. (The
    // decision for the third completion, which may see this value, is 2 -> 3: still none.)
    let asked = g.used_seen;
    g.header(VIRTIO_BLK_T_IN, 3);
    assert_eq!(g.submit(&read, Some(asked)), 513);
    // A barrier: one more request, used_event left at 3 (now passed, so no interrupt). Its
    // completion comes after the backend's decision for the one before, so when it shows,
    // the interrupt asked for has been sent, and so has any wrongly sent for the third.
    g.header(VIRTIO_BLK_T_IN, 4);
    assert_eq!(g.submit(&read, None), 513);
    assert_eq!(g.bytes(DATA, 512), disk[2048..2560]);
    assert_eq!(g.used_idx(), 5);
    assert_eq!(
        g.interrupts(),
        1,
        "interrupts after the first: exactly the one used_event {asked} asked for; more means \
         the backend interrupted although used_event said not to"
    );
}

#[test]
fn a_new_connection_after_a_disconnect_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (server, disk) = serve(dir.path());
    for round in 0..3u64 {
        let mut g = Guest::connect(server.socket(), round % 2 == 1);
        g.header(VIRTIO_BLK_T_IN, round * 8);
        // used_event 0 (when EVENT_IDX is on): the first completion interrupts.
        g.submit(
            &[(HDR, 16, false), (DATA, 4096, true), (STATUS, 1, true)],
            Some(0),
        );
        g.interrupts();
        assert_eq!(g.status(), 0, "round {round}");
        let at = round as usize * 4096;
        assert_eq!(g.bytes(DATA, 4096), disk[at..at + 4096], "round {round}");
        drop(g);
    }
}

/// Whether the peer closed `s` within the deadline (a read returns 0 or fails).
fn closed_by_peer(s: &mut std::os::unix::net::UnixStream) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn a_hostile_frontend_loses_only_its_own_connection() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    let dir = tempfile::tempdir().unwrap();
    let (first, disk) = serve(dir.path());
    let engine = first.engine();
    let other = engine
        .serve(
            &dir.path().join("other.sock"),
            Arc::new(LayerDisk::open(&dir.path().join("blob"), None, Some("other")).unwrap()),
            2,
        )
        .unwrap();

    // A message code nobody knows with an absurd size: the stream is out of step, the
    // connection goes.
    let mut garbage = UnixStream::connect(first.socket()).unwrap();
    let mut msg = Vec::new();
    msg.extend(9999u32.to_le_bytes());
    msg.extend(1u32.to_le_bytes());
    msg.extend(u32::MAX.to_le_bytes());
    garbage.write_all(&msg).unwrap();
    assert!(closed_by_peer(&mut garbage), "garbage kept its connection");
    drop(garbage);

    // Half a header, then silence: the control thread never blocks on it (it reads only whole
    // messages), so every other disk is served meanwhile.
    let mut half = UnixStream::connect(first.socket()).unwrap();
    half.write_all(&1u32.to_le_bytes()[..3]).unwrap();
    let mut g = Guest::connect(other.socket(), false);
    g.header(VIRTIO_BLK_T_IN, 8);
    g.submit(
        &[(HDR, 16, false), (DATA, 4096, true), (STATUS, 1, true)],
        None,
    );
    g.interrupts();
    assert_eq!(g.status(), 0);
    assert_eq!(g.bytes(DATA, 4096), disk[4096..8192]);
    // Once the frontend goes, its connection ends and the socket serves the next one.
    drop(half);

    // The socket the hostile frontends used serves a well-behaved one.
    let mut g = Guest::connect(first.socket(), true);
    g.header(VIRTIO_BLK_T_IN, 16);
    g.submit(
        &[(HDR, 16, false), (DATA, 4096, true), (STATUS, 1, true)],
        Some(0),
    );
    g.interrupts();
    assert_eq!(g.status(), 0);
    assert_eq!(g.bytes(DATA, 4096), disk[8192..12_288]);
    assert!(first.export().stats().connections.load(Ordering::Relaxed) >= 3);
    drop(g);

    // GET_VRING_BASE (11) of a queue the disk does not have: the request expects a reply
    // the vhost crate does not send, so the engine ends the connection instead of leaving
    // the frontend waiting for ever.
    let mut raw = UnixStream::connect(first.socket()).unwrap();
    let mut msg = Vec::new();
    msg.extend(11u32.to_le_bytes());
    msg.extend(1u32.to_le_bytes());
    msg.extend(8u32.to_le_bytes());
    msg.extend(7u32.to_le_bytes());
    msg.extend(0u32.to_le_bytes());
    raw.write_all(&msg).unwrap();
    assert!(
        closed_by_peer(&mut raw),
        "GET_VRING_BASE of a missing queue must end the connection, not leave it waiting"
    );
}

/// A layer whose verity has 512-byte blocks (containerd's tar-index blobs) reaches the
/// guest with `blk_size` 512 in the config space; a 4096/4096 one with 4096.
#[test]
fn the_config_space_carries_the_disks_logical_block_size() {
    use layerpass::verity::{FormatOptions, VerityParams, format_file};

    let dir = tempfile::tempdir().unwrap();
    for (name, size) in [("small", 512u32), ("big", 4096)] {
        let blob = dir.path().join(name);
        fs::write(&blob, vec![7u8; 8 * 4096]).unwrap();
        let opts = FormatOptions {
            params: VerityParams {
                data_block_size: size,
                hash_block_size: size,
                ..VerityParams::containerd()
            },
            ..FormatOptions::containerd()
        };
        format_file(&blob, &opts, None).unwrap();
        let disk = Arc::new(LayerDisk::open(&blob, None, None).unwrap());
        let server = Served::start(&dir.path().join(format!("{name}.sock")), disk, 1).unwrap();
        let mut frontend = Frontend::connect(server.socket(), 1).unwrap();
        frontend.set_owner().unwrap();
        frontend.get_features().unwrap();
        frontend.get_protocol_features().unwrap();
        frontend
            .set_protocol_features(VhostUserProtocolFeatures::CONFIG)
            .unwrap();
        let (_, config) = frontend
            .get_config(0, 57, VhostUserConfigFlags::WRITABLE, &[0u8; 57])
            .unwrap();
        assert_eq!(
            u32::from_le_bytes(config[20..24].try_into().unwrap()),
            size,
            "{name}"
        );
    }
}

/// Sets the flag when dropped, also on a failed assertion: the test's saturating driver
/// thread then stops and the thread scope can end.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A disk whose reads take [`SlowDisk::DELAY`] more: a guest's ring of requests on it
/// takes far longer to serve than its driver takes to refill it.
#[derive(Debug)]
struct SlowDisk(LayerDisk);

impl SlowDisk {
    const DELAY: Duration = Duration::from_micros(200);
}

impl layerpass::export::Disk for SlowDisk {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_only(&self) -> bool {
        self.0.read_only()
    }
    fn serial(&self) -> &[u8] {
        self.0.serial()
    }
    fn logical_block_size(&self) -> u32 {
        self.0.logical_block_size()
    }
    fn read_at(
        &self,
        offset: u64,
        dst: &[vm_memory::VolatileSlice<'_>],
    ) -> Result<(), layerpass::export::DiskError> {
        std::thread::sleep(Self::DELAY);
        self.0.read_at(offset, dst)
    }
    fn write_at(
        &self,
        offset: u64,
        src: &[vm_memory::VolatileSlice<'_>],
    ) -> Result<(), layerpass::export::DiskError> {
        self.0.write_at(offset, src)
    }
    fn flush(&self) -> Result<(), layerpass::export::DiskError> {
        self.0.flush()
    }
}

/// A guest that keeps its ring full for ever gets a worker's share, not the worker: with one
/// queue worker for two disks and guest A's driver putting back every request the moment it
/// completes (its available index always a whole ring ahead of the used one; its disk slow,
/// so the ring never runs dry), guest B's read completes, and the control thread, which
/// serves every disk of the engine, stops A's queue (GET_VRING_BASE) while A is still
/// saturating it. Without the batch bound B waits, and the control thread with it, for as
/// long as A keeps going (the deterministic checks of the bound are `vring`'s unit tests).
/// With notifications only and with polling.
#[test]
fn a_saturated_queue_starves_neither_other_disks_nor_the_control_thread() {
    use layerpass::vhost::{DEFAULT_POLL, Engine, EngineConfig};
    use std::sync::mpsc;

    for poll in [Duration::ZERO, DEFAULT_POLL] {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::start(EngineConfig { workers: 1, poll }).unwrap();
        let mut exports = Vec::new();
        let mut contents = Vec::new();
        for (name, seed) in [("a", 7u32), ("b", 13)] {
            let blob: Vec<u8> = (0..3 * 4096u32).map(|i| (i * seed % 251) as u8).collect();
            let path = dir.path().join(name);
            fs::write(&path, &blob).unwrap();
            let disk = LayerDisk::open(&path, None, None).unwrap();
            let disk: Arc<dyn layerpass::export::Disk> = if name == "a" {
                Arc::new(SlowDisk(disk))
            } else {
                Arc::new(disk)
            };
            let socket = dir.path().join(format!("{name}.sock"));
            exports.push(engine.serve(&socket, disk, 2).unwrap());
            contents.push(blob);
        }
        let mut a = Guest::connect(exports[0].socket(), false);
        let mut b = Guest::connect(exports[1].socket(), false);

        // A: descriptors 0..2 are a 4096-byte read; every avail slot holds head 0 (the ring
        // is zeroed), so any available index names a whole ring of valid requests.
        a.header(VIRTIO_BLK_T_IN, 0);
        a.desc_at(DESC, 0, HDR, 16, VRING_DESC_F_NEXT, 1);
        a.desc_at(
            DESC,
            1,
            DATA,
            4096,
            VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
            2,
        );
        a.desc_at(DESC, 2, STATUS, 1, VRING_DESC_F_WRITE, 0);
        let Guest {
            mem: a_mem,
            frontend: a_frontend,
            kick: a_kick,
            ..
        } = &mut a;
        let a_mem = &*a_mem;
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let _stop = StopOnDrop(&stop);
            // The driver: puts back every completed request at once and, like a virtio
            // driver, kicks after publishing new ones unless the device asked not to be
            // (VRING_USED_F_NO_NOTIFY).
            let a_kick = &*a_kick;
            s.spawn(|| {
                let mut avail = 0u16;
                while !stop.load(Ordering::Relaxed) {
                    let used: u16 = a_mem
                        .load(GuestAddress(USED + 2), Ordering::Acquire)
                        .unwrap();
                    if used.wrapping_add(QSIZE) != avail {
                        avail = used.wrapping_add(QSIZE);
                        a_mem
                            .store(avail, GuestAddress(AVAIL + 2), Ordering::SeqCst)
                            .unwrap();
                        let flags: u16 = a_mem.load(GuestAddress(USED), Ordering::SeqCst).unwrap();
                        if flags & VRING_USED_F_NO_NOTIFY as u16 == 0 {
                            a_kick.write(1).unwrap();
                        }
                    }
                    std::hint::spin_loop();
                }
            });
            let a_used = || -> u16 {
                a_mem
                    .load(GuestAddress(USED + 2), Ordering::Acquire)
                    .unwrap()
            };
            // A is being served: several rings' worth completed.
            let deadline = Instant::now() + DEADLINE;
            let mut completed = 0u32;
            let mut last = a_used();
            while completed < 2 * u32::from(QSIZE) {
                assert!(Instant::now() < deadline, "A is not served (poll {poll:?})");
                let now = a_used();
                completed += u32::from(now.wrapping_sub(last));
                last = now;
                std::thread::sleep(Duration::from_millis(1));
            }

            // B's read completes while A goes on.
            b.header(VIRTIO_BLK_T_IN, 8);
            let len = b.submit(
                &[(HDR, 16, false), (DATA, 4096, true), (STATUS, 1, true)],
                None,
            );
            assert_eq!((len, b.status()), (4097, 0), "poll {poll:?}");
            assert_eq!(b.bytes(DATA, 4096), contents[1][4096..8192]);
            // A is still served, and still saturating its ring.
            let deadline = Instant::now() + DEADLINE;
            let after_b = a_used();
            while a_used() == after_b {
                assert!(
                    Instant::now() < deadline,
                    "A no longer served (poll {poll:?})"
                );
                std::thread::sleep(Duration::from_millis(1));
            }

            // The control thread stops A's queue while A still saturates it.
            let (tx, rx) = mpsc::channel();
            s.spawn(move || tx.send(a_frontend.get_vring_base(0)));
            let base = rx
                .recv_timeout(DEADLINE)
                .unwrap_or_else(|e| {
                    panic!("GET_VRING_BASE not answered within {DEADLINE:?} (poll {poll:?}): {e}")
                })
                .unwrap();
            assert!(!stop.load(Ordering::SeqCst));
            // Stopped: nothing more is served, and the base is where serving stopped.
            let at_stop = a_used();
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(
                a_used(),
                at_stop,
                "A served after GET_VRING_BASE (poll {poll:?})"
            );
            assert_eq!(base, u32::from(at_stop), "poll {poll:?}");
            assert_eq!(a_mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), 0);
            assert_eq!(
                a_mem.read_obj::<[u8; 16]>(GuestAddress(DATA)).unwrap(),
                contents[0][..16]
            );
        });
        drop(exports);
    }
}
