//! The ring messages of a [`Guest`] and the state of each queue as the harness predicts the
//! backend holds it (mirroring `conn.rs`): a queue is served ("registered" with a worker)
//! from the moment SET_VRING_KICK, SET_VRING_ENABLE or SET_FEATURES (without
//! PROTOCOL_FEATURES) finds it started, enabled and its rings inside guest memory, until
//! GET_VRING_BASE, a disable or a new kick.

use vhost::VhostBackend;
use vhost::VringConfigData;
use vhost::vhost_user::VhostUserFrontend;
use vhost::vhost_user::message::VhostUserVirtioFeatures;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::super::HarnessError;
use super::EngineViolation;
use super::guest::{Answer, Guest, PAGE, PAST_RAM_PAGES, RAM_BASE, RAM_PAGES, covered};
pub use super::queue::{QueueState, Rings, size};
use crate::vhost::config::MAX_QUEUE_SIZE;

fn eventfd() -> Result<EventFd, HarnessError> {
    EventFd::new(EFD_NONBLOCK).map_err(|e| HarnessError::Frontend(format!("eventfd: {e}")))
}

impl Guest {
    /// Whether the backend has queue `q` (and the frontend lets the index through).
    fn sendable(&self, q: usize) -> bool {
        !self.dead && q < self.sides.fe_queues
    }

    fn exists(&self, q: usize) -> bool {
        q < self.disk.queues
    }

    /// Whether queue `q`'s rings lie in guest memory (`Queue::is_valid`).
    pub fn rings_valid(&self, q: usize) -> bool {
        let s = &self.queues[q];
        let n = u64::from(s.size);
        s.addr.is_some_and(|r| {
            covered(&self.regions, r.desc, 16 * n)
                && covered(&self.regions, r.avail, 6 + 2 * n)
                && covered(&self.regions, r.used, 6 + 8 * n)
        })
    }

    /// `Conn::update`: registers or unregisters the queue after a change.
    pub fn update(&mut self, q: usize) {
        let run = self.queues[q].started && self.queues[q].enabled && self.rings_valid(q);
        let s = &mut self.queues[q];
        if run && !s.registered {
            s.registered = true;
            // Requests already available are served at once (the backend kicks itself).
            if s.next_avail != Some(s.avail) {
                s.next_avail = None;
            }
        } else if !run {
            s.registered = false;
        }
    }

    /// Sets up queue `q`: the steps in bit order.
    pub fn setup(&mut self, q: usize, steps: u8, size_byte: u8) -> Result<(), HarnessError> {
        if steps & 1 != 0 {
            self.vring_num(q, size(size_byte))?;
        }
        if steps & 2 != 0 {
            self.vring_addr(q, 0, [0; 3])?;
        }
        if steps & 4 != 0 {
            self.vring_base(q, 0)?;
        }
        if steps & 8 != 0 {
            self.vring_call(q)?;
        }
        if steps & 16 != 0 {
            self.vring_kick(q)?;
        }
        if steps & 32 != 0 {
            self.vring_enable(q, true)?;
        }
        if steps & 64 != 0 && self.sendable(q) {
            let fd = eventfd()?;
            let r = self.frontend.set_vring_err(q, &fd);
            let a = self.answer("SET_VRING_ERR", false, r)?;
            self.took("SET_VRING_ERR", self.exists(q), &a)?;
        }
        Ok(())
    }

    pub fn vring_num(&mut self, q: usize, n: u32) -> Result<(), HarnessError> {
        if !self.sendable(q) {
            return Ok(());
        }
        // The frontend sends 16 bits.
        let n = n as u16;
        let r = self.frontend.set_vring_num(q, n);
        let a = self.answer("SET_VRING_NUM", false, r)?;
        let ok = self.exists(q) && n.is_power_of_two() && usize::from(n) <= MAX_QUEUE_SIZE;
        if self.took("SET_VRING_NUM", ok, &a)? {
            self.queues[q].size = n;
        }
        Ok(())
    }

