//! The vhost-user protocol state of one frontend connection: features, the memory table and
//! the queues. The vhost crate's `BackendReqHandler` parses each message and calls these
//! methods on the control thread; queue batches run on the workers ([`super::worker`]).
//!
//! Ring states follow the vhost-user specification: a ring starts on SET_VRING_KICK, is
//! served only while enabled (SET_VRING_ENABLE; every ring is enabled at once when
//! PROTOCOL_FEATURES was not negotiated) and stops on GET_VRING_BASE, which answers the next
//! available index. INFLIGHT_SHMFD, device state, shared objects and dirty logging are not
//! offered and refused if asked for.

use std::fs::File;
use std::sync::Arc;

use vhost::vhost_user::VhostUserBackendReqHandlerMut;
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVirtioFeatures,
    VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{Error as ProtoError, GpuBackend, Result as ProtoResult};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::QueueT;
use vm_memory::{GuestAddress, GuestAddressSpace};

use super::VhostError;
use super::config::{self, MAX_QUEUE_SIZE};
use super::memory::{MAX_MEM_SLOTS, MemoryError, MemoryTable};
use super::vring::{Vring, VringState, self_kick};
use super::worker::Pool;
use crate::export::{Disk, SECTOR_SIZE};
use crate::warn_limited;

/// One connection's device state.
#[derive(Debug)]
pub struct Conn {
    config: [u8; config::CONFIG_LEN],
    offered: u64,
    acked: u64,
    protocol: u64,
    owned: bool,
    memory: MemoryTable,
    vrings: Vec<Arc<Vring>>,
    pool: Arc<Pool>,
    /// A request whose answer is a reply (not an ack) failed: the vhost crate sends nothing
    /// then, and the frontend would wait for ever, so the connection must end.
    unanswered: bool,
}

