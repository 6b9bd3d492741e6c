//! What the daemon is asked and what it answers, in its own types (the API converts them
//! from and to protobuf).

use crate::convert::LayerFormat;
use std::path::PathBuf;

use layerpass_protocols::v1::guest as pb;

use super::config::ExportMode;
use super::disks::UpperRequest;
use crate::containerd::MountEntry;
use crate::guest::GuestEndpoint;
use crate::state::ExportRecord;

/// Where the layers come from.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// containerd's mount list.
    Containerd(Vec<MountEntry>),
    /// An OCI layout or `docker save` archive.
    Image {
        /// The image.
        path: PathBuf,
        /// `os/arch[/variant]`.
        platform: Option<String>,
        /// What each layer becomes; `None`: the configured `layer_format`.
        format: Option<LayerFormat>,
    },
}

/// One `Export`.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    /// The sandbox id.
    pub sandbox: String,
    /// The container id.
    pub container: String,
    /// The layers' source.
    pub source: SourceSpec,
    /// The mode; `None`: the configured one.
    pub mode: Option<ExportMode>,
    /// The upper; `None`: containerd's rwlayer.img, else the configured one.
    pub upper: Option<UpperRequest>,
    /// Deliver the plan to this guest agent.
    pub guest: Option<GuestEndpoint>,
}

/// What `Export` made.
#[derive(Debug, Clone)]
pub struct ExportOutcome {
    /// The stored export (disks with sockets and nodes).
    pub record: ExportRecord,
    /// The plan.
    pub plan: pb::MountRequest,
    /// The guest's answer, when delivered.
    pub guest: Option<pb::MountResponse>,
}

/// What `Unexport` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnexportOutcome {
    /// There was an export.
    pub existed: bool,
    /// The guest unmount failed (the host side was undone anyway).
    pub guest_error: Option<String>,
}

/// One export in `List`.
#[derive(Debug, Clone)]
pub struct ListedExport {
    /// The stored export.
    pub record: ExportRecord,
    /// Why it is not being served (it could not be resumed after a restart).
    pub error: Option<String>,
}

/// `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonStatus {
    /// Sandboxes with at least one export.
    pub sandboxes: u64,
    /// Exports.
    pub exports: u64,
    /// Disks served.
    pub disks: u64,
    /// Exports resumed from the state at start.
    pub resumed: u64,
    /// The schema version of the state.
    pub schema_version: u64,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// The vhost engine's threads (control plus queue workers).
    pub vhost_threads: u64,
    /// Disks with a frontend connected.
    pub connected_disks: u64,
    /// Queues started by frontends.
    pub running_queues: u64,
}
