//! Feature bits and the virtio-blk configuration space.

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ,
    VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_WRITE_ZEROES,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

/// Largest queue a frontend may configure.
pub const MAX_QUEUE_SIZE: usize = 1024;
/// Most queues offered.
pub const MAX_QUEUES: usize = 8;
/// Data segments per request (as QEMU and cloud-hypervisor).
pub const SEG_MAX: u32 = 126;
/// Discard / write-zeroes limits (scratch disks only).
pub const MAX_DISCARD_SECTORS: u32 = u32::MAX >> 9;
pub const MAX_DISCARD_SEG: u32 = 1;
/// Offset Dragonball adds to every config access.
const DRAGONBALL_CONFIG_OFFSET: u32 = 0x100;
/// Bytes of `struct virtio_blk_config` up to and including the write-zeroes fields.
pub const CONFIG_LEN: usize = 60;

/// The virtio feature bits offered for a disk.
pub fn virtio_features(read_only: bool, discard: bool) -> u64 {
    let mut f = (1u64 << VIRTIO_F_VERSION_1)
        | (1 << VIRTIO_RING_F_EVENT_IDX)
        | (1 << VIRTIO_RING_F_INDIRECT_DESC)
        | (1 << VIRTIO_BLK_F_SEG_MAX)
        | (1 << VIRTIO_BLK_F_BLK_SIZE)
        | (1 << VIRTIO_BLK_F_FLUSH)
        | (1 << VIRTIO_BLK_F_MQ)
        | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
    if read_only {
        f |= 1 << VIRTIO_BLK_F_RO;
    }
    if discard && !read_only {
        f |= (1 << VIRTIO_BLK_F_DISCARD) | (1 << VIRTIO_BLK_F_WRITE_ZEROES);
    }
    f
}

/// The vhost-user protocol features offered (REPLY_ACK is added by the vhost crate).
/// INFLIGHT_SHMFD is not offered: vhost-user-backend 0.24 cannot serve it.
pub fn protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::CONFIG
        | VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
}

/// `struct virtio_blk_config`, little-endian, as the guest reads it.
pub fn config_space(
    capacity_sectors: u64,
    blk_size: u32,
    num_queues: u16,
    discard: bool,
) -> [u8; CONFIG_LEN] {
    let mut c = [0u8; CONFIG_LEN];
    c[0..8].copy_from_slice(&capacity_sectors.to_le_bytes());
    // size_max (8..12) stays 0: not offered.
    c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
    // geometry (16..20) stays 0: not offered.
    c[20..24].copy_from_slice(&blk_size.to_le_bytes());
    // topology: physical_block_exp = 0 (physical = logical), min/opt io size 0.
    c[34..36].copy_from_slice(&num_queues.to_le_bytes());
    if discard {
        c[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        c[40..44].copy_from_slice(&MAX_DISCARD_SEG.to_le_bytes());
        c[44..48].copy_from_slice(&(blk_size / 512).to_le_bytes());
        c[48..52].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        c[52..56].copy_from_slice(&MAX_DISCARD_SEG.to_le_bytes());
        c[56] = 1; // write_zeroes_may_unmap
    }
    c
}

/// The reply to GET_CONFIG: exactly `size` bytes (QEMU asks for 57, Dragonball reads at
/// offset 0x100), the overlap with the config space copied, the rest zero.
pub fn config_reply(config: &[u8], offset: u32, size: u32) -> Vec<u8> {
    let offset = if offset >= DRAGONBALL_CONFIG_OFFSET {
        offset - DRAGONBALL_CONFIG_OFFSET
    } else {
        offset
    };
    let mut out = vec![0u8; size as usize];
    let start = (offset as usize).min(config.len());
    let end = (offset as usize)
        .saturating_add(size as usize)
        .min(config.len());
    out[..end - start].copy_from_slice(&config[start..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_has_exactly_the_requested_size() {
        let c = config_space(2048, 4096, 2, false);
        let r = config_reply(&c, 0, 57);
        assert_eq!(r.len(), 57);
        assert_eq!(&r[0..8], &2048u64.to_le_bytes());
        assert_eq!(&r[20..24], &4096u32.to_le_bytes());
        assert_eq!(config_reply(&c, 0x100, 60), c.to_vec());
        assert_eq!(config_reply(&c, 34, 2), vec![2, 0]);
        assert_eq!(config_reply(&c, 200, 8), vec![0; 8]);
        assert_eq!(config_reply(&c, 0, 96).len(), 96);
    }

    #[test]
    fn read_only_disks_never_offer_discard() {
        let ro = virtio_features(true, true);
        assert_ne!(ro & (1 << VIRTIO_BLK_F_RO), 0);
        assert_eq!(ro & (1 << VIRTIO_BLK_F_DISCARD), 0);
        let rw = virtio_features(false, true);
        assert_eq!(rw & (1 << VIRTIO_BLK_F_RO), 0);
        assert_ne!(rw & (1 << VIRTIO_BLK_F_WRITE_ZEROES), 0);
    }
}
