//! Requests on a queue of a [`Guest`]: descriptor chains and headers written into guest RAM
//! (`chains.rs`: the queue's standard rings, its header area and its data area), made
//! available at once and kicked.
//!
//! Completion is required, and waited for (up to [`COMPLETION`]), exactly when the backend
//! must serve the requests: the queue is registered with a worker (started, enabled, its rings
//! in guest memory when that happened), its rings are the harness's standard ones and lie in
//! the memory table now, no queue of the connection has rings elsewhere (they could be
//! anywhere in the harness's buffers), the backend's next available index is the harness's
//! (nothing older is pending), and the requests fit in the queue. The chains themselves do
//! not matter: a malformed chain is completed with nothing written. Then the used ring must
//! show exactly these requests, in order, and every well-formed one whose header and status
//! lie in guest memory must have a status. Otherwise the requests are left to the backend
//! (served now, later, or never) and the queue's next available index becomes unknown.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use vm_memory::{Bytes, GuestAddress};

use super::super::HarnessError;
use super::EngineViolation;
use super::guest::Guest;
use super::program::Request;
use super::vrings::Rings;

/// Longest wait for requests the backend must complete: far above the microseconds they
/// take, so that a loaded machine does not fail a run, and a wedged worker still shows.
pub const COMPLETION: Duration = Duration::from_secs(1);

/// What a submit did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Submitted {
    pub requests: usize,
    /// The backend had to complete them (and did).
    pub required: bool,
}

impl Guest {
    /// Whether the backend must complete `n` requests on queue `q` now.
    fn must_complete(&self, q: usize, n: usize) -> bool {
        let s = &self.queues[q];
        let own = |i: usize| self.queues[i].addr.is_none_or(|r| r == Rings::standard(i));
        !self.dead
            && s.registered
            && s.addr == Some(Rings::standard(q))
            && (0..self.disk.queues).all(own)
            && self.rings_valid(q)
            && s.next_avail == Some(s.avail)
            && n <= usize::from(s.size)
    }

    /// Submits `reqs` on queue `q` (one that exists); `pattern` fills written data.
    pub fn submit(
        &mut self,
        q: usize,
        reqs: &[Request],
        pattern: u8,
    ) -> Result<Submitted, HarnessError> {
        if self.dead || q >= self.disk.queues {
            return Ok(Submitted::default());
        }
        let required = self.must_complete(q, reqs.len());
        let rings = Rings::standard(q);
        let size = self.queues[q].size;
        let used_idx = GuestAddress(rings.used + 2);
        let u0: u16 = self.ram.load(used_idx, Ordering::Acquire).unwrap_or(0);
        let mut heads = Vec::with_capacity(reqs.len());
        let mut statuses = Vec::with_capacity(reqs.len());
        for (i, r) in reqs.iter().enumerate() {
            let (head, status) = self.request(q, i, *r, pattern.wrapping_add(i as u8));
            let s = &mut self.queues[q];
            let slot = rings.avail + 4 + 2 * u64::from(s.avail % size);
            s.avail = s.avail.wrapping_add(1);
            self.write(slot, &head.to_le_bytes());
            heads.push(head);
            statuses.push(status);
        }
        let s = &self.queues[q];
        if self.sides.conn_acked & (1 << VIRTIO_RING_F_EVENT_IDX) != 0 {
            // used_event: interrupt after the first completion.
            self.write(rings.avail + 4 + 2 * u64::from(size), &u0.to_le_bytes());
        }
        let _ = self
            .ram
            .store(s.avail, GuestAddress(rings.avail + 2), Ordering::Release);
        if let Some(kick) = &s.kick
            && let Err(e) = kick.write(1)
        {
            return Err(HarnessError::Frontend(format!("kick: {e}")));
        }
        if !required {
            let s = &mut self.queues[q];
            if s.registered {
                s.next_avail = None;
            }
            return Ok(Submitted {
                requests: reqs.len(),
                required,
            });
        }
        self.completed(q, u0, &heads, &statuses)?;
        let s = &mut self.queues[q];
        s.next_avail = Some(s.avail);
        Ok(Submitted {
            requests: reqs.len(),
            required,
        })
    }

    /// Waits for the used ring to show `heads`, then checks them and the status bytes.
    fn completed(
        &self,
        q: usize,
        u0: u16,
        heads: &[u16],
        statuses: &[Option<u64>],
    ) -> Result<(), HarnessError> {
        let rings = Rings::standard(q);
        let size = self.queues[q].size;
        let n = heads.len() as u16;
        let deadline = Instant::now() + COMPLETION;
        let moved = loop {
            let used: u16 = self
                .ram
                .load(GuestAddress(rings.used + 2), Ordering::Acquire)
                .unwrap_or(u0);
            let moved = used.wrapping_sub(u0);
            if moved >= n {
                break moved;
            }
            if Instant::now() >= deadline {
                return Err(EngineViolation::NotCompleted {
                    queue: q,
                    requests: heads.len(),
                    moved,
                }
                .into());
            }
            std::thread::sleep(Duration::from_micros(20));
        };
        if moved != n {
            return Err(EngineViolation::TooManyCompleted {
                queue: q,
                requests: heads.len(),
                moved,
            }
            .into());
        }
        for (i, &want) in heads.iter().enumerate() {
            let slot = u0.wrapping_add(i as u16) % size;
            let elem = rings.used + 4 + 8 * u64::from(slot);
            let got: u32 = self.ram.read_obj(GuestAddress(elem)).unwrap_or(u32::MAX);
            if got != u32::from(want) {
                return Err(EngineViolation::UsedId {
                    queue: q,
                    at: i,
                    got,
                    want,
                }
                .into());
            }
        }
        for (i, at) in statuses.iter().enumerate() {
            let Some(at) = *at else { continue };
            let status: u8 = self.ram.read_obj(GuestAddress(at)).unwrap_or(0xff);
            if status > 2 {
                return Err(EngineViolation::Status {
                    queue: q,
                    at: i,
                    status,
                }
                .into());
            }
        }
        Ok(())
    }
}
