//! `VhostUserBackend` for one disk: one worker thread per queue, no lock shared between
//! queues on the data path, completions in order per queue (so a frontend that replays a
//! queue after a backend restart sees consistent results).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    EventConsumer, EventFlag, EventNotifier, new_event_consumer_and_notifier,
};

use super::config::{self, MAX_QUEUE_SIZE, MAX_QUEUES};
use super::error::VhostError;
use super::queue::serve_available;
use super::request::GuestMem;
use crate::export::{Disk, SECTOR_SIZE};
use crate::warn_limited;

/// The backend of one connection.
#[derive(Debug)]
pub struct BlkBackend {
    disk: Arc<dyn Disk>,
    mem: GuestMemoryAtomic<GuestMem>,
    queues: usize,
    event_idx: AtomicBool,
    config: [u8; config::CONFIG_LEN],
    exits: Vec<(EventConsumer, EventNotifier)>,
    poll: Duration,
    /// Requests completed, one counter per queue (each written by its own worker only).
    served: Vec<QueueCounter>,
}

/// A counter on a cache line of its own, so queue workers never share one.
#[derive(Debug, Default)]
#[repr(align(64))]
struct QueueCounter(AtomicU64);

impl BlkBackend {
    /// A backend serving `disk` on `queues` queues (1..=8), reading guest memory through
    /// `mem` (the same atomic the daemon updates on SET_MEM_TABLE). `poll` is how long a
    /// worker busy-polls for more requests after a batch (zero: never).
    pub fn new(
        disk: Arc<dyn Disk>,
        mem: GuestMemoryAtomic<GuestMem>,
        queues: usize,
        poll: Duration,
    ) -> Result<Self, VhostError> {
        if !(1..=MAX_QUEUES).contains(&queues) {
            return Err(VhostError::Queues(queues));
        }
        let discard = disk.supports_discard() && !disk.read_only();
        // queues <= 8 fits in u16.
        let config = config::config_space(
            disk.size() / SECTOR_SIZE,
            disk.logical_block_size(),
            queues as u16,
            discard,
        );
        let exits = (0..queues)
            .map(|_| new_event_consumer_and_notifier(EventFlag::NONBLOCK))
            .collect::<io::Result<Vec<_>>>()
            .map_err(VhostError::ExitEvent)?;
        Ok(Self {
            disk,
            mem,
            queues,
            event_idx: AtomicBool::new(false),
            config,
            exits,
            poll,
            served: (0..queues).map(|_| QueueCounter::default()).collect(),
        })
    }

    /// Requests completed on all queues of this connection so far.
    pub fn requests_served(&self) -> u64 {
        self.served
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .sum()
    }

    /// Tells every worker thread to stop.
    pub fn exit_workers(&self) {
        for (_, notifier) in &self.exits {
            if let Err(e) = notifier.notify() {
                tracing::error!(error = %e, "cannot signal a queue worker to exit");
            }
        }
    }

    /// Drains `vring`: executes every available chain in order, then signals the guest once.
    fn process_queue(&self, vring: &VringRwLock, served: &AtomicU64) {
        let event_idx = self.event_idx.load(Ordering::Relaxed);
        loop {
            if event_idx && let Err(e) = vring.disable_notification() {
                warn_limited!(error = %e, "cannot disable queue notifications");
            }
            self.drain(vring, served);
            self.notify(vring);
            // Busy-poll briefly for the next request: at low queue depth this saves the
            // driver a kick and the backend an epoll wakeup per request.
            if self.poll_for_work(vring) {
                continue;
            }
            if !event_idx {
                break;
            }
            match vring.enable_notification() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    warn_limited!(error = %e, "cannot enable queue notifications");
                    break;
                }
            }
        }
    }

    fn notify(&self, vring: &VringRwLock) {
        match vring.needs_notification() {
            Ok(true) => {
                if let Err(e) = vring.signal_used_queue() {
                    warn_limited!(error = %e, "cannot signal the used queue");
                }
            }
            Ok(false) => {}
            Err(e) => warn_limited!(error = %e, "cannot check whether to notify the guest"),
        }
    }

    /// Spins up to the poll interval until the driver makes a chain available.
    fn poll_for_work(&self, vring: &VringRwLock) -> bool {
        if self.poll.is_zero() {
            return false;
        }
        let deadline = Instant::now() + self.poll;
        let mem = self.mem.memory();
        loop {
            {
                let state = vring.get_ref();
                let q = state.get_queue();
                match q.avail_idx(&*mem, AtomicOrdering::Acquire) {
                    Ok(avail) if avail.0 != q.next_avail() => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::hint::spin_loop();
        }
    }

    fn drain(&self, vring: &VringRwLock, served: &AtomicU64) {
        let mem = self.mem.memory();
        // The vring lock is this queue's alone; holding it for the batch costs no other queue.
        let mut state = vring.get_mut();
        match serve_available(state.get_queue_mut(), &mem, self.disk.as_ref()) {
            Ok(done) => {
                served.fetch_add(done as u64, Ordering::Relaxed);
            }
            Err(e) => warn_limited!(error = %e, "cannot serve the queue"),
        }
    }
}

impl VhostUserBackend for BlkBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        self.queues
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        config::virtio_features(self.disk.read_only(), self.disk.supports_discard())
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        config::protocol_features()
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Relaxed);
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        config::config_reply(&self.config, offset, size)
    }

    fn set_config(&self, _offset: u32, _buf: &[u8]) -> io::Result<()> {
        // Nothing in the config space is writable (no CONFIG_WCE).
        Err(io::Error::from(io::ErrorKind::PermissionDenied))
    }

    fn update_memory(&self, _mem: GuestMemoryAtomic<GuestMem>) -> io::Result<()> {
        // `self.mem` is the same atomic the handler has just updated.
        Ok(())
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        (0..self.queues).map(|q| 1u64 << q).collect()
    }

    fn exit_event(&self, thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        let (consumer, notifier) = self.exits.get(thread_index)?;
        match (consumer.try_clone(), notifier.try_clone()) {
            (Ok(c), Ok(n)) => Some((c, n)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot clone a queue exit event");
                None
            }
        }
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock],
        thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            warn_limited!(?evset, "unexpected queue event");
            return Ok(());
        }
        // One queue per thread: the event names the index inside this thread's vrings, and
        // the thread is the queue's worker.
        match (
            vrings.get(usize::from(device_event)),
            self.served.get(thread_id),
        ) {
            (Some(vring), Some(served)) => self.process_queue(vring, &served.0),
            _ => warn_limited!(device_event, thread_id, "event for an unknown queue"),
        }
        // Never an error: an Err would end this queue's worker thread for good.
        Ok(())
    }
}
