//! The disks of an export and its plan: per-layer disks or one composite disk, the scratch
//! disk when the upper needs one, and the typed mount plan naming them by serial and
//! partition. [`open_disk`] opens a stored disk again after a restart.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use layerpass_protocols::v1::guest as pb;
use layerpass_types::envelope::DEFAULT_LOGICAL_BLOCK_SIZE;
use layerpass_types::naming::partition_name;
use layerpass_types::{Digest, HashAlgorithm, RootHash, VerityMapping};

use super::DaemonError;
use super::config::{Config, ExportMode, UpperKind};
use super::layers::{Resolved, SourceUpper};
use super::naming::{MAX_LAYERS, composite_serial, layer_serial, scratch_serial, serial_stem};
use crate::export::Disk;
use crate::export::composite::{CompositeDisk, CompositeLayer};
use crate::export::index::IndexTar;
use crate::export::layer::LayerDisk;
use crate::export::scratch::{MIN_SCRATCH, SCRATCH_ALIGN, ScratchDisk};
use crate::plan::{LayerPlacement, PlanBuilder, PlannedLayer, Upper};
use crate::state::{
    CompositeLayerRecord, DiskBacking, DiskRecord, DiskRole, ExportKey, IndexTarRecord,
};

/// The upper a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperRequest {
    /// Its kind.
    pub kind: UpperKind,
    /// Its size; `None`: the configured `scratch_size`.
    pub size: Option<u64>,
}

/// An export's disks (sockets not yet assigned) and plan.
#[derive(Debug)]
pub struct Assembled {
    /// Each disk's record and the open disk.
    pub disks: Vec<(DiskRecord, Arc<dyn Disk>)>,
    /// The plan.
    pub plan: pb::MountRequest,
    /// Files made here (scratch images), removed if the export fails.
    pub created: Vec<PathBuf>,
}

/// Opens the disk a record describes, checking it still has the recorded size.
pub fn open_disk(record: &DiskRecord) -> Result<Arc<dyn Disk>, DaemonError> {
    let serial = Some(record.serial.as_str());
    let disk: Arc<dyn Disk> = match &record.backing {
        DiskBacking::Layer {
            blob,
            tree,
            block_size,
            index,
        } => Arc::new(
            LayerDisk::open_layer(
                blob,
                index.as_ref().map(IndexTar::from).as_ref(),
                tree.as_deref(),
                serial,
            )?
            .limit_block_size(*block_size),
        ),
        DiskBacking::Composite { layers } => {
            let layers = layers
                .iter()
                .map(composite_layer)
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(CompositeDisk::build(
                &layers,
                u64::from(DEFAULT_LOGICAL_BLOCK_SIZE),
                &record.serial,
            )?)
        }
        DiskBacking::Scratch { path, .. } => {
            if !path.exists() {
                return Err(DaemonError::Missing {
                    what: "scratch image",
                    path: path.clone(),
                });
            }
            Arc::new(ScratchDisk::open_or_create(path, None, serial)?)
        }
    };
    if disk.size() != record.size {
        return Err(DaemonError::BadRequest(format!(
            "disk {} is now {} bytes, not the {} bytes exported: its files changed",
            record.serial,
            disk.size(),
            record.size
        )));
    }
    Ok(disk)
}

fn composite_layer(l: &CompositeLayerRecord) -> Result<CompositeLayer, DaemonError> {
    let bad = |what: &str, e: layerpass_types::TypeError| {
        DaemonError::BadRequest(format!("stored {what} of layer {}: {e}", l.blob.display()))
    };
    Ok(CompositeLayer {
        blob: l.blob.clone(),
        index: l.index.as_ref().map(IndexTar::from),
        tree: l.tree.clone(),
        diff_id: l
            .diff_id
            .as_deref()
            .map(Digest::parse)
            .transpose()
            .map_err(|e| bad("diff ID", e))?,
        root_hash: l
            .root_hash
            .as_deref()
            .map(|h| RootHash::parse(h, HashAlgorithm::Sha256))
            .transpose()
            .map_err(|e| bad("root hash", e))?,
        block_size: l.block_size,
    })
}

