//! `layerpass run`: a container image in a microVM, its command's output on this
//! terminal, its exit status ours.
//!
//! Exit status: the command's; 125 when layerpass itself failed (the image, the VM, the
//! guest refusing a layer), 130 when interrupted — as container runtimes do.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use clap::{Args, ValueEnum};
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use layerpass::convert::LayerFormat;
use layerpass::daemon::config::{ExportMode, UpperKind, parse_size};
use layerpass::microvm::AssetCache;
use layerpass::run::{AccelChoice, RunError, RunNote, RunOptions, RunReport, run};

use super::Outcome;
use super::progress::conversion_progress;

/// Exit status when layerpass itself failed.
pub const EXIT_RUN_FAILED: u8 = 125;
/// Exit status after SIGINT or SIGTERM.
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// One virtio-blk disk per layer.
    PerLayer,
    /// One GPT disk, a partition per layer.
    Composite,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum UpperArg {
    /// A tmpfs in the guest.
    Tmpfs,
    /// A sparse ext4 scratch disk.
    Disk,
    /// A scratch disk the guest encrypts with a key only it knows.
    EncryptedDisk,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AccelArg {
    /// KVM when a probe guest boots under it, else TCG.
    Auto,
    /// KVM.
    Kvm,
    /// TCG (emulation).
    Tcg,
}

#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// OCI image layout directory, or a `docker save` / OCI archive [default: the embedded
    /// sample image, built from Debian's busybox-static].
    #[arg(long, value_name = "OCI_DIR|ARCHIVE")]
    image: Option<PathBuf>,
    /// Platform to pick from a multi-platform image (`os/arch[/variant]`).
    #[arg(long, value_name = "P")]
    platform: Option<String>,
    /// How the layers reach the VM.
    #[arg(long, value_enum, default_value = "per-layer")]
    mode: ModeArg,
    /// The container's writable upper.
    #[arg(long, value_enum, default_value = "tmpfs")]
    upper: UpperArg,
    /// Size of the upper (tmpfs or scratch disk): bytes or K/M/G/T [default: 1G].
    #[arg(long, value_name = "N")]
    scratch_size: Option<String>,
    /// Confidential mode: the guest accepts only root hashes computed here from the
    /// image's layer tars (never from the cache), passed in the measured initramfs; the
    /// upper must be tmpfs or encrypted-disk; the event log is shown.
    #[arg(long)]
    confidential: bool,
    /// Zero-copy layers: each layer becomes an index layer (EROFS metadata over its tar;
    /// a plain layer's tar is served from the image where it is, a gzip/zstd one
    /// decompressed once into the cache), served at 512-byte blocks. The guest kernel must
    /// be 6.1.113 or later. With --daemon too: the request names the format, whatever the
    /// daemon's `layer_format` (so that confidential reference values match what is served).
    #[arg(long)]
    index: bool,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    memory: u32,
    /// vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    cpus: u32,
    /// A kernel image instead of Debian's cloud kernel.
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// That kernel's `lib/modules/<release>` (with `modules.dep`) [default: everything
    /// needed is built in].
    #[arg(long, value_name = "DIR", requires = "kernel")]
    kernel_modules: Option<PathBuf>,
    /// The accelerator.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelArg,
    /// The static guest agent [default: `layerpass-guest` beside this executable].
    #[arg(long, value_name = "PATH")]
    guest_agent: Option<PathBuf>,
    /// Guest assets, converted layers and the sample image [default:
    /// $XDG_CACHE_HOME/layerpass or ~/.cache/layerpass].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Set (or replace) an environment variable of the process.
    #[arg(short, long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory instead of the image's.
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// User instead of the image's (`name`, `uid`, `name:group`, `uid:gid`).
    #[arg(short, long, value_name = "USER")]
    user: Option<String>,
    /// Print where the time went and each layer, on stderr, after the command.
    #[arg(long)]
    timings: bool,
    /// Print the report (timings, layers, event log) as one JSON line on stderr after
    /// the command.
    #[arg(long)]
    json: bool,
    /// Export through a running `layerpass serve` at this API socket instead of in
    /// process (the daemon converts into its own cache and serves the disks).
    #[arg(long, value_name = "SOCKET")]
    daemon: Option<PathBuf>,
    /// The command and its arguments [default: the image's Entrypoint and Cmd].
    #[arg(value_name = "CMD")]
    command: Vec<String>,
}

