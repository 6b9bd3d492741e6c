//! Host API messages ↔ the daemon's types. Every request field is checked here or by the
//! daemon; an enum value outside the proto's, a missing source or a malformed endpoint is
//! `INVALID_ARGUMENT` naming the field.

use std::path::PathBuf;

use layerpass_protocols::protobuf::{EnumOrUnknown, MessageField};
use layerpass_protocols::v1::host as pb;

use crate::containerd::MountEntry;
use crate::convert::LayerFormat;
use crate::daemon::config::{Config, ExportMode, UpperKind};
use crate::daemon::disks::UpperRequest;
use crate::daemon::{
    DaemonError, DaemonStatus, ExportOutcome, ExportSpec, ListedExport, SourceSpec,
};
use crate::guest::GuestEndpoint;
use crate::state::{DiskRecord, DiskRole, ExportRecord, SourceRecord};

/// The daemon's request from an `ExportRequest`.
pub fn export_spec(req: &pb::ExportRequest) -> Result<ExportSpec, DaemonError> {
    let bad = |s: String| DaemonError::BadRequest(s);
    let source = match &req.source {
        Some(pb::export_request::Source::Mounts(m)) => SourceSpec::Containerd(
            m.mounts
                .iter()
                .map(|m| MountEntry {
                    kind: m.type_.clone(),
                    source: m.source.clone(),
                    target: (!m.target.is_empty()).then(|| m.target.clone()),
                    options: m.options.clone(),
                })
                .collect(),
        ),
        Some(pb::export_request::Source::Image(i)) => {
            if i.path.is_empty() {
                return Err(bad("image.path is empty".into()));
            }
            let format = match i.layer_format.enum_value() {
                Ok(pb::LayerFormat::LAYER_FORMAT_UNSPECIFIED) => None,
                Ok(pb::LayerFormat::LAYER_FORMAT_FULL) => Some(LayerFormat::Full),
                Ok(pb::LayerFormat::LAYER_FORMAT_INDEX) => Some(LayerFormat::Index),
                Err(n) => return Err(bad(format!("image.layer_format: unknown value {n}"))),
            };
            SourceSpec::Image {
                path: PathBuf::from(&i.path),
                platform: (!i.platform.is_empty()).then(|| i.platform.clone()),
                format,
            }
        }
        None => return Err(bad("source: neither mounts nor image is set".into())),
        Some(_) => return Err(bad("source: an unknown kind".into())),
    };
    let mode = match req.mode.enum_value() {
        Ok(pb::ExportMode::EXPORT_MODE_UNSPECIFIED) => None,
        Ok(pb::ExportMode::EXPORT_MODE_PER_LAYER) => Some(ExportMode::PerLayer),
        Ok(pb::ExportMode::EXPORT_MODE_COMPOSITE) => Some(ExportMode::Composite),
        Err(n) => return Err(bad(format!("mode: unknown value {n}"))),
    };
    let upper = match req.upper.as_ref().and_then(|u| u.kind.as_ref()) {
        None => None,
        Some(k) => {
            let (kind, size) = match k {
                pb::upper_choice::Kind::Tmpfs(s) => (UpperKind::Tmpfs, s.size_bytes),
                pb::upper_choice::Kind::Disk(s) => (UpperKind::Disk, s.size_bytes),
                pb::upper_choice::Kind::EncryptedDisk(s) => {
                    (UpperKind::EncryptedDisk, s.size_bytes)
                }
                _ => return Err(DaemonError::BadRequest("upper: an unknown kind".into())),
            };
            Some(UpperRequest {
                kind,
                size: (size != 0).then_some(size),
            })
        }
    };
    let guest = req.guest.as_ref().map(endpoint_from_pb).transpose()?;
    Ok(ExportSpec {
        sandbox: req.sandbox_id.clone(),
        container: req.container_id.clone(),
        source,
        mode,
        upper,
        guest,
    })
}

/// A typed endpoint from its message.
pub fn endpoint_from_pb(e: &pb::GuestEndpoint) -> Result<GuestEndpoint, DaemonError> {
    let bad = |s: &str| DaemonError::BadRequest(format!("guest: {s}"));
    let text = match &e.kind {
        Some(pb::guest_endpoint::Kind::Vsock(v)) => format!("vsock:{}:{}", v.cid, v.port),
        Some(pb::guest_endpoint::Kind::HybridVsock(h)) => format!("hvsock:{}:{}", h.socket, h.port),
        Some(pb::guest_endpoint::Kind::SerialSocket(s)) => format!("serial:{s}"),
        Some(pb::guest_endpoint::Kind::UnixSocket(s)) => format!("unix:{s}"),
        None => return Err(bad("no endpoint kind is set")),
        Some(_) => return Err(bad("an unknown endpoint kind")),
    };
    text.parse::<GuestEndpoint>().map_err(DaemonError::from)
}

/// The message of a typed endpoint.
pub fn endpoint_to_pb(e: &GuestEndpoint) -> pb::GuestEndpoint {
    let mut out = pb::GuestEndpoint::new();
    match e {
        GuestEndpoint::Vsock { cid, port } => {
            let mut v = pb::VsockAddress::new();
            v.cid = *cid;
            v.port = *port;
            out.set_vsock(v);
        }
        GuestEndpoint::HybridVsock { socket, port } => {
            let mut h = pb::HybridVsockAddress::new();
            h.socket = socket.display().to_string();
            h.port = *port;
            out.set_hybrid_vsock(h);
        }
        GuestEndpoint::Serial { socket } => out.set_serial_socket(socket.display().to_string()),
        GuestEndpoint::Unix { socket } => out.set_unix_socket(socket.display().to_string()),
    }
    out
}

