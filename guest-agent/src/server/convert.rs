//! Protocol messages ↔ the agent's domain types, in one place. Requests are checked
//! here for what protobuf cannot express (a oneof left empty, an enum value left
//! unspecified or unknown); the field rules themselves live in `MountPlan::validate`.
//! Errors are `InvalidArgument` and name the field, e.g. `layers[1].disk: no serial or
//! partition`.

use std::path::PathBuf;

use layerpass_protocols::mapping;
use layerpass_protocols::protobuf::{EnumOrUnknown, MessageField};
use layerpass_protocols::status::Kind;
use layerpass_protocols::v1::guest as pb;

use crate::error::{AgentError, Step};
use crate::plan::{
    AgentStatus, ContainerStatus, CorruptionMode, DiskRef, FsType, HashAlgorithm, LayerSpec,
    MountPlan, MountResult, MountedLayer, OverlayOptions, UpperSpec, VerityParams,
};

fn invalid(field: &str, what: &str) -> AgentError {
    AgentError::new(
        Kind::InvalidArgument,
        Step::Validate,
        format!("{field}: {what}"),
    )
}

/// Reads an enum field: an unknown number or the `..._UNSPECIFIED` value is an error
/// naming the field, except where `unspecified` gives a default.
fn enum_field<E: layerpass_protocols::protobuf::Enum + std::fmt::Debug>(
    field: &str,
    value: EnumOrUnknown<E>,
) -> Result<E, AgentError> {
    value
        .enum_value()
        .map_err(|n| invalid(field, &format!("unknown enum value {n}")))
}

fn disk_ref(field: &str, disk: &MessageField<pb::DiskRef>) -> Result<DiskRef, AgentError> {
    let Some(disk) = disk.as_ref() else {
        return Err(invalid(field, "missing (needs a serial or a partition)"));
    };
    match &disk.kind {
        Some(pb::disk_ref::Kind::Serial(serial)) => Ok(DiskRef::Serial(serial.clone())),
        Some(pb::disk_ref::Kind::Partition(p)) => Ok(DiskRef::Partition {
            serial: p.serial.clone(),
            name: p.name.clone(),
        }),
        None => Err(invalid(field, "no serial or partition")),
        Some(_) => Err(invalid(field, "unknown disk reference kind")),
    }
}

fn fs_type(field: &str, value: EnumOrUnknown<pb::FsType>) -> Result<FsType, AgentError> {
    match enum_field(field, value)? {
        pb::FsType::FS_TYPE_EROFS => Ok(FsType::Erofs),
        pb::FsType::FS_TYPE_UNSPECIFIED => Err(invalid(field, "unspecified (use FS_TYPE_EROFS)")),
    }
}

fn verity(field: &str, v: &pb::VerityParams) -> Result<VerityParams, AgentError> {
    let algorithm = match enum_field(&format!("{field}.algorithm"), v.algorithm)? {
        pb::HashAlgorithm::HASH_ALGORITHM_SHA256 => HashAlgorithm::Sha256,
        pb::HashAlgorithm::HASH_ALGORITHM_SHA512 => HashAlgorithm::Sha512,
        pb::HashAlgorithm::HASH_ALGORITHM_SHA1 => HashAlgorithm::Sha1,
        pb::HashAlgorithm::HASH_ALGORITHM_UNSPECIFIED => {
            return Err(invalid(&format!("{field}.algorithm"), "unspecified"));
        }
    };
    let on_corruption = match enum_field(&format!("{field}.on_corruption"), v.on_corruption)? {
        pb::CorruptionMode::CORRUPTION_MODE_UNSPECIFIED
        | pb::CorruptionMode::CORRUPTION_MODE_EIO => CorruptionMode::Eio,
        pb::CorruptionMode::CORRUPTION_MODE_RESTART => CorruptionMode::Restart,
        pb::CorruptionMode::CORRUPTION_MODE_PANIC => CorruptionMode::Panic,
    };
    Ok(VerityParams {
        algorithm,
        format: v.format,
        data_block_size: v.data_block_size,
        hash_block_size: v.hash_block_size,
        data_blocks: v.data_blocks,
        hash_start_block: v.hash_start_block,
        salt: v.salt.clone(),
        root_hash: v.root_hash.clone(),
        on_corruption,
    })
}

fn layer(index: usize, l: &pb::Layer) -> Result<LayerSpec, AgentError> {
    let field = format!("layers[{index}]");
    let spec = (|| {
        Ok(LayerSpec {
            digest: l.digest.clone(),
            disk: disk_ref(&format!("{field}.disk"), &l.disk)?,
            fs_type: fs_type(&format!("{field}.fs_type"), l.fs_type)?,
            verity: l
                .verity
                .as_ref()
                .map(|v| verity(&format!("{field}.verity"), v))
                .transpose()?,
        })
    })();
    spec.map_err(|e: AgentError| e.layer(index, &l.digest))
}

