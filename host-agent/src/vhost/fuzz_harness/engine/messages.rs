//! The handshake and memory-table messages of a [`Guest`], each checked against what the
//! backend must do with it (see `conn.rs` and `memory.rs`): features and protocol features as
//! negotiated, GET_QUEUE_NUM and GET_CONFIG telling the disk's queues and capacity, a memory
//! table accepted exactly when its regions lie inside their file and do not overlap (in any
//! order), ADD_MEM_REG likewise against the regions held, REM_MEM_REG exactly for a region
//! held.

use vhost::VhostBackend;
use vhost::vhost_user::VhostUserFrontend;
use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

use super::super::HarnessError;
use super::EngineViolation;
use super::guest::{Answer, Guest, PAGE, PAST_RAM_PAGES, RAM_BASE, RAM_PAGES, Region, table_ok};
use crate::vhost::config::CONFIG_LEN;

const PROTOCOL: u64 = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
/// A feature bit the backend never offers (VIRTIO_F_RING_PACKED).
pub const NOT_OFFERED: u64 = 1 << 34;

/// The features bits of a handshake step ask for, of `offered`.
pub fn features(bits: u8, offered: u64) -> u64 {
    let mut f = 0;
    for (bit, feature) in [
        (0, 1 << VIRTIO_RING_F_EVENT_IDX),
        (1, PROTOCOL),
        (2, 1 << VIRTIO_RING_F_INDIRECT_DESC),
        (3, 1 << VIRTIO_F_VERSION_1),
        // The device's own features: bits 0 to 23.
        (4, 0x00ff_ffff),
    ] {
        if bits & (1 << bit) != 0 {
            f |= feature & offered;
        }
    }
    if bits & (1 << 5) != 0 {
        f |= NOT_OFFERED;
    }
    f
}

/// The protocol features bits of a handshake step ask for.
pub fn protocol(bits: u8) -> VhostUserProtocolFeatures {
    let mut p = VhostUserProtocolFeatures::empty();
    for (bit, feature) in [
        (0, VhostUserProtocolFeatures::REPLY_ACK),
        (1, VhostUserProtocolFeatures::CONFIG),
        (2, VhostUserProtocolFeatures::MQ),
        (3, VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS),
    ] {
        if bits & (1 << bit) != 0 {
            p |= feature;
        }
    }
    p
}

/// The regions a SET_MEM_TABLE step asks for.
pub fn table(layout: u8, free: [u8; 6]) -> Vec<Region> {
    let n = 1 + u64::from(layout & 3) % 3;
    let part = RAM_PAGES / n;
    let mut regions: Vec<Region> = (0..n)
        .map(|i| {
            let (first, pages) = match (layout >> 2) & 3 {
                0 => (i * part, part),
                1 => (i * part, part - 1),
                2 => (i * part - u64::from(i > 0), part),
                _ => {
                    let i = i as usize;
                    (
                        u64::from(free[2 * i]) % (RAM_PAGES + PAST_RAM_PAGES),
                        1 + u64::from(free[2 * i + 1]) % 32,
                    )
                }
            };
            Region {
                gpa: RAM_BASE + first * PAGE,
                size: pages * PAGE,
            }
        })
        .collect();
    if layout & 0x80 != 0 {
        regions.reverse();
    }
    regions
}

impl Guest {
    /// The steps of a handshake, in QEMU's order.
    pub fn handshake(
        &mut self,
        steps: u8,
        feature_bits: u8,
        proto_bits: u8,
    ) -> Result<(), HarnessError> {
        if steps & 1 != 0 {
            self.set_owner()?;
        }
        if steps & 2 != 0 {
            let r = self.frontend.get_features();
            if let Answer::Done(f) = self.answer("GET_FEATURES", false, r)? {
                self.sides.fe_features = f;
            }
        }
        let can_protocol = self.sides.fe_features & PROTOCOL != 0;
        if steps & 4 != 0 && can_protocol && !self.dead {
            let r = self.frontend.get_protocol_features();
            self.answer("GET_PROTOCOL_FEATURES", false, r)?;
            let p = protocol(proto_bits);
            if !self.dead {
                // Both ends record it before the acknowledgement.
                self.sides.protocol = p.bits();
                let r = self.frontend.set_protocol_features(p);
                self.answer("SET_PROTOCOL_FEATURES", false, r)?;
            }
        }
        if steps & 8 != 0 && self.sides.has_protocol(VhostUserProtocolFeatures::MQ) && !self.dead {
            let r = self.frontend.get_queue_num();
            if let Answer::Done(n) = self.answer("GET_QUEUE_NUM", false, r)? {
                if n != self.disk.queues as u64 {
                    return Err(EngineViolation::QueueNum {
                        got: n,
                        want: self.disk.queues,
                    }
                    .into());
                }
                self.sides.fe_queues = self.disk.queues;
            }
        }
        if steps & 16 != 0
            && self.sides.has_protocol(VhostUserProtocolFeatures::CONFIG)
            && !self.dead
        {
            let len = CONFIG_LEN as u32;
            let r =
                self.frontend
                    .get_config(0, len, VhostUserConfigFlags::WRITABLE, &[0; CONFIG_LEN]);
            if let Answer::Done((_, config)) = self.answer("GET_CONFIG", false, r)? {
                let capacity = config
                    .get(0..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes);
                if capacity != Some(self.disk.capacity) {
                    return Err(EngineViolation::Capacity {
                        got: capacity,
                        want: self.disk.capacity,
                    }
                    .into());
                }
            }
        }
        if steps & 32 != 0 && !self.dead {
            self.set_features(features(feature_bits, self.disk.offered))?;
        }
        if steps & 64 != 0
            && self
                .sides
                .has_protocol(VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS)
            && !self.dead
        {
            let r = self.frontend.get_max_mem_slots();
            self.answer("GET_MAX_MEM_SLOTS", false, r)?;
        }
        if steps & 128 != 0 && !self.dead {
            self.set_owner()?;
        }
        Ok(())
    }

