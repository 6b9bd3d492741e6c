//! The plan builder: typed layers, upper and options in; a `MountRequest` out, checked
//! against the guest's rules first.

use std::path::PathBuf;

use layerpass_protocols::mapping;
use layerpass_protocols::protobuf::{EnumOrUnknown, MessageField};
use layerpass_protocols::v1::guest as pb;
use layerpass_types::naming::{
    validate_container_id, validate_mount_point, validate_partition_name, validate_serial,
};
use layerpass_types::{Digest, TypeError, VerityMapping, envelope};

use super::PlanError;

/// Where a layer is in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerPlacement {
    /// A whole disk with this virtio-blk serial.
    Disk {
        /// The serial.
        serial: String,
        /// The disk's logical block size.
        logical_block_size: u32,
    },
    /// The GPT partition `name` of the composite disk with this serial.
    Partition {
        /// The composite disk's serial.
        serial: String,
        /// The partition's name.
        name: String,
        /// The composite disk's logical block size.
        logical_block_size: u32,
    },
}

impl LayerPlacement {
    fn serial(&self) -> &str {
        match self {
            Self::Disk { serial, .. } | Self::Partition { serial, .. } => serial,
        }
    }

    fn logical_block_size(&self) -> u32 {
        match self {
            Self::Disk {
                logical_block_size, ..
            }
            | Self::Partition {
                logical_block_size, ..
            } => *logical_block_size,
        }
    }
}

/// One layer of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLayer {
    /// Where the layer is read from (for messages).
    pub source: PathBuf,
    /// Its diff ID; `None` is sent as an empty digest: "unknown", never a guess.
    pub diff_id: Option<Digest>,
    /// Its disk or partition.
    pub placement: LayerPlacement,
    /// Its dm-verity mapping; `None` mounts the raw disk (refused by a guest that requires
    /// verity).
    pub verity: Option<VerityMapping>,
}

/// The container's writable upper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upper {
    /// A tmpfs of this many bytes (guest memory).
    Tmpfs {
        /// Its size limit.
        size_bytes: u64,
    },
    /// A scratch disk with a filesystem.
    Disk {
        /// The scratch disk's serial.
        serial: String,
        /// Its filesystem (`ext4` or `xfs`).
        fs_type: String,
    },
    /// A scratch disk the guest opens through dm-integrity and dm-crypt with a key it
    /// makes itself, and formats at every mount (what the host wrote there is discarded).
    EncryptedDisk {
        /// The scratch disk's serial.
        serial: String,
    },
}

/// Builds one container's `MountRequest`.
#[derive(Debug, Clone)]
pub struct PlanBuilder {
    container_id: String,
    layers: Vec<PlannedLayer>,
    upper: Upper,
    mount_point: Option<String>,
    volatile: bool,
    userxattr: bool,
}

/// Filesystems the guest accepts on a scratch disk.
pub const UPPER_FS_TYPES: [&str; 2] = ["ext4", "xfs"];

impl PlanBuilder {
    /// A plan for `container_id` with a 64 MiB tmpfs upper and no layers yet.
    pub fn new(container_id: &str) -> Self {
        Self {
            container_id: container_id.to_owned(),
            layers: Vec::new(),
            upper: Upper::Tmpfs {
                size_bytes: 64 << 20,
            },
            mount_point: None,
            volatile: false,
            userxattr: false,
        }
    }

    /// Adds the next layer below those added before (top layer first).
    #[must_use]
    pub fn layer(mut self, layer: PlannedLayer) -> Self {
        self.layers.push(layer);
        self
    }

    /// Sets the writable upper.
    #[must_use]
    pub fn upper(mut self, upper: Upper) -> Self {
        self.upper = upper;
        self
    }

    /// Sets where the guest mounts the rootfs: a path relative to the guest agent's rootfs
    /// root (`--rootfs-root`), plain names only (default: the container id).
    #[must_use]
    pub fn mount_point(mut self, path: Option<String>) -> Self {
        self.mount_point = path;
        self
    }

    /// overlayfs `volatile` and `userxattr`.
    #[must_use]
    pub fn overlay(mut self, volatile: bool, userxattr: bool) -> Self {
        self.volatile = volatile;
        self.userxattr = userxattr;
        self
    }

