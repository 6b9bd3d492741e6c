//! One virtqueue of one connection: its ring state, its kick and call eventfds, and the batch
//! a queue worker runs on it.
//!
//! The state sits behind a mutex that only two parties take: the worker the queue is assigned
//! to (for a batch) and the control thread (for a vhost-user message about this queue). A
//! batch holds it from the first descriptor to the used-ring update, so once the control
//! thread has stopped a queue (GET_VRING_BASE, disconnect, unexport) no request of it runs
//! any more and its disk is not touched again.
//!
//! A guest can keep its ring full for ever, so a batch is bounded: it ends after
//! [`MAX_BATCH`] requests, or earlier when the control thread is waiting for the queue (it
//! serves every disk of the engine, so it must never wait for a guest), and the queue is
//! served again after the worker's other queues had their turn: a hot queue on the next
//! poll, a notified one through a kick of our own. No new batch starts while the control
//! thread waits.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// Requests one batch serves at most (a multiple of [`SIGNAL_EVERY`]): a few hundred
/// microseconds of a saturated queue's reads from the page cache, after which the worker's
/// other queues and the control thread get their turn.
pub const MAX_BATCH: usize = 256;

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
    /// Control-thread calls of [`Vring::lock`] waiting for the state: a batch ends at its
    /// next check and none starts while this is non-zero.
    control_waiting: AtomicUsize,
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
            control_waiting: AtomicUsize::new(0),
        })
    }

    /// The state, for the control thread: a batch in progress ends at its next check and
    /// no new one starts until the control thread has had the state.
    pub fn lock(&self) -> MutexGuard<'_, VringState> {
        self.control_waiting.fetch_add(1, Ordering::SeqCst);
        let st = self.state();
        self.control_waiting.fetch_sub(1, Ordering::SeqCst);
        st
    }

    /// The state, for the worker.
    fn state(&self) -> MutexGuard<'_, VringState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the control thread is waiting for the state.
    fn control_waiting(&self) -> bool {
        self.control_waiting.load(Ordering::SeqCst) > 0
    }

    /// Memory of the connection, for checks made by the control thread.
    pub fn memory(&self) -> &GuestMemoryAtomic<GuestMem> {
        &self.mem
    }

    /// Requests completed on this queue so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// A batch: consumes a kick if `kicked`, then serves the available requests, at most
    /// [`MAX_BATCH`]. With `hot` the caller goes on polling, so notifications stay off;
    /// without, they are turned back on and the ring is drained until no request slipped in
    /// meanwhile. A batch cut short by the bound or by the control thread leaves
    /// notifications off and, unless `hot`, kicks the queue itself so the worker comes back
    /// to it after its other queues. While the control thread waits for the queue nothing is
    /// served (and a kick stays unread, so the worker is told again).
    pub fn serve(&self, kicked: bool, hot: bool) -> Pass {
        if self.control_waiting() {
            return Pass::Served(0);
        }
        let mut st = self.state();
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
                if total < MAX_BATCH && !self.control_waiting() {
                    continue;
                }
                if !hot && let Some(kick) = st.kick.as_ref() {
                    self_kick(kick);
                }
                break;
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
        let mut st = self.state();
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

#[cfg(test)]
mod tests;