    fn set_owner(&mut self) -> Result<(), HarnessError> {
        if self.dead {
            return Ok(());
        }
        let r = self.frontend.set_owner();
        let a = self.answer("SET_OWNER", false, r)?;
        // A second SET_OWNER is refused ("already claimed").
        let owned = !self.sides.owned;
        self.took("SET_OWNER", owned, &a)?;
        self.sides.owned = true;
        Ok(())
    }

    fn set_features(&mut self, f: u64) -> Result<(), HarnessError> {
        let r = self.frontend.set_features(f);
        self.sides.fe_acked = f & self.sides.fe_features;
        let a = self.answer("SET_FEATURES", false, r)?;
        let ok = f & !self.disk.offered == 0;
        if self.took("SET_FEATURES", ok, &a)? {
            self.sides.conn_acked = f;
            if f & PROTOCOL == 0 {
                // Every ring is enabled at once.
                for q in 0..self.queues.len() {
                    if q < self.disk.queues {
                        self.queues[q].enabled = true;
                        self.update(q);
                    }
                }
            }
        }
        Ok(())
    }

    /// SET_MEM_TABLE.
    pub fn set_mem_table(&mut self, regions: Vec<Region>) -> Result<bool, HarnessError> {
        let infos: Vec<_> = regions.iter().map(|r| self.region_info(*r)).collect();
        let r = self.frontend.set_mem_table(&infos);
        let a = self.answer("SET_MEM_TABLE", false, r)?;
        let took = self.took("SET_MEM_TABLE", table_ok(&regions), &a)?;
        if took {
            self.regions = regions;
        }
        Ok(took)
    }

    /// ADD_MEM_REG (needs CONFIGURE_MEM_SLOTS: skipped otherwise, as the frontend would).
    pub fn add_region(&mut self, first: u8, pages: u8) -> Result<bool, HarnessError> {
        if !self
            .sides
            .has_protocol(VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS)
        {
            return Ok(false);
        }
        let region = Region {
            gpa: RAM_BASE + u64::from(first) % (RAM_PAGES + PAST_RAM_PAGES) * PAGE,
            size: (1 + u64::from(pages) % 16) * PAGE,
        };
        let info = self.region_info(region);
        let r = self.frontend.add_mem_region(&info);
        let a = self.answer("ADD_MEM_REG", false, r)?;
        let mut all = self.regions.clone();
        all.push(region);
        let took = self.took("ADD_MEM_REG", table_ok(&all), &a)?;
        if took {
            self.regions = all;
        }
        Ok(took)
    }

    /// REM_MEM_REG of a region held (or of one not held, with bit 7 of `which`).
    pub fn remove_region(&mut self, which: u8) -> Result<bool, HarnessError> {
        if !self
            .sides
            .has_protocol(VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS)
        {
            return Ok(false);
        }
        let held = self
            .regions
            .get(usize::from(which & 0x7f) % self.regions.len().max(1));
        let region = match held {
            Some(r) if which & 0x80 == 0 => *r,
            Some(r) => Region {
                gpa: r.gpa,
                size: r.size + PAGE,
            },
            None => Region {
                gpa: RAM_BASE,
                size: PAGE,
            },
        };
        let info = self.region_info(region);
        let r = self.frontend.remove_mem_region(&info);
        let a = self.answer("REM_MEM_REG", false, r)?;
        let at = self.regions.iter().position(|r| *r == region);
        let took = self.took("REM_MEM_REG", at.is_some(), &a)?;
        if let (true, Some(at)) = (took, at) {
            self.regions.remove(at);
        }
        Ok(took)
    }
}