    /// Checks the plan against the guest's rules and makes the request.
    pub fn build(&self) -> Result<pb::MountRequest, PlanError> {
        let contract = |what: String| move |source: TypeError| PlanError::Contract { what, source };
        validate_container_id(&self.container_id).map_err(contract("container id".into()))?;
        if self.layers.is_empty() {
            return Err(PlanError::NoLayers);
        }
        if self.layers.len() > envelope::MAX_LAYERS {
            return Err(PlanError::Invalid {
                what: "layers".into(),
                reason: format!(
                    "{} layers, overlayfs stacks at most {}",
                    self.layers.len(),
                    envelope::MAX_LAYERS
                ),
            });
        }
        let mut req = pb::MountRequest::new();
        req.container_id.clone_from(&self.container_id);
        for l in &self.layers {
            let what = format!("layer {}", l.source.display());
            validate_serial(l.placement.serial()).map_err(contract(what.clone()))?;
            if let LayerPlacement::Partition { name, .. } = &l.placement {
                validate_partition_name(name).map_err(contract(what.clone()))?;
            }
            if let Some(v) = &l.verity {
                v.validate_on(l.placement.logical_block_size())
                    .map_err(contract(what.clone()))?;
            }
            req.layers.push(layer(l));
        }
        req.upper = MessageField::some(self.upper_message()?);
        if let Some(mp) = &self.mount_point {
            validate_mount_point(mp).map_err(contract("mount point".into()))?;
        }
        req.mount_point = self.mount_point.clone().unwrap_or_default();
        let mut overlay = pb::OverlayOptions::new();
        overlay.volatile = self.volatile;
        overlay.userxattr = self.userxattr;
        req.overlay = MessageField::some(overlay);
        Ok(req)
    }

    fn upper_message(&self) -> Result<pb::Upper, PlanError> {
        let mut upper = pb::Upper::new();
        match &self.upper {
            Upper::Tmpfs { size_bytes } => {
                if *size_bytes == 0 {
                    return Err(PlanError::Invalid {
                        what: "upper tmpfs".into(),
                        reason: "size is 0".into(),
                    });
                }
                let mut t = pb::TmpfsUpper::new();
                t.size_bytes = *size_bytes;
                upper.kind = Some(pb::upper::Kind::Tmpfs(t));
            }
            Upper::Disk { serial, fs_type } => {
                self.check_upper_serial(serial, "upper disk")?;
                if !UPPER_FS_TYPES.contains(&fs_type.as_str()) {
                    return Err(PlanError::Invalid {
                        what: "upper disk".into(),
                        reason: format!("filesystem {fs_type:?} is not one of {UPPER_FS_TYPES:?}"),
                    });
                }
                let mut d = pb::UpperDisk::new();
                d.disk = MessageField::some(mapping::disk_serial(serial));
                d.fs_type.clone_from(fs_type);
                upper.kind = Some(pb::upper::Kind::Disk(d));
            }
            Upper::EncryptedDisk { serial } => {
                self.check_upper_serial(serial, "upper encrypted disk")?;
                let mut e = pb::EncryptedDiskUpper::new();
                e.disk = MessageField::some(mapping::disk_serial(serial));
                upper.kind = Some(pb::upper::Kind::EncryptedDisk(e));
            }
        }
        Ok(upper)
    }

    /// An upper's scratch disk: a valid serial that no layer's disk has.
    fn check_upper_serial(&self, serial: &str, what: &str) -> Result<(), PlanError> {
        validate_serial(serial).map_err(|source| PlanError::Contract {
            what: what.into(),
            source,
        })?;
        if self.layers.iter().any(|l| l.placement.serial() == serial) {
            return Err(PlanError::UpperIsLayer {
                serial: serial.to_owned(),
            });
        }
        Ok(())
    }
}

fn layer(l: &PlannedLayer) -> pb::Layer {
    let mut out = pb::Layer::new();
    out.digest = l
        .diff_id
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    out.disk = MessageField::some(match &l.placement {
        LayerPlacement::Disk { serial, .. } => mapping::disk_serial(serial),
        LayerPlacement::Partition { serial, name, .. } => mapping::disk_partition(serial, name),
    });
    out.fs_type = EnumOrUnknown::new(pb::FsType::FS_TYPE_EROFS);
    if let Some(v) = &l.verity {
        out.verity = MessageField::some(mapping::verity_params(v));
    }
    out
}
