//! One virtqueue of one connection: its ring state, its kick and call eventfds, and the batch
//! a queue worker runs on it.
//!
//! The state sits behind a mutex that only two parties take: the worker the queue is assigned
//! to (for a batch) and the control thread (for a vhost-user message about this queue). A
//! batch holds it from the first descriptor to the used-ring update, so once the control
//! thread has stopped a queue (GET_VRING_BASE, disconnect, unexport) no request of it runs
//! any more and its disk is not touched again.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic};

use super::config::MAX_QUEUE_SIZE;
use super::queue::serve_some;
use super::request::GuestMem;
use super::worker::Registration;
use crate::export::Disk;
use crate::warn_limited;

/// Requests completed between two checks whether the driver wants an interrupt: a driver
/// waiting for its first completion gets it while the rest of a deep ring is still being
/// served, so it refills the ring meanwhile instead of waiting for the whole batch (with
/// EVENT_IDX the check interrupts only when the driver asked to be).
const SIGNAL_EVERY: usize = 8;

/// What a batch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The queue is stopped or disabled: drop it from any poll list.
    Stopped,
    /// Requests completed (possibly 0).
    Served(usize),
}

/// What going back to notifications found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Notifications are on again; the next request kicks.
    Rearmed,
    /// A request arrived meanwhile: keep serving.
    Work,
    /// The queue is stopped.
    Stopped,
}

/// The mutable part of a queue.
#[derive(Debug)]
pub struct VringState {
    pub queue: Queue,
    pub kick: Option<File>,
    pub call: Option<File>,
    /// SET_VRING_ENABLE (or every ring, when PROTOCOL_FEATURES was not negotiated).
    pub enabled: bool,
    /// Started by SET_VRING_KICK, stopped by GET_VRING_BASE or the end of the connection.
    pub started: bool,
    /// The worker the queue's kick fd is registered with.
    pub registration: Option<Registration>,
}

impl VringState {
    /// Whether requests may be served: started, enabled and ready.
    pub fn running(&self) -> bool {
        self.started && self.enabled && self.queue.ready()
    }
}

/// One virtqueue.
#[derive(Debug)]
pub struct Vring {
    index: u16,
    disk: Arc<dyn Disk>,
    mem: GuestMemoryAtomic<GuestMem>,
    state: Mutex<VringState>,
    served: AtomicU64,
}

impl Vring {
    pub fn new(
        index: u16,
        disk: Arc<dyn Disk>,
        mem: GuestMemoryAtomic<GuestMem>,
    ) -> Result<Self, virtio_queue::Error> {
        // MAX_QUEUE_SIZE (1024) is a power of two within virtio's limit.
        let queue = Queue::new(MAX_QUEUE_SIZE as u16)?;
        Ok(Self {
            index,
            disk,
            mem,
            state: Mutex::new(VringState {
                queue,
                kick: None,
                call: None,
                enabled: false,
                started: false,
                registration: None,
            }),
            served: AtomicU64::new(0),
        })
    }

    /// The state, for the control thread.
    pub fn lock(&self) -> MutexGuard<'_, VringState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Memory of the connection, for checks made by the control thread.
    pub fn memory(&self) -> &GuestMemoryAtomic<GuestMem> {
        &self.mem
    }

    /// Requests completed on this queue so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// A batch: consumes a kick if `kicked`, then serves every available request. With `hot`
    /// the caller goes on polling, so notifications stay off; without, they are turned back on
    /// and the ring is drained until no request slipped in meanwhile.
    pub fn serve(&self, kicked: bool, hot: bool) -> Pass {
        let mut st = self.lock();
        if kicked {
            consume_kick(st.kick.as_ref());
        }
        if !st.running() {
            return Pass::Stopped;
        }
        let mem = self.mem.memory();
        let mut total = 0;
        loop {
            if let Err(e) = st.queue.disable_notification(&*mem) {
                warn_limited!(queue = self.index, error = %e, "cannot disable queue notifications");
            }
            let n = match serve_some(&mut st.queue, &mem, self.disk.as_ref(), SIGNAL_EVERY) {
                Ok(n) => n,
                Err(e) => {
                    warn_limited!(queue = self.index, error = %e, "cannot serve the queue");
                    break;
                }
            };
            total += n;
            if n > 0 {
                signal(&mut st, &mem, self.index);
            }
            if n == SIGNAL_EVERY {
                continue;
            }
            if hot {
                break;
            }
            match st.queue.enable_notification(&*mem) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    warn_limited!(queue = self.index, error = %e, "cannot enable queue notifications");
                    break;
                }
            }
        }
        if total > 0 {
            self.served.fetch_add(total as u64, Ordering::Relaxed);
        }
        Pass::Served(total)
    }

    /// Turns notifications back on after polling.
    pub fn go_idle(&self) -> Idle {
        let mut st = self.lock();
        if !st.running() {
            return Idle::Stopped;
        }
        let mem = self.mem.memory();
        match st.queue.enable_notification(&*mem) {
            Ok(true) => Idle::Work,
            Ok(false) => Idle::Rearmed,
            Err(e) => {
                warn_limited!(queue = self.index, error = %e, "cannot enable queue notifications");
                Idle::Rearmed
            }
        }
    }
}

/// Clears the kick eventfd's counter. Called only after epoll reported it readable (or with
/// the counter known non-zero), so the read does not block even on a blocking eventfd.
fn consume_kick(kick: Option<&File>) {
    if let Some(mut f) = kick {
        let mut buf = [0u8; 8];
        if let Err(e) = f.read(&mut buf) {
            warn_limited!(error = %e, "cannot read a queue's kick eventfd");
        }
    }
}

/// Interrupts the driver if it asked to be (event index) or did not suppress interrupts.
fn signal(st: &mut VringState, mem: &GuestMem, index: u16) {
    match st.queue.needs_notification(mem) {
        Ok(true) => {
            if let Some(mut call) = st.call.as_ref()
                && let Err(e) = call.write_all(&1u64.to_ne_bytes())
            {
                warn_limited!(queue = index, error = %e, "cannot signal the used queue");
            }
        }
        Ok(false) => {}
        Err(e) => {
            warn_limited!(queue = index, error = %e, "cannot check whether to notify the guest");
        }
    }
}

/// Writes 1 to a kick eventfd: a kick of our own, so a queue started with requests already
/// available (a frontend reconnecting after a restart replays them) is served at once.
pub fn self_kick(kick: &File) {
    let mut f = kick;
    if let Err(e) = f.write_all(&1u64.to_ne_bytes()) {
        warn_limited!(error = %e, "cannot kick a queue");
    }
}
