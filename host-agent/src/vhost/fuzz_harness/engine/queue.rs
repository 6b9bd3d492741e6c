//! A queue as the harness predicts the backend holds it, and where the harness puts its
//! rings.

use vmm_sys_util::eventfd::EventFd;

use super::guest::RAM_BASE;
use crate::vhost::config::MAX_QUEUE_SIZE;

/// Invalid queue sizes a step may ask for.
const BAD_SIZES: [u32; 6] = [0, 3, 100, 1025, 2048, 65535];

/// Where a queue's rings are, by guest address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rings {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

impl Rings {
    /// The rings the harness writes for queue `q`: 32 KiB of guest RAM per queue, room for
    /// the largest queue.
    pub fn standard(q: usize) -> Self {
        let desc = RAM_BASE + q as u64 * 0x8000;
        Self {
            desc,
            avail: desc + 0x4000,
            used: desc + 0x5000,
        }
    }
}

/// One queue, as predicted.
#[derive(Debug)]
pub struct QueueState {
    /// The backend's queue size (its initial value is the largest).
    pub size: u16,
    /// The backend's ring addresses (`None`: never set, zero).
    pub addr: Option<Rings>,
    pub started: bool,
    pub enabled: bool,
    /// Served by a worker.
    pub registered: bool,
    /// The backend's next available index, when known.
    pub next_avail: Option<u16>,
    /// The available index the harness published.
    pub avail: u16,
    /// The next descriptor slot the harness writes.
    pub cursor: u16,
    pub kick: Option<EventFd>,
    pub call: Option<EventFd>,
}

impl QueueState {
    pub fn new() -> Self {
        Self {
            size: MAX_QUEUE_SIZE as u16,
            addr: None,
            started: false,
            enabled: false,
            registered: false,
            next_avail: Some(0),
            avail: 0,
            cursor: 0,
            kick: None,
            call: None,
        }
    }
}

/// The queue size a step byte asks for.
pub fn size(v: u8) -> u32 {
    if v < 0x80 {
        1 << (v % 11)
    } else {
        BAD_SIZES[usize::from(v) % BAD_SIZES.len()]
    }
}