fn disk_to_pb(d: &DiskRecord) -> pb::ExportedDisk {
    let mut out = pb::ExportedDisk::new();
    out.socket = d.socket.display().to_string();
    out.serial = d.serial.clone();
    out.size_bytes = d.size;
    out.read_only = d.read_only;
    out.device_node = d
        .node
        .as_ref()
        .map(|(p, _)| p.display().to_string())
        .unwrap_or_default();
    out.role = EnumOrUnknown::new(match d.role {
        DiskRole::Layer => pb::DiskRole::DISK_ROLE_LAYER,
        DiskRole::Composite => pb::DiskRole::DISK_ROLE_COMPOSITE,
        DiskRole::Scratch => pb::DiskRole::DISK_ROLE_SCRATCH,
    });
    out
}

/// The `ExportResponse` of an export.
pub fn export_response(o: &ExportOutcome) -> pb::ExportResponse {
    let mut out = pb::ExportResponse::new();
    out.disks = o.record.disks.iter().map(disk_to_pb).collect();
    out.plan = MessageField::some(o.plan.clone());
    out.guest = o
        .guest
        .clone()
        .map_or_else(MessageField::none, MessageField::some);
    out
}

fn describe(r: &ExportRecord) -> String {
    match &r.source {
        SourceRecord::Containerd { mounts } => {
            let layers = mounts.iter().filter(|m| m.kind == "erofs").count();
            format!("containerd mounts ({layers} layers)")
        }
        SourceRecord::Image { path, .. } => format!("image {}", path.display()),
    }
}

/// `List`'s answer: exports grouped by sandbox, in key order.
pub fn list_response(exports: &[ListedExport]) -> pb::HostListResponse {
    let mut out = pb::HostListResponse::new();
    for e in exports {
        let r = &e.record;
        if out
            .sandboxes
            .last()
            .is_none_or(|s| s.sandbox_id != r.key.sandbox)
        {
            let mut s = pb::SandboxExports::new();
            s.sandbox_id = r.key.sandbox.clone();
            out.sandboxes.push(s);
        }
        let mut info = pb::ExportInfo::new();
        info.container_id = r.key.container.clone();
        info.disks = r.disks.iter().map(disk_to_pb).collect();
        info.source = match &e.error {
            Some(err) => format!("{} — NOT SERVED: {err}", describe(r)),
            None => describe(r),
        };
        info.guest = r
            .guest
            .as_deref()
            .and_then(|g| g.parse::<GuestEndpoint>().ok())
            .map(|g| endpoint_to_pb(&g))
            .map_or_else(MessageField::none, MessageField::some);
        info.root_hashes = r.root_hashes.clone();
        info.created_unix = r.created_unix;
        if let Some(s) = out.sandboxes.last_mut() {
            s.exports.push(info);
        }
    }
    out
}

/// `Status`'s answer.
pub fn status_response(config: &Config, s: &DaemonStatus) -> pb::HostStatusResponse {
    let mut out = pb::HostStatusResponse::new();
    out.version = env!("CARGO_PKG_VERSION").to_owned();
    out.sandboxes = s.sandboxes;
    out.exports = s.exports;
    out.disks = s.disks;
    out.state_dir = config.state_dir.display().to_string();
    out.schema_version = u32::try_from(s.schema_version).unwrap_or(u32::MAX);
    out.export_mode = EnumOrUnknown::new(match config.export_mode {
        ExportMode::PerLayer => pb::ExportMode::EXPORT_MODE_PER_LAYER,
        ExportMode::Composite => pb::ExportMode::EXPORT_MODE_COMPOSITE,
    });
    out.upper = config.upper.name().to_owned();
    out.verity = config.verity.name().to_owned();
    out.kata_store = config
        .kata_vhost_user_store
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    out.resumed = s.resumed;
    out.uptime_seconds = s.uptime_seconds;
    out.vhost_threads = u32::try_from(s.vhost_threads).unwrap_or(u32::MAX);
    out.connected_disks = s.connected_disks;
    out.running_queues = s.running_queues;
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn image_request(format: EnumOrUnknown<pb::LayerFormat>) -> pb::ExportRequest {
        let mut req = pb::ExportRequest::new();
        req.sandbox_id = "sb".into();
        req.container_id = "c".into();
        let mut i = pb::OciImage::new();
        i.path = "/images/x".into();
        i.layer_format = format;
        req.set_image(i);
        req
    }

    /// The request's layer format reaches the daemon's spec; a value outside the proto's
    /// is refused naming the field, not taken as the default.
    #[test]
    fn layer_formats_and_an_unknown_one() {
        for (value, want) in [
            (pb::LayerFormat::LAYER_FORMAT_UNSPECIFIED, None),
            (pb::LayerFormat::LAYER_FORMAT_FULL, Some(LayerFormat::Full)),
            (
                pb::LayerFormat::LAYER_FORMAT_INDEX,
                Some(LayerFormat::Index),
            ),
        ] {
            let spec = export_spec(&image_request(EnumOrUnknown::new(value))).unwrap();
            assert!(
                matches!(spec.source, SourceSpec::Image { format, .. } if format == want),
                "{value:?}"
            );
        }
        let e = export_spec(&image_request(EnumOrUnknown::from_i32(7))).unwrap_err();
        assert!(matches!(e, DaemonError::BadRequest(_)), "{e}");
        assert!(e.to_string().contains("image.layer_format"), "{e}");
    }
}
