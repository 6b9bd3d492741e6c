//! What a run reports (`--timings`, `--json`).

use serde::Serialize;

/// Where the time went, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Kernel, busybox, agent and the base initramfs (downloads on first use).
    pub assets_ms: u64,
    /// Image layers to EROFS with their dm-verity trees (one pass; 0 for cached layers).
    pub convert_ms: u64,
    /// Reference values recomputed from the tars (confidential runs only).
    pub reference_values_ms: u64,
    /// The export: every layer's tree checked against its sidecar (verity), disks
    /// assembled and served.
    pub export_ms: u64,
    /// Choosing the accelerator (a KVM probe boot on first use).
    pub accel_ms: u64,
    /// QEMU started to the guest agent ready.
    pub boot_ms: u64,
    /// Plan to rootfs ready, measured by the guest agent.
    pub mount_ms: u64,
    /// The command, measured in the guest.
    pub command_ms: u64,
    /// Command exit to QEMU gone.
    pub shutdown_ms: u64,
    /// The whole run.
    pub total_ms: u64,
}

/// One layer of the run, top first.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// The layer blob's digest in the image.
    pub digest: String,
    /// The uncompressed tar's digest (the cache key).
    pub diff_id: String,
    /// The dm-verity root hash the guest checked.
    pub root_hash: String,
    /// Bytes of the EROFS image with its tree (not known through `--daemon`).
    pub size: Option<u64>,
    /// Already in the cache (converted before, possibly for another image); not known
    /// through `--daemon`.
    pub shared: Option<bool>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The command's exit status.
    pub exit_code: i32,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// The image.
    pub image: String,
    /// `per-layer` or `composite`.
    pub mode: String,
    /// The upper.
    pub upper: String,
    /// Confidential mode.
    pub confidential: bool,
    /// The guest kernel release.
    pub kernel: String,
    /// Timings.
    pub timings: Timings,
    /// Layers, top first.
    pub layers: Vec<LayerReport>,
    /// The lines the guest agent's event log got.
    pub event_log: Vec<String>,
}

/// Milliseconds of a duration, saturating.
pub fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