impl Conn {
    /// A connection serving `disk` on `queues` queues (1..=8), its queues run by `pool`.
    pub fn new(disk: &Arc<dyn Disk>, queues: usize, pool: Arc<Pool>) -> Result<Self, VhostError> {
        if !(1..=config::MAX_QUEUES).contains(&queues) {
            return Err(VhostError::Queues(queues));
        }
        let discard = disk.supports_discard() && !disk.read_only();
        let config = config::config_space(
            disk.size() / SECTOR_SIZE,
            disk.logical_block_size(),
            // queues <= 8 fits in u16.
            queues as u16,
            discard,
        );
        let memory = MemoryTable::default();
        let vrings = (0..queues)
            .map(|i| {
                // i < 8.
                Vring::new(i as u16, disk.clone(), memory.atomic())
                    .map(Arc::new)
                    .map_err(|e| VhostError::Queue(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            config,
            offered: config::virtio_features(disk.read_only(), disk.supports_discard()),
            acked: 0,
            protocol: 0,
            owned: false,
            memory,
            vrings,
            pool,
            unanswered: false,
        })
    }

    /// Whether the last failed request was one that expects a reply (and got none).
    pub fn take_unanswered(&mut self) -> bool {
        std::mem::take(&mut self.unanswered)
    }

    /// Records that a reply-carrying request failed.
    fn no_reply<T>(&mut self, e: ProtoError) -> ProtoResult<T> {
        self.unanswered = true;
        Err(e)
    }

    /// Requests completed on every queue of this connection.
    pub fn requests_served(&self) -> u64 {
        self.vrings.iter().map(|v| v.served()).sum()
    }

    /// Stops every queue (the connection ended or the disk is being removed): when this
    /// returns no batch runs and none will.
    pub fn stop_all(&mut self) {
        for v in &self.vrings {
            let mut st = v.lock();
            st.started = false;
            self.unregister(&mut st);
        }
    }

    fn vring(&self, index: u32) -> ProtoResult<&Arc<Vring>> {
        self.vrings
            .get(index as usize)
            .ok_or(ProtoError::InvalidParam)
    }

    fn unregister(&self, st: &mut VringState) {
        if let (Some(reg), Some(kick)) = (st.registration.take(), st.kick.as_ref()) {
            self.pool.unregister(reg, kick);
        }
    }

    /// Registers or unregisters the queue's kick fd after a change of its state.
    fn update(&self, vring: &Arc<Vring>) -> ProtoResult<()> {
        let mut st = vring.lock();
        let should_run = st.running() && {
            let mem = vring.memory().memory();
            st.queue.is_valid(&*mem)
        };
        match (should_run, st.registration.is_some()) {
            (true, false) => {
                let Some(kick) = st.kick.as_ref() else {
                    return Ok(());
                };
                let reg = self
                    .pool
                    .register(vring, kick)
                    .map_err(ProtoError::ReqHandlerError)?;
                self_kick(kick);
                st.registration = Some(reg);
            }
            (false, true) => self.unregister(&mut st),
            _ => {}
        }
        Ok(())
    }

    fn memory_error(e: &MemoryError) -> ProtoError {
        warn_limited!(error = %e, "memory table message refused");
        ProtoError::InvalidParam
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn unsupported(what: &'static str) -> ProtoError {
    ProtoError::InvalidOperation(what)
}

impl VhostUserBackendReqHandlerMut for Conn {
    fn set_owner(&mut self) -> ProtoResult<()> {
        if self.owned {
            return Err(ProtoError::InvalidOperation("already claimed"));
        }
        self.owned = true;
        Ok(())
    }

    fn reset_owner(&mut self) -> ProtoResult<()> {
        self.owned = false;
        Ok(())
    }

    fn reset_device(&mut self) -> ProtoResult<()> {
        Err(unsupported("RESET_DEVICE is not offered"))
    }

    fn get_features(&mut self) -> ProtoResult<u64> {
        Ok(self.offered)
    }

    fn set_features(&mut self, features: u64) -> ProtoResult<()> {
        if features & !self.offered != 0 {
            return Err(ProtoError::InvalidParam);
        }
        self.acked = features;
        let event_idx = features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        let protocol = features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        for v in &self.vrings {
            let mut st = v.lock();
            st.queue.set_event_idx(event_idx);
            if !protocol {
                st.enabled = true;
            }
        }
        if !protocol {
            for v in &self.vrings {
                self.update(v)?;
            }
        }
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        postcopy_listening: Option<bool>,
    ) -> ProtoResult<Option<Vec<u64>>> {
        if postcopy_listening.is_some() {
            return Err(unsupported("postcopy is not offered"));
        }
        let _rings = lock_all(&self.vrings);
        self.memory
            .set(ctx, files)
            .map_err(|e| Self::memory_error(&e))?;
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> ProtoResult<()> {
        let v = self.vring(index)?;
        if num == 0 || num as usize > MAX_QUEUE_SIZE {
            return Err(ProtoError::InvalidParam);
        }
        v.lock()
            .queue
            // num <= 1024.
            .try_set_size(num as u16)
            .map_err(|_| ProtoError::InvalidParam)
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> ProtoResult<()> {
        let v = self.vring(index)?;
        let gpa = |addr| self.memory.to_gpa(addr).map_err(|e| Self::memory_error(&e));
        let (desc, avail, used) = (gpa(descriptor)?, gpa(available)?, gpa(used)?);
        let mut st = v.lock();
        let q = &mut st.queue;
        q.try_set_desc_table_address(GuestAddress(desc))
            .and_then(|()| q.try_set_avail_ring_address(GuestAddress(avail)))
            .and_then(|()| q.try_set_used_ring_address(GuestAddress(used)))
            .map_err(|_| ProtoError::InvalidParam)?;
        // SET_VRING_BASE restores only the available index; the used index continues from
        // what the ring holds (as QEMU's libvhost-user and rust-vmm's backends do).
        let mem = v.memory().memory();
        match q.used_idx(&*mem, std::sync::atomic::Ordering::Acquire) {
            Ok(idx) => q.set_next_used(idx.0),
            Err(_) => return Err(ProtoError::InvalidParam),
        }
        Ok(())
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> ProtoResult<()> {
        let v = self.vring(index)?;
        let base = u16::try_from(base).map_err(|_| ProtoError::InvalidParam)?;
        v.lock().queue.set_next_avail(base);
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> ProtoResult<VhostUserVringState> {
        let v = match self.vring(index) {
            Ok(v) => v.clone(),
            Err(e) => return self.no_reply(e),
        };
        let mut st = v.lock();
        st.started = false;
        self.unregister(&mut st);
        st.queue.set_ready(false);
        let next = st.queue.next_avail();
        st.kick = None;
        st.call = None;
        Ok(VhostUserVringState::new(index, u32::from(next)))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> ProtoResult<()> {
        let v = self.vring(u32::from(index))?.clone();
        {
            let mut st = v.lock();
            // The old fd leaves the worker before it is closed.
            self.unregister(&mut st);
            st.started = fd.is_some();
            st.queue.set_ready(fd.is_some());
            st.kick = fd;
        }
        self.update(&v)
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> ProtoResult<()> {
        self.vring(u32::from(index))?.lock().call = fd;
        Ok(())
    }

    fn set_vring_err(&mut self, index: u8, _fd: Option<File>) -> ProtoResult<()> {
        // Nothing is reported through the error eventfd; it is closed.
        self.vring(u32::from(index)).map(|_| ())
    }

    fn get_protocol_features(&mut self) -> ProtoResult<VhostUserProtocolFeatures> {
        Ok(config::protocol_features())
    }

    fn set_protocol_features(&mut self, features: u64) -> ProtoResult<()> {
        self.protocol = features;
        Ok(())
    }

    fn get_queue_num(&mut self) -> ProtoResult<u64> {
        Ok(self.vrings.len() as u64)
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> ProtoResult<()> {
        if self.acked & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0 {
            return Err(ProtoError::InactiveFeature(
                VhostUserVirtioFeatures::PROTOCOL_FEATURES,
            ));
        }
        let v = self.vring(index)?.clone();
        v.lock().enabled = enable;
        self.update(&v)
    }

    fn get_config(
        &mut self,
        offset: u32,
        size: u32,
        _flags: VhostUserConfigFlags,
    ) -> ProtoResult<Vec<u8>> {
        Ok(config::config_reply(&self.config, offset, size))
    }

    fn set_config(
        &mut self,
        _offset: u32,
        _buf: &[u8],
        _flags: VhostUserConfigFlags,
    ) -> ProtoResult<()> {
        // Nothing in the config space is writable (no CONFIG_WCE).
        Err(unsupported("the configuration space is read-only"))
    }

    fn set_gpu_socket(&mut self, _gpu_backend: GpuBackend) -> ProtoResult<()> {
        Err(unsupported("not a GPU"))
    }

    fn get_shared_object(&mut self, _uuid: VhostUserSharedMsg) -> ProtoResult<File> {
        self.no_reply(unsupported("shared objects are not offered"))
    }

    fn get_inflight_fd(
        &mut self,
        _inflight: &VhostUserInflight,
    ) -> ProtoResult<(VhostUserInflight, File)> {
        self.no_reply(unsupported("INFLIGHT_SHMFD is not offered"))
    }

    fn set_inflight_fd(&mut self, _inflight: &VhostUserInflight, _file: File) -> ProtoResult<()> {
        Err(unsupported("INFLIGHT_SHMFD is not offered"))
    }

    fn get_max_mem_slots(&mut self) -> ProtoResult<u64> {
        Ok(MAX_MEM_SLOTS)
    }

    fn add_mem_region(
        &mut self,
        region: &VhostUserSingleMemoryRegion,
        fd: File,
        postcopy_listening: Option<bool>,
    ) -> ProtoResult<Option<u64>> {
        if postcopy_listening.is_some() {
            return Err(unsupported("postcopy is not offered"));
        }
        let _rings = lock_all(&self.vrings);
        self.memory
            .add(region, fd)
            .map_err(|e| Self::memory_error(&e))?;
        Ok(None)
    }

    fn remove_mem_region(&mut self, region: &VhostUserSingleMemoryRegion) -> ProtoResult<()> {
        let _rings = lock_all(&self.vrings);
        self.memory
            .remove(region.guest_phys_addr, region.memory_size)
            .map_err(|e| Self::memory_error(&e))
    }

    fn set_device_state_fd(
        &mut self,
        _direction: VhostTransferStateDirection,
        _phase: VhostTransferStatePhase,
        _fd: File,
    ) -> ProtoResult<Option<File>> {
        // Answered with an error code by the vhost crate.
        Err(unsupported("device state transfer is not offered"))
    }

    fn check_device_state(&mut self) -> ProtoResult<()> {
        // Answered with an error code by the vhost crate.
        Err(unsupported("device state transfer is not offered"))
    }

    fn get_shmem_config(&mut self) -> ProtoResult<VhostUserShMemConfig> {
        self.no_reply(unsupported("shared memory regions are not offered"))
    }

    fn set_log_base(&mut self, _log: &VhostUserLog, _file: File) -> ProtoResult<()> {
        Err(unsupported("dirty logging is not offered"))
    }
}

/// Every ring's state lock, in index order, for a memory-table change. A queue worker loads
/// the table once per batch under its ring's lock and keeps that snapshot for the batch; a
/// change made while a batch runs would let the frontend (answered as soon as the change is
/// made) publish a request whose buffers lie in a region the batch's snapshot lacks, and
/// that request would fail with IOERR. Holding the locks, the change waits for running
/// batches, and every later batch loads the new table. Workers take one ring lock at a time,
/// so taking them all here cannot deadlock.
fn lock_all(vrings: &[Arc<Vring>]) -> Vec<std::sync::MutexGuard<'_, super::vring::VringState>> {
    vrings.iter().map(|v| v.lock()).collect()
}