    /// SET_VRING_ADDR: mode 0 the standard rings, 1 an unmapped address, 2 a misaligned
    /// table (the connection is dropped), 3 pages of the step.
    pub fn vring_addr(&mut self, q: usize, mode: u8, pages: [u8; 3]) -> Result<(), HarnessError> {
        if !self.sendable(q) {
            return Ok(());
        }
        let page = |b: u8| RAM_BASE + u64::from(b) % (RAM_PAGES + PAST_RAM_PAGES) * PAGE;
        let gpas = match mode % 4 {
            0 | 2 => Rings::standard(q),
            1 => Rings {
                desc: 0,
                avail: 0,
                used: 0,
            },
            _ => Rings {
                desc: page(pages[0]),
                avail: page(pages[1]),
                used: page(pages[2]),
            },
        };
        let misaligned = mode % 4 == 2;
        let (desc, avail, used) = if mode % 4 == 1 {
            // Below every region's frontend address.
            (0x100, 0x100, 0x100)
        } else {
            let d = self.va(gpas.desc) + if misaligned { 8 } else { 0 };
            (d, self.va(gpas.avail), self.va(gpas.used))
        };
        let config = VringConfigData {
            queue_max_size: MAX_QUEUE_SIZE as u16,
            queue_size: self.queues[q].size,
            flags: 0,
            desc_table_addr: desc,
            used_ring_addr: used,
            avail_ring_addr: avail,
            log_addr: None,
        };
        let r = self.frontend.set_vring_addr(q, &config);
        let a = self.answer("SET_VRING_ADDR", misaligned, r)?;
        if misaligned {
            return Ok(());
        }
        let translated = [desc, avail, used].map(|va| self.translate(va));
        let (ok, set) = match translated {
            [Some(d), Some(a), Some(u)] if self.exists(q) => {
                // The addresses are set, then the used index is read from memory.
                let rings = Rings {
                    desc: d,
                    avail: a,
                    used: u,
                };
                (covered(&self.regions, u + 2, 2), Some(rings))
            }
            _ => (false, None),
        };
        self.took("SET_VRING_ADDR", ok, &a)?;
        if let (Some(rings), true) = (set, self.exists(q)) {
            self.queues[q].addr = Some(rings);
        }
        Ok(())
    }

    /// SET_VRING_BASE: the harness's available index, or `value & 0x7f` with bit 7.
    pub fn vring_base(&mut self, q: usize, value: u8) -> Result<(), HarnessError> {
        if !self.sendable(q) {
            return Ok(());
        }
        let s = &self.queues[q];
        let base = if value & 0x80 != 0 {
            u16::from(value & 0x7f)
        } else {
            s.avail
        };
        let r = self.frontend.set_vring_base(q, base);
        let a = self.answer("SET_VRING_BASE", false, r)?;
        if self.took("SET_VRING_BASE", self.exists(q), &a)? {
            let s = &mut self.queues[q];
            // A running queue serves what lies between the base and the available index.
            s.next_avail = (!s.registered || base == s.avail).then_some(base);
        }
        Ok(())
    }

    pub fn vring_call(&mut self, q: usize) -> Result<(), HarnessError> {
        if !self.sendable(q) {
            return Ok(());
        }
        let fd = match self.queues[q].call.take() {
            Some(fd) => fd,
            None => eventfd()?,
        };
        let r = self.frontend.set_vring_call(q, &fd);
        self.queues[q].call = Some(fd);
        let a = self.answer("SET_VRING_CALL", false, r)?;
        self.took("SET_VRING_CALL", self.exists(q), &a)?;
        Ok(())
    }

    pub fn vring_kick(&mut self, q: usize) -> Result<(), HarnessError> {
        if !self.sendable(q) {
            return Ok(());
        }
        let fd = match self.queues[q].kick.take() {
            Some(fd) => fd,
            None => eventfd()?,
        };
        let r = self.frontend.set_vring_kick(q, &fd);
        self.queues[q].kick = Some(fd);
        let a = self.answer("SET_VRING_KICK", false, r)?;
        if self.took("SET_VRING_KICK", self.exists(q), &a)? {
            let s = &mut self.queues[q];
            s.registered = false;
            s.started = true;
            self.update(q);
        }
        Ok(())
    }

    pub fn vring_enable(&mut self, q: usize, on: bool) -> Result<(), HarnessError> {
        let protocol = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        // The frontend refuses it itself unless it acked PROTOCOL_FEATURES.
        if !self.sendable(q) || self.sides.fe_acked & protocol == 0 {
            return Ok(());
        }
        let r = self.frontend.set_vring_enable(q, on);
        let a = self.answer("SET_VRING_ENABLE", false, r)?;
        let ok = self.exists(q) && self.sides.conn_acked & protocol != 0;
        if self.took("SET_VRING_ENABLE", ok, &a)? {
            self.queues[q].enabled = on;
            self.update(q);
        }
        Ok(())
    }

    /// GET_VRING_BASE, for a queue the disk has (the vhost crate answers nothing for
    /// another index, so a frontend would wait forever): stops the queue; the answer is the
    /// backend's next available index, which must be the one predicted when it is known.
    pub fn get_vring_base(&mut self, q: usize) -> Result<bool, HarnessError> {
        if !self.sendable(q) || !self.exists(q) {
            return Ok(false);
        }
        let r = self.frontend.get_vring_base(q);
        let Answer::Done(got) = self.answer("GET_VRING_BASE", false, r)? else {
            return Err(EngineViolation::BadReply {
                what: "GET_VRING_BASE",
            }
            .into());
        };
        let s = &mut self.queues[q];
        if let Some(want) = s.next_avail
            && u32::from(want) != got
        {
            return Err(EngineViolation::VringBase {
                queue: q,
                got,
                want,
            }
            .into());
        }
        s.started = false;
        s.registered = false;
        s.next_avail = u16::try_from(got).ok();
        s.kick = None;
        s.call = None;
        Ok(true)
    }
}