fn upper(u: &MessageField<pb::Upper>) -> Result<UpperSpec, AgentError> {
    let Some(u) = u.as_ref() else {
        return Err(invalid(
            "upper",
            "missing (needs a disk, an encrypted_disk or a tmpfs)",
        ));
    };
    match &u.kind {
        Some(pb::upper::Kind::Disk(d)) => Ok(UpperSpec::Disk {
            disk: disk_ref("upper.disk.disk", &d.disk)?,
            fs_type: d.fs_type.clone(),
        }),
        Some(pb::upper::Kind::Tmpfs(t)) => Ok(UpperSpec::Tmpfs {
            size_bytes: t.size_bytes,
        }),
        Some(pb::upper::Kind::EncryptedDisk(e)) => Ok(UpperSpec::EncryptedDisk {
            disk: disk_ref("upper.encrypted_disk.disk", &e.disk)?,
        }),
        None => Err(invalid("upper", "no disk, encrypted_disk or tmpfs")),
        Some(_) => Err(invalid("upper", "unknown upper kind")),
    }
}

/// The mount plan a `MountRequest` describes. The caller still runs
/// `MountPlan::validate` (the agent does, before touching the kernel).
pub fn mount_plan(req: &pb::MountRequest) -> Result<MountPlan, AgentError> {
    let plan = (|| {
        let layers = req
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| layer(i, l))
            .collect::<Result<Vec<_>, _>>()?;
        let overlay = req
            .overlay
            .as_ref()
            .map_or_else(OverlayOptions::default, |o| OverlayOptions {
                volatile: o.volatile,
                userxattr: o.userxattr,
            });
        Ok(MountPlan {
            container_id: req.container_id.clone(),
            layers,
            upper: upper(&req.upper)?,
            mount_point: (!req.mount_point.is_empty()).then(|| PathBuf::from(&req.mount_point)),
            overlay,
        })
    })();
    plan.map_err(|e: AgentError| e.container(&req.container_id))
}

fn pb_disk(disk: &DiskRef) -> pb::DiskRef {
    match disk {
        DiskRef::Serial(s) => mapping::disk_serial(s),
        DiskRef::Partition { serial, name } => mapping::disk_partition(serial, name),
    }
}

fn pb_verity(v: &VerityParams) -> pb::VerityParams {
    mapping::verity_params(v)
}

/// The `MountRequest` for a plan (the inverse of [`mount_plan`]), for clients and tests.
pub fn mount_request(plan: &MountPlan) -> pb::MountRequest {
    let mut req = pb::MountRequest::new();
    req.container_id = plan.container_id.clone();
    req.layers = plan
        .layers
        .iter()
        .map(|l| {
            let mut out = pb::Layer::new();
            out.digest = l.digest.clone();
            out.disk = MessageField::some(pb_disk(&l.disk));
            out.fs_type = EnumOrUnknown::new(match l.fs_type {
                FsType::Erofs => pb::FsType::FS_TYPE_EROFS,
            });
            out.verity = l.verity.as_ref().map(pb_verity).into();
            out
        })
        .collect();
    let mut upper = pb::Upper::new();
    match &plan.upper {
        UpperSpec::Disk { disk, fs_type } => {
            let mut d = pb::UpperDisk::new();
            d.disk = MessageField::some(pb_disk(disk));
            d.fs_type = fs_type.clone();
            upper.set_disk(d);
        }
        UpperSpec::Tmpfs { size_bytes } => {
            let mut t = pb::TmpfsUpper::new();
            t.size_bytes = *size_bytes;
            upper.set_tmpfs(t);
        }
        UpperSpec::EncryptedDisk { disk } => {
            let mut e = pb::EncryptedDiskUpper::new();
            e.disk = MessageField::some(pb_disk(disk));
            upper.set_encrypted_disk(e);
        }
    }
    req.upper = MessageField::some(upper);
    req.mount_point = plan
        .mount_point
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut overlay = pb::OverlayOptions::new();
    overlay.volatile = plan.overlay.volatile;
    overlay.userxattr = plan.overlay.userxattr;
    req.overlay = MessageField::some(overlay);
    req
}

fn pb_layers(layers: &[MountedLayer]) -> Vec<pb::MountedLayer> {
    layers
        .iter()
        .map(|l| {
            let mut out = pb::MountedLayer::new();
            out.digest = l.digest.clone();
            out.root_hash = l.root_hash.clone();
            out.device = l.device.display().to_string();
            out.shared = l.shared;
            out
        })
        .collect()
}

/// The response to a successful `Mount`.
pub fn mount_response(result: &MountResult) -> pb::MountResponse {
    let mut out = pb::MountResponse::new();
    out.container_id = result.container_id.clone();
    out.rootfs = result.rootfs.display().to_string();
    out.layers = pb_layers(&result.layers);
    out
}

/// The response to `List`.
pub fn list_response(containers: &[ContainerStatus]) -> pb::ListResponse {
    let mut out = pb::ListResponse::new();
    out.containers = containers
        .iter()
        .map(|c| {
            let mut s = pb::ContainerStatus::new();
            s.container_id = c.container_id.clone();
            s.rootfs = c.rootfs.display().to_string();
            s.layers = pb_layers(&c.layers);
            s
        })
        .collect();
    out
}

/// The response to `Status`.
pub fn status_response(status: &AgentStatus) -> pb::StatusResponse {
    let mut out = pb::StatusResponse::new();
    out.containers = status.containers as u64;
    out.layers = status.layers as u64;
    out.confidential = status.confidential;
    out.require_verity = status.require_verity;
    out.measure.clone_from(&status.measure.backend);
    out.measure_register = status.measure.register;
    out.measured_events = status.measure.measured;
    out.measure_problem = status.measure.problem.clone().unwrap_or_default();
    out
}

#[cfg(test)]
mod tests;
