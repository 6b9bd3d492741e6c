//! One read-only disk holding every layer of an image as GPT partitions: partition i is layer
//! i (top layer first), 1 MiB aligned, named by the one rule of
//! `layerpass_types::naming::partition_name` (`lp-` + the first 32 hex digits of the diff ID
//! when known, else of the root hash), with a unique GUID derived from the same hex.
//! Nothing is written anywhere: headers come from memory, partition ranges map onto the
//! blobs, gaps read as zeros.

use std::path::PathBuf;
use std::sync::Arc;

use layerpass_types::{Digest, RootHash, naming};
use uuid::Uuid;

use super::error::DiskError;
use super::extent::{ExtentMap, ReadOnlyExtents, Source};
use super::gpt::{self, LINUX_FS_TYPE, Layout, Partition};
use super::index::IndexTar;
use super::layer::LayerDisk;
use super::{Disk, serial_from};

/// Partition alignment.
pub const ALIGN: u64 = 1 << 20;
/// Namespace of layerpass's UUIDv5 values (partition and disk GUIDs).
pub const NAMESPACE: Uuid = Uuid::from_u128(0x6c61_7965_7270_6173_7300_0000_0000_0001);
/// Most layers one composite disk holds.
pub const MAX_LAYERS: usize = 4096;

/// A layer to place in a composite disk. At least one of its diff ID and root hash must be
/// known: they name the partition.
#[derive(Debug, Clone)]
pub struct CompositeLayer {
    /// The blob, or an index layer's metadata.
    pub blob: PathBuf,
    /// An index layer's tar.
    pub index: Option<IndexTar>,
    pub tree: Option<PathBuf>,
    /// The digest of the layer's uncompressed tar, when known.
    pub diff_id: Option<Digest>,
    /// The root hash of its dm-verity tree, when known.
    pub root_hash: Option<RootHash>,
    /// The logical block size its verity needs, when known from elsewhere than the files
    /// ([`LayerDisk::limit_block_size`]).
    pub block_size: Option<u32>,
}

impl CompositeLayer {
    /// The hex that names the layer's partition and derives its GUID.
    fn identity_hex(&self) -> Result<String, DiskError> {
        naming::identity_hex(self.diff_id.as_ref(), self.root_hash.as_ref()).ok_or_else(|| {
            DiskError::Invalid {
                what: format!("layer {}", self.blob.display()),
                reason: "neither its diff ID nor its root hash is known: give \
                         FILE@sha256:<diff ID>, name it <64 hex>.erofs, or keep its .dmverity \
                         sidecar beside it"
                    .into(),
            }
        })
    }
}

/// Where a layer ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedLayer {
    /// 1-based partition number (`/dev/vdX<number>` in the guest).
    pub number: usize,
    pub name: String,
    pub unique_guid: Uuid,
    /// Byte offset and size of the partition on the disk.
    pub offset: u64,
    pub size: u64,
}

/// The composite disk.
#[derive(Debug)]
pub struct CompositeDisk {
    map: ExtentMap,
    serial: Vec<u8>,
    layers: Vec<PlacedLayer>,
    disk_guid: Uuid,
    lba_size: u32,
}

impl CompositeDisk {
    /// Lays out `layers` (top layer first) with `lba_size`-byte blocks (the guest's logical
    /// block size: the virtio-blk `blk_size`), or 512-byte blocks when a layer's disk needs
    /// smaller logical blocks than `lba_size` (an index layer, a tree with 512-byte blocks:
    /// dm-verity refuses blocks smaller than the disk's). Partitions stay 1 MiB aligned.
    pub fn build(
        layers: &[CompositeLayer],
        lba_size: u64,
        serial: &str,
    ) -> Result<Self, DiskError> {
        if layers.is_empty() || layers.len() > MAX_LAYERS {
            return Err(DiskError::Invalid {
                what: "composite disk".into(),
                reason: format!("needs 1 to {MAX_LAYERS} layers, got {}", layers.len()),
            });
        }
        if !matches!(lba_size, 512 | 4096) {
            return Err(DiskError::Invalid {
                what: "logical block size".into(),
                reason: format!("{lba_size} is neither 512 nor 4096"),
            });
        }
        let mut disks = Vec::with_capacity(layers.len());
        let mut hexes: Vec<String> = Vec::with_capacity(layers.len());
        for l in layers {
            disks.push(
                LayerDisk::open_layer(&l.blob, l.index.as_ref(), l.tree.as_deref(), None)?
                    .limit_block_size(l.block_size),
            );
            hexes.push(l.identity_hex()?);
        }
        let lba_size = if disks
            .iter()
            .any(|d| u64::from(d.logical_block_size()) < lba_size)
        {
            512
        } else {
            lba_size
        };
        let layout = Layout::new(lba_size, layers.len());

        let mut placed = Vec::with_capacity(layers.len());
        let mut partitions = Vec::with_capacity(layers.len());
        let mut at = ALIGN;
        for (i, (disk, hex)) in disks.iter().zip(&hexes).enumerate() {
            // A digest repeated in one image (identical layers) still gets a unique GUID.
            let repeat = hexes[..i].iter().filter(|h| *h == hex).count();
            let key = if repeat == 0 {
                format!("sha256:{hex}")
            } else {
                format!("sha256:{hex}#{repeat}")
            };
            let unique_guid = Uuid::new_v5(&NAMESPACE, key.as_bytes());
            let name = naming::partition_name_of_hex(hex);
            let size = disk.size();
            partitions.push(Partition {
                type_guid: LINUX_FS_TYPE,
                unique_guid,
                first_lba: at / lba_size,
                last_lba: (at + size) / lba_size - 1,
                name: name.clone(),
            });
            placed.push(PlacedLayer {
                number: i + 1,
                name,
                unique_guid,
                offset: at,
                size,
            });
            at = (at + size).div_ceil(ALIGN) * ALIGN;
        }
        let total = (at + layout.backup_lbas() * lba_size).div_ceil(ALIGN) * ALIGN;
        let total_lbas = total / lba_size;
        let disk_guid = Uuid::new_v5(&NAMESPACE, format!("disk:{}", hexes.join(",")).as_bytes());
        let table = gpt::build(layout, total_lbas, disk_guid, &partitions);

        let mut map = ExtentMap::default();
        let primary_len = table.primary.len() as u64;
        map.push(primary_len, Source::Bytes(Arc::from(table.primary)));
        for (disk, p) in disks.iter().zip(&placed) {
            map.push(p.offset - map.size(), Source::Zero);
            for e in disk.extents().extents() {
                map.push(e.len, e.source.clone());
            }
        }
        let backup_len = table.backup.len() as u64;
        map.push(total - backup_len - map.size(), Source::Zero);
        map.push(backup_len, Source::Bytes(Arc::from(table.backup)));
        debug_assert_eq!(map.size(), total);
        Ok(Self {
            map,
            serial: serial_from(serial),
            layers: placed,
            disk_guid,
            lba_size: u32::try_from(lba_size).unwrap_or(4096),
        })
    }

    /// The partitions, top layer first.
    pub fn layers(&self) -> &[PlacedLayer] {
        &self.layers
    }

    pub fn disk_guid(&self) -> Uuid {
        self.disk_guid
    }
}

impl ReadOnlyExtents for CompositeDisk {
    fn extent_map(&self) -> &ExtentMap {
        &self.map
    }

    fn serial_bytes(&self) -> &[u8] {
        &self.serial
    }

    fn block_size(&self) -> u32 {
        self.lba_size
    }
}