/// Builds the disks and the plan of an export. Nothing is served yet; the only files made
/// are a scratch image (listed in `created`).
pub fn assemble(
    key: &ExportKey,
    resolved: &Resolved,
    mode: ExportMode,
    upper: Option<UpperRequest>,
    config: &Config,
) -> Result<Assembled, DaemonError> {
    if resolved.layers.len() > MAX_LAYERS {
        return Err(DaemonError::BadRequest(format!(
            "{} has {} layers; at most {MAX_LAYERS} can be exported",
            resolved.description,
            resolved.layers.len()
        )));
    }
    let stem = serial_stem(key);
    let mut disks: Vec<(DiskRecord, Arc<dyn Disk>)> = Vec::new();
    let mut builder =
        PlanBuilder::new(&key.container).overlay(resolved.volatile, resolved.userxattr);
    match mode {
        ExportMode::PerLayer => {
            for (i, l) in resolved.layers.iter().enumerate() {
                let serial = layer_serial(&stem, i);
                let block_size = verity_block_size(l.verity.mapping.as_ref());
                let backing = DiskBacking::Layer {
                    blob: l.blob.clone(),
                    tree: l.verity.tree.clone(),
                    block_size,
                    index: l.index.as_ref().map(IndexTarRecord::from),
                };
                let disk: Arc<dyn Disk> = Arc::new(
                    LayerDisk::open_layer(
                        &l.blob,
                        l.index.as_ref(),
                        l.verity.tree.as_deref(),
                        Some(&serial),
                    )?
                    .limit_block_size(block_size),
                );
                builder = builder.layer(PlannedLayer {
                    source: l.blob.clone(),
                    diff_id: l.diff_id.clone(),
                    placement: LayerPlacement::Disk {
                        serial: serial.clone(),
                        logical_block_size: disk.logical_block_size(),
                    },
                    verity: l.verity.mapping.clone(),
                });
                disks.push((record(DiskRole::Layer, serial, &*disk, backing), disk));
            }
        }
        ExportMode::Composite => {
            let serial = composite_serial(&stem);
            let records: Vec<CompositeLayerRecord> = resolved
                .layers
                .iter()
                .map(|l| CompositeLayerRecord {
                    blob: l.blob.clone(),
                    tree: l.verity.tree.clone(),
                    diff_id: l.diff_id.as_ref().map(ToString::to_string),
                    root_hash: l.verity.mapping.as_ref().map(|m| hex::encode(&m.root_hash)),
                    block_size: verity_block_size(l.verity.mapping.as_ref()),
                    index: l.index.as_ref().map(IndexTarRecord::from),
                })
                .collect();
            let layers = records
                .iter()
                .map(composite_layer)
                .collect::<Result<Vec<_>, _>>()?;
            let disk = Arc::new(CompositeDisk::build(
                &layers,
                u64::from(DEFAULT_LOGICAL_BLOCK_SIZE),
                &serial,
            )?);
            for (l, c) in resolved.layers.iter().zip(&layers) {
                let name =
                    partition_name(c.diff_id.as_ref(), c.root_hash.as_ref()).ok_or_else(|| {
                        DaemonError::BadRequest(format!(
                            "layer {} has no identity",
                            l.blob.display()
                        ))
                    })?;
                builder = builder.layer(PlannedLayer {
                    source: l.blob.clone(),
                    diff_id: l.diff_id.clone(),
                    placement: LayerPlacement::Partition {
                        serial: serial.clone(),
                        name,
                        logical_block_size: disk.logical_block_size(),
                    },
                    verity: l.verity.mapping.clone(),
                });
            }
            let backing = DiskBacking::Composite { layers: records };
            let rec = record(DiskRole::Composite, serial, &*disk, backing);
            disks.push((rec, disk));
        }
    }
    let mut created = Vec::new();
    let serial = scratch_serial(&stem);
    let size = |req: Option<UpperRequest>| req.and_then(|u| u.size).unwrap_or(config.scratch_size);
    let plan_upper = match (upper, &resolved.upper) {
        // containerd's block-mode rwlayer.img, unless the request names an upper itself
        (
            None,
            SourceUpper::BlockImage {
                path,
                fs_type,
                create,
            },
        ) => {
            if let Some(size) = create
                && !path.exists()
            {
                check_scratch_size(*size)?;
                created.push(path.clone());
            }
            let disk = match ScratchDisk::open_or_create(path, *create, Some(&serial)) {
                Ok(d) => d,
                Err(e) => {
                    super::layers::remove_files(&created);
                    return Err(e.into());
                }
            };
            let disk: Arc<dyn Disk> = Arc::new(disk);
            let backing = DiskBacking::Scratch {
                path: path.clone(),
                owned: false,
            };
            disks.push((
                record(DiskRole::Scratch, serial.clone(), &*disk, backing),
                disk,
            ));
            Upper::Disk {
                serial,
                fs_type: fs_type.clone(),
            }
        }
        (req, _) => {
            let kind = req.map_or(config.upper, |u| u.kind);
            let size = size(req);
            match kind {
                UpperKind::Tmpfs => Upper::Tmpfs { size_bytes: size },
                UpperKind::Disk | UpperKind::EncryptedDisk => {
                    check_scratch_size(size)?;
                    let dir = config.state_dir.join("scratch");
                    std::fs::create_dir_all(&dir).map_err(DaemonError::io("create", &dir))?;
                    let path = dir.join(format!("{serial}.img"));
                    // an image here has no export: a crash left it
                    super::layers::remove_files(std::slice::from_ref(&path));
                    let disk = if kind == UpperKind::Disk {
                        ScratchDisk::open_or_create(&path, Some(size), Some(&serial))
                    } else {
                        make_sparse(&path, size)?;
                        ScratchDisk::open_or_create(&path, None, Some(&serial))
                    };
                    created.push(path.clone());
                    let disk: Arc<dyn Disk> = match disk {
                        Ok(d) => Arc::new(d),
                        Err(e) => {
                            super::layers::remove_files(&created);
                            return Err(e.into());
                        }
                    };
                    let backing = DiskBacking::Scratch { path, owned: true };
                    disks.push((
                        record(DiskRole::Scratch, serial.clone(), &*disk, backing),
                        disk,
                    ));
                    if kind == UpperKind::Disk {
                        Upper::Disk {
                            serial,
                            fs_type: "ext4".into(),
                        }
                    } else {
                        Upper::EncryptedDisk { serial }
                    }
                }
            }
        }
    };
    match builder.upper(plan_upper).build() {
        Ok(plan) => Ok(Assembled {
            disks,
            plan,
            created,
        }),
        Err(e) => {
            super::layers::remove_files(&created);
            Err(e.into())
        }
    }
}

