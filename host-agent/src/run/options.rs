//! What `layerpass run` is asked to do.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::convert::LayerFormat;
use crate::daemon::config::{ExportMode, UpperKind};
use crate::microvm::AssetCache;

/// The accelerator a run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM when a probe guest boots under it, else TCG.
    Auto,
    /// KVM (an error when `/dev/kvm` cannot be opened).
    Kvm,
    /// TCG.
    Tcg,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// An OCI layout directory or an archive; `None`: the embedded sample image.
    pub image: Option<PathBuf>,
    /// `os/arch[/variant]`.
    pub platform: Option<String>,
    /// Per-layer disks or one composite disk.
    pub mode: ExportMode,
    /// The container's writable upper.
    pub upper: UpperKind,
    /// Its size; `None`: 1 GiB.
    pub scratch_size: Option<u64>,
    /// Reference values computed from the image's tars, checked in the guest.
    pub confidential: bool,
    /// Full EROFS layers, or index layers over the image's tars (in-process export only:
    /// a running daemon's `layer_format` decides for it).
    pub layer_format: LayerFormat,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub cpus: u32,
    /// A kernel instead of Debian's cloud kernel.
    pub kernel: Option<PathBuf>,
    /// `lib/modules/<release>` of that kernel (with `modules.dep`); `None`: all built in.
    pub kernel_modules: Option<PathBuf>,
    /// The accelerator.
    pub accel: AccelChoice,
    /// The static guest agent; `None`: beside the running executable.
    pub guest_agent: Option<PathBuf>,
    /// Guest assets, converted layers and the sample image.
    pub cache: AssetCache,
    /// Export through this running daemon's API socket instead of in process.
    pub daemon: Option<PathBuf>,
    /// The command (empty: the image's Cmd); the image's Entrypoint comes first.
    pub command: Vec<String>,
    /// `KEY=VALUE` added to (or replacing in) the image's Env.
    pub env: Vec<String>,
    /// Working directory instead of the image's.
    pub workdir: Option<String>,
    /// User instead of the image's.
    pub user: Option<String>,
    /// Set by a signal handler: the run stops and cleans up.
    pub interrupted: Arc<AtomicBool>,
}
