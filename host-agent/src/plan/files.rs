//! A plan from layer files as a user names them (`FILE[:TREE][@DIGEST][=SERIAL]` or
//! `META+TAR[#OFFSET][:TREE][@DIGEST][=SERIAL]`, top layer first), exported the way
//! `layerpass blk serve` exports them: each file a disk of its own, or all of them
//! partitions of one composite disk. Each layer is checked against the logical block size
//! of the disk `blk serve` would make (opened here the same way).

use layerpass_protocols::v1::guest as pb;
use layerpass_types::envelope::DEFAULT_LOGICAL_BLOCK_SIZE;

use super::build::{LayerPlacement, PlanBuilder, PlannedLayer, Upper};
use super::{PlanError, layer_mapping};
use crate::export::Disk;
use crate::export::composite::CompositeDisk;
use crate::export::spec::LayerFileSpec;

/// Everything `layerpass plan` takes.
#[derive(Debug, Clone)]
pub struct FilesPlan {
    /// The container's id.
    pub container_id: String,
    /// The layers, top first.
    pub layers: Vec<LayerFileSpec>,
    /// The composite disk's serial, when the layers are its partitions.
    pub composite: Option<String>,
    /// The writable upper.
    pub upper: Upper,
    /// Where the guest mounts the rootfs.
    pub mount_point: Option<String>,
    /// Plan a layer that has no verity parameters without verity (the guest mounts the raw
    /// disk, or refuses it when it requires verity) instead of failing.
    pub allow_unverified: bool,
}

impl FilesPlan {
    /// Reads every layer's identity and verity parameters and builds the request.
    pub fn build(&self) -> Result<pb::MountRequest, PlanError> {
        let mut builder = PlanBuilder::new(&self.container_id)
            .upper(self.upper.clone())
            .mount_point(self.mount_point.clone());
        let composite_block_size = match &self.composite {
            Some(serial) => {
                let layers = self
                    .layers
                    .iter()
                    .map(LayerFileSpec::composite_layer)
                    .collect::<Result<Vec<_>, _>>()?;
                CompositeDisk::build(&layers, u64::from(DEFAULT_LOGICAL_BLOCK_SIZE), serial)?
                    .logical_block_size()
            }
            None => DEFAULT_LOGICAL_BLOCK_SIZE,
        };
        let mut disks: Vec<(&str, &LayerFileSpec)> = Vec::new();
        let mut serials = Vec::with_capacity(self.layers.len());
        for spec in &self.layers {
            serials.push(match &self.composite {
                Some(_) if spec.serial.is_some() => {
                    return Err(PlanError::Invalid {
                        what: format!("layer {}", spec.blob.display()),
                        reason: "=SERIAL names a disk of its own; with --composite every layer \
                                 is a partition of the composite disk"
                            .into(),
                    });
                }
                Some(_) => String::new(),
                None => spec.serial.clone().unwrap_or_else(|| spec.default_serial()),
            });
        }
        for (spec, serial) in self.layers.iter().zip(&serials) {
            let placement = match &self.composite {
                Some(composite) => LayerPlacement::Partition {
                    serial: composite.clone(),
                    name: partition_name(spec)?,
                    logical_block_size: composite_block_size,
                },
                None => {
                    if let Some((_, other)) = disks
                        .iter()
                        .find(|(s, other)| s == serial && other.blob != spec.blob)
                    {
                        return Err(PlanError::SerialCollision {
                            first: other.blob.clone(),
                            second: spec.blob.clone(),
                            serial: serial.clone(),
                        });
                    }
                    disks.push((serial, spec));
                    LayerPlacement::Disk {
                        serial: serial.clone(),
                        logical_block_size: spec.layer_disk(Some(serial))?.logical_block_size(),
                    }
                }
            };
            builder = builder.layer(plan_layer_files(spec, placement, self.allow_unverified)?);
        }
        builder.build()
    }
}

/// The composite partition name of a layer: the one rule of `layerpass-types`.
fn partition_name(spec: &LayerFileSpec) -> Result<String, PlanError> {
    let c = spec.composite_layer()?;
    layerpass_types::naming::partition_name(c.diff_id.as_ref(), c.root_hash.as_ref()).ok_or_else(
        || PlanError::NoIdentity {
            path: spec.blob.clone(),
        },
    )
}

/// One layer from its files, at `placement`.
pub fn plan_layer_files(
    spec: &LayerFileSpec,
    placement: LayerPlacement,
    allow_unverified: bool,
) -> Result<PlannedLayer, PlanError> {
    let verity = match layer_mapping(spec) {
        Ok(v) => Some(v),
        Err(PlanError::NoVerity { path }) if allow_unverified => {
            tracing::warn!(layer = %path.display(), "no verity parameters: planned without dm-verity");
            None
        }
        Err(e) => return Err(e),
    };
    Ok(PlannedLayer {
        source: spec.blob.clone(),
        diff_id: spec.diff_id(),
        placement,
        verity,
    })
}