/// The logical block size a layer's verity needs, when below 4096: `min(data, hash block
/// size)` of its mapping (the mapping may come from a sidecar that is not beside the blob,
/// where the layer disk looks).
fn verity_block_size(mapping: Option<&VerityMapping>) -> Option<u32> {
    mapping
        .map(|m| m.data_block_size.min(m.hash_block_size))
        .filter(|&s| s < DEFAULT_LOGICAL_BLOCK_SIZE)
}

fn check_scratch_size(size: u64) -> Result<(), DaemonError> {
    if size < MIN_SCRATCH || !size.is_multiple_of(SCRATCH_ALIGN) {
        return Err(DaemonError::BadRequest(format!(
            "scratch size {size} is not a multiple of {SCRATCH_ALIGN} of at least {MIN_SCRATCH} bytes"
        )));
    }
    Ok(())
}

/// A new sparse file of `size` bytes, not formatted (the guest formats an encrypted upper).
fn make_sparse(path: &Path, size: u64) -> Result<(), DaemonError> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(DaemonError::io("create", path))?;
    f.set_len(size).map_err(DaemonError::io("size", path))
}

fn record(role: DiskRole, serial: String, disk: &dyn Disk, backing: DiskBacking) -> DiskRecord {
    DiskRecord {
        role,
        socket: PathBuf::new(),
        serial,
        size: disk.size(),
        read_only: disk.read_only(),
        node: None,
        backing,
    }
}