impl RunArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let interrupted = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, interrupted.clone())?;
        }
        let opts = match self.options(interrupted.clone()) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("layerpass run: {e}");
                return Ok(Outcome::Exit(EXIT_RUN_FAILED));
            }
        };
        let bar = OnceLock::<ProgressBar>::new();
        let quiet = self.json && !self.timings;
        // A spinner (with the elapsed time) on slow steps when stderr is a terminal: a
        // download, the initramfs; cleared when the next step starts.
        let spinner: Mutex<Option<ProgressBar>> = Mutex::new(None);
        let notify = |note: RunNote| match note {
            RunNote::Step(s) => {
                let mut current = spinner.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(b) = current.take() {
                    b.finish_and_clear();
                }
                if !quiet {
                    eprintln!("==> {s}");
                    if s.starts_with("downloading") || s.starts_with("building") {
                        *current = step_spinner(&s);
                    }
                }
            }
            RunNote::Accel(s) => {
                if !quiet {
                    eprintln!("==> accelerator: {s}");
                }
            }
            RunNote::EventLog(line) => {
                // What a confidential container runs on is always shown.
                if self.confidential {
                    eprintln!("==> event log: {line}");
                }
            }
            RunNote::Convert(e) => conversion_progress(&bar, e),
        };
        let result = run(
            &opts,
            &notify,
            Box::new(std::io::stdout()),
            Box::new(std::io::stderr()),
        );
        if let Some(b) = bar.get() {
            b.finish_and_clear();
        }
        if let Some(b) = spinner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            b.finish_and_clear();
        }
        match result {
            Ok(report) => {
                if self.timings {
                    print_timings(&report);
                }
                if self.json {
                    eprintln!("{}", serde_json::to_string(&report)?);
                }
                Ok(Outcome::Exit(exit_status(report.exit_code)))
            }
            Err(RunError::Interrupted) => {
                eprintln!("layerpass run: interrupted; everything was stopped and removed");
                Ok(Outcome::Exit(EXIT_INTERRUPTED))
            }
            Err(e) => {
                let mut msg = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    msg.push_str(&format!(": {s}"));
                    source = s.source();
                }
                eprintln!("layerpass run: {msg}");
                Ok(Outcome::Exit(EXIT_RUN_FAILED))
            }
        }
    }

    fn options(&self, interrupted: Arc<AtomicBool>) -> Result<RunOptions, RunError> {
        let upper = match self.upper {
            UpperArg::Tmpfs => UpperKind::Tmpfs,
            UpperArg::Disk => UpperKind::Disk,
            UpperArg::EncryptedDisk => UpperKind::EncryptedDisk,
        };
        if self.confidential && upper == UpperKind::Disk {
            return Err(RunError::BadOption(
                "--confidential needs --upper tmpfs or encrypted-disk: the host could read and alter a plain scratch disk".into(),
            ));
        }
        if self.cpus == 0 || self.memory < 128 {
            return Err(RunError::BadOption(format!(
                "--cpus {} --memory {}: at least 1 vCPU and 128 MiB",
                self.cpus, self.memory
            )));
        }
        let scratch_size = self
            .scratch_size
            .as_deref()
            .map(|s| {
                parse_size(s).map_err(|e| RunError::BadOption(format!("--scratch-size {s}: {e}")))
            })
            .transpose()?;
        let cache = match &self.cache_dir {
            Some(d) => AssetCache::new(d),
            None => AssetCache::user_default()?,
        };
        Ok(RunOptions {
            image: self.image.clone(),
            platform: self.platform.clone(),
            mode: match self.mode {
                ModeArg::PerLayer => ExportMode::PerLayer,
                ModeArg::Composite => ExportMode::Composite,
            },
            upper,
            scratch_size,
            confidential: self.confidential,
            layer_format: if self.index {
                LayerFormat::Index
            } else {
                LayerFormat::Full
            },
            memory_mib: self.memory,
            cpus: self.cpus,
            kernel: self.kernel.clone(),
            kernel_modules: self.kernel_modules.clone(),
            accel: match self.accel {
                AccelArg::Auto => AccelChoice::Auto,
                AccelArg::Kvm => AccelChoice::Kvm,
                AccelArg::Tcg => AccelChoice::Tcg,
            },
            guest_agent: self.guest_agent.clone(),
            cache,
            daemon: self.daemon.clone(),
            command: self.command.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            interrupted,
        })
    }
}

/// A ticking spinner on stderr when it is a terminal.
fn step_spinner(message: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    b.set_style(
        ProgressStyle::with_template("    {spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    b.set_message(message.to_owned());
    b.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(b)
}

/// The command's status as ours: 0–255 as they are (128 + N for a signal).
fn exit_status(code: i32) -> u8 {
    u8::try_from(code.clamp(0, 255)).unwrap_or(u8::MAX)
}

fn print_timings(r: &RunReport) {
    let t = &r.timings;
    eprintln!(
        "==> timings ({}, {} layers, {}, upper {}):",
        r.accel,
        r.layers.len(),
        r.mode,
        r.upper
    );
    for (what, ms) in [
        ("guest assets", t.assets_ms),
        ("conversion (EROFS + dm-verity tree)", t.convert_ms),
        ("reference values", t.reference_values_ms),
        ("export (verity checks, disks)", t.export_ms),
        ("accelerator choice", t.accel_ms),
        ("VM start to agent ready", t.boot_ms),
        ("plan to rootfs ready (guest)", t.mount_ms),
        ("command (guest)", t.command_ms),
        ("shutdown", t.shutdown_ms),
        ("total", t.total_ms),
    ] {
        eprintln!("  {what:<38} {ms:>7} ms");
    }
    eprintln!("==> layers (top first):");
    for l in &r.layers {
        let size = l.size.map_or_else(|| "?".to_owned(), |s| s.to_string());
        let shared = match l.shared {
            Some(true) => " shared",
            Some(false) => "",
            None => " (daemon's cache)",
        };
        eprintln!(
            "  {} root {} {size:>10} bytes{shared}",
            l.diff_id, l.root_hash
        );
    }
}
