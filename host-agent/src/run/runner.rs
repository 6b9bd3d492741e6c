//! One run from start to end: image → cached EROFS layers → export (the daemon's code, in
//! process) → microVM → the guest agent mounts the rootfs and runs the command → exit
//! status. Every step's resources are owned by guards declared in reverse order of
//! teardown, so an error or an interruption at any point leaves nothing behind: no QEMU,
//! no sockets, no mounts, no temporary files.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use super::error::RunError;
use super::export::export;
use super::guest::{self, GuestAssets};
use super::options::{AccelChoice, RunOptions};
use super::process::{ProcessSpec, image_runtime, process_spec};
use super::reference;
use super::report::{LayerReport, RunReport, Timings, ms};
use super::sample::write_sample_image;
use super::status::StatusEvent;
use super::vm::{self, Disks, StatusMsg};
use crate::convert::{
    ConvertEvent, ImageConvertOptions, ImageConvertReport, OutputLayout, convert_image,
};
use crate::daemon::config::{ExportMode, UpperKind};
use crate::daemon::layers::layer_cache_dir;
use crate::image::{Image, Platform, open_image, read_config};
use crate::microvm::VmError;
use crate::microvm::accel::{self, Accel};
use crate::microvm::assets::{AssetCache, Kernel};
use crate::microvm::qemu::{DEFAULT_APPEND, Machine, QEMU};
use crate::microvm::tool::require_tool;
use crate::vhost::config::MAX_QUEUES;
use layerpass_protocols::json;
use layerpass_protocols::v1::guest::MountRequest;

/// How long a guest may take to power off after its command ended.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Something worth telling the user while a run proceeds.
#[derive(Debug, Clone)]
pub enum RunNote {
    /// A step starts (or a download).
    Step(String),
    /// Conversion progress.
    Convert(ConvertEvent),
    /// The accelerator and why.
    Accel(String),
    /// A line of the guest agent's event log.
    EventLog(String),
}

/// Hears [`RunNote`]s from any thread.
pub type Notify<'a> = &'a (dyn Fn(RunNote) + Sync);

/// Runs `opts`: the command's output goes to `stdout`/`stderr` as it is produced; the
/// answer carries its exit status and the report.
pub fn run(
    opts: &RunOptions,
    notify: Notify<'_>,
    stdout: Box<dyn Write + Send>,
    stderr: Box<dyn Write + Send>,
) -> Result<RunReport, RunError> {
    let total = Instant::now();
    let mut timings = Timings::default();
    let interrupted = || {
        if opts.interrupted.load(Ordering::SeqCst) {
            Err(RunError::Interrupted)
        } else {
            Ok(())
        }
    };
    let qemu = require_tool(QEMU, "qemu-system-x86")?;
    let step = |s: &str| notify(RunNote::Step(s.to_owned()));
    let say = |s: &str| step(s);

    // Guest assets.
    let t = Instant::now();
    let cache = &opts.cache;
    let agent = guest::find_agent(opts.guest_agent.as_deref())?;
    let busybox = cache.busybox(&say)?;
    let kernel = match &opts.kernel {
        Some(k) => custom_kernel(k, opts.kernel_modules.as_deref())?,
        None => cache.cloud_kernel(&say)?,
    };
    let assets = GuestAssets::new(
        kernel,
        busybox.clone(),
        agent,
        opts.upper == UpperKind::EncryptedDisk,
    )?;
    let base_initrd = assets.base_initrd(cache, &say)?;
    timings.assets_ms = ms(t.elapsed());
    interrupted()?;

    // The image and its layers.
    let image_path = match &opts.image {
        Some(p) => p.clone(),
        None => sample_image(cache, &busybox, &say)?,
    };
    let platform = opts
        .platform
        .as_deref()
        .map(|p| {
            p.parse::<Platform>()
                .map_err(|e| RunError::BadOption(format!("--platform {p}: {e}")))
        })
        .transpose()?;
    let image = open_image(&image_path, platform.as_ref())?;
    let runtime = image_runtime(&read_config(&image)?)?;
    let process = process_spec(
        &runtime,
        &opts.command,
        &opts.env,
        opts.user.as_deref(),
        opts.workdir.as_deref(),
    )?;
    // A running daemon converts into its own cache (as part of the export).
    let t = Instant::now();
    let converted = if opts.daemon.is_none() {
        step("converting the image's layers");
        let _lock = cache.lock("layers.lock")?;
        let mut o = ImageConvertOptions::new(
            OutputLayout::ContainerdCache,
            layer_cache_dir(cache.dir(), opts.layer_format),
        );
        o.platform = platform.clone();
        o.format = opts.layer_format;
        let progress = |e: ConvertEvent| notify(RunNote::Convert(e));
        Some(convert_image(&image_path, &o, &progress)?)
    } else {
        None
    };
    timings.convert_ms = ms(t.elapsed());
    interrupted()?;

    let tmp = tempfile::Builder::new()
        .prefix("layerpass-run-")
        .tempdir()
        .map_err(VmError::io("create", std::env::temp_dir()))?;

    let initdata = if opts.confidential {
        let t = Instant::now();
        step("computing reference values from the image's layer tars");
        let found = reference::from_image(
            &image_path,
            platform.as_ref(),
            opts.layer_format,
            tmp.path(),
        )?;
        timings.reference_values_ms = ms(t.elapsed());
        step(&format!(
            "reference values in initdata, digest {}",
            found.digest
        ));
        Some(found.document)
    } else {
        None
    };
    interrupted()?;

    // Export, with the daemon's own code.
    let t = Instant::now();
    step("exporting the layers");
    let unique = tmp
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (exported, response) = export(opts, cache, tmp.path(), &image_path, &unique)?;
    timings.export_ms = ms(t.elapsed());
    interrupted()?;

    // Accelerator.
    let t = Instant::now();
    let accel = choose_accel(opts.accel, &qemu, cache, &assets.kernel, &busybox)?;
    notify(RunNote::Accel(format!("{} ({})", accel.0.name(), accel.1)));
    timings.accel_ms = ms(t.elapsed());
    interrupted()?;

    // The initramfs of this run: the base image and the appended run files.
    let plan_pb = response
        .plan
        .clone()
        .into_option()
        .ok_or_else(|| RunError::Boot("the export answered no plan".into()))?;
    let plan_json =
        json::print_plan(&plan_pb).map_err(|e| RunError::Boot(format!("the plan: {e}")))?;
    let initrd = tmp.path().join("initrd");
    write_initrd(
        &base_initrd,
        &initrd,
        &plan_json,
        &process,
        initdata.as_deref(),
    )?;

    let queues = u16::try_from(opts.cpus.clamp(1, MAX_QUEUES as u32)).unwrap_or(1);
    let machine = Machine {
        kernel: assets.kernel.vmlinuz.clone(),
        initrd,
        append: format!("{DEFAULT_APPEND} quiet"),
        memory_mib: opts.memory_mib,
        cpus: opts.cpus,
        accel: accel.0,
    };
    let disks = Disks {
        sockets: response
            .disks
            .iter()
            .map(|d| PathBuf::from(&d.socket))
            .collect(),
        queues,
    };
    step("booting the VM");
    let mut vm = vm::boot(&qemu, &machine, &disks, tmp.path(), stdout, stderr)?;

    let mut exit: Option<(i32, Instant)> = None;
    let mut failure: Option<RunError> = None;
    let mut event_log = Vec::new();
    loop {
        interrupted()?;
        match vm.status.recv_timeout(Duration::from_millis(50)) {
            Ok(StatusMsg::Event(event)) => match event {
                StatusEvent::Ready { .. } => timings.boot_ms = ms(vm.started.elapsed()),
                StatusEvent::Mounted { mount_ms, .. } => timings.mount_ms = mount_ms,
                StatusEvent::EventLog { line } => {
                    notify(RunNote::EventLog(line.clone()));
                    event_log.push(line);
                }
                StatusEvent::Failed {
                    stage,
                    kind,
                    message,
                } => {
                    failure.get_or_insert(RunError::Guest {
                        stage: stage.name().to_owned(),
                        kind,
                        message,
                    });
                }
                StatusEvent::Exited { code, run_ms } => {
                    timings.command_ms = run_ms;
                    exit = Some((code, Instant::now()));
                }
            },
            Ok(StatusMsg::Bad(e)) => {
                failure.get_or_insert(RunError::Boot(e));
            }
            Ok(StatusMsg::Closed) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(t) = exit.map(|e| e.1)
                    && t.elapsed() > SHUTDOWN_TIMEOUT
                {
                    tracing::warn!("the guest did not power off after its command: killing it");
                    break;
                }
            }
        }
    }
    if vm.process.wait_timeout(SHUTDOWN_TIMEOUT)?.is_none() {
        vm.process.kill();
    }
    vm.drain_output(Duration::from_secs(2));
    if let Some((_, t)) = exit {
        timings.shutdown_ms = ms(t.elapsed());
    }
    let console = vm.process.console();
    drop(vm);
    drop(exported);
    drop(tmp);
    timings.total_ms = ms(total.elapsed());

    let Some((code, _)) = exit else {
        if let Some(f) = failure {
            return Err(f);
        }
        if let Some(missing) = console
            .lines()
            .find_map(|l| l.trim().strip_prefix("LAYERPASS-KERNEL-MISSING:"))
        {
            return Err(RunError::Kernel(format!(
                "the guest kernel {} lacks{missing} (built in or as modules)",
                assets.kernel.release
            )));
        }
        let tail: Vec<&str> = console.lines().rev().take(25).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(RunError::Boot(format!(
            "the VM stopped before the command ended; its console ended with:\n{}",
            tail.join("\n")
        )));
    };
    Ok(RunReport {
        exit_code: code,
        accel: accel.0.name().to_owned(),
        image: opts.image.as_ref().map_or_else(
            || "embedded sample image".to_owned(),
            |p| p.display().to_string(),
        ),
        mode: match opts.mode {
            ExportMode::PerLayer => "per-layer",
            ExportMode::Composite => "composite",
        }
        .to_owned(),
        upper: opts.upper.name().to_owned(),
        confidential: opts.confidential,
        kernel: assets.kernel.release.clone(),
        timings,
        layers: match &converted {
            Some(c) => layer_reports(c),
            None => plan_layers(&image, &plan_layers_of(&plan_pb)),
        },
        event_log,
    })
}

/// The layers as a running daemon planned them: root hashes from the plan, the rest from
/// the image (sizes and sharing are the daemon's and not known here).
fn plan_layers(image: &Image, planned: &[(String, String)]) -> Vec<LayerReport> {
    image
        .layers
        .iter()
        .rev()
        .map(|l| {
            let diff_id = l.diff_id.to_string();
            let root_hash = planned
                .iter()
                .find(|(d, _)| *d == diff_id)
                .map(|(_, r)| r.clone())
                .unwrap_or_default();
            LayerReport {
                digest: l.digest.to_string(),
                diff_id,
                root_hash,
                size: None,
                shared: None,
            }
        })
        .collect()
}

/// `(digest, root hash hex)` of each planned layer.
fn plan_layers_of(plan: &MountRequest) -> Vec<(String, String)> {
    plan.layers
        .iter()
        .map(|l| {
            let root = l
                .verity
                .as_ref()
                .map(|v| hex::encode(&v.root_hash))
                .unwrap_or_default();
            (l.digest.clone(), root)
        })
        .collect()
}

fn layer_reports(converted: &ImageConvertReport) -> Vec<LayerReport> {
    converted
        .layers
        .iter()
        .rev()
        .map(|l| LayerReport {
            digest: l.digest.to_string(),
            diff_id: l.diff_id.to_string(),
            root_hash: l.root_hash.to_string(),
            size: Some(l.size),
            shared: Some(l.skipped()),
        })
        .collect()
}

/// A kernel given with `--kernel` (and its modules with `--kernel-modules`).
fn custom_kernel(vmlinuz: &Path, modules: Option<&Path>) -> Result<Kernel, RunError> {
    if !vmlinuz.is_file() {
        return Err(RunError::BadOption(format!(
            "--kernel {}: no such file",
            vmlinuz.display()
        )));
    }
    let release = match modules {
        Some(m) => {
            if !m.join("modules.dep").is_file() {
                return Err(RunError::BadOption(format!(
                    "--kernel-modules {}: no modules.dep (run depmod -b for it)",
                    m.display()
                )));
            }
            m.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        }
        None => vmlinuz.display().to_string(),
    };
    Ok(Kernel {
        package: String::new(),
        release,
        vmlinuz: vmlinuz.to_owned(),
        modules_dir: modules.map(Path::to_owned),
    })
}

/// The embedded sample image, built from busybox-static on first use.
fn sample_image(
    cache: &AssetCache,
    busybox: &Path,
    say: &(dyn Fn(&str) + Sync),
) -> Result<PathBuf, RunError> {
    let bytes = fs::read(busybox).map_err(VmError::io("read", busybox))?;
    let key = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(&bytes)[..8]);
    let dir = cache.dir().join("images").join(format!("sample-{key}"));
    if dir.join("index.json").is_file() {
        return Ok(dir);
    }
    let _lock = cache.lock("images.lock")?;
    if !dir.join("index.json").is_file() {
        say("assembling the embedded sample image");
        write_sample_image(busybox, &dir)?;
    }
    Ok(dir)
}

fn choose_accel(
    choice: AccelChoice,
    qemu: &Path,
    cache: &AssetCache,
    kernel: &Kernel,
    busybox: &Path,
) -> Result<(Accel, String), RunError> {
    match choice {
        AccelChoice::Tcg => Ok((Accel::Tcg, "--accel tcg".into())),
        AccelChoice::Kvm => {
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .map_err(|e| RunError::BadOption(format!("--accel kvm: /dev/kvm: {e}")))?;
            Ok((Accel::Kvm, "--accel kvm".into()))
        }
        AccelChoice::Auto => Ok(accel::detect(qemu, cache, kernel, busybox)?),
    }
}

/// `base` followed by the run's own cpio: the plan, the process, the agent's arguments
/// and, in confidential mode, the initdata document holding the reference values.
fn write_initrd(
    base: &Path,
    out: &Path,
    plan_json: &str,
    process: &ProcessSpec,
    initdata: Option<&str>,
) -> Result<(), RunError> {
    let process_json = serde_json::to_vec(process)
        .map_err(|e| RunError::Boot(format!("the process spec: {e}")))?;
    let mut args = format!(
        "--plan {dir}/plan.json --process {dir}/process.json --status-port {} --stdout-port {} --stderr-port {}",
        super::status::STATUS_PORT,
        super::status::STDOUT_PORT,
        super::status::STDERR_PORT,
        dir = guest::RUN_FILES,
    );
    let mut files = vec![
        ("plan.json", plan_json.as_bytes().to_vec()),
        ("process.json", process_json),
    ];
    if let Some(doc) = initdata {
        files.push(("initdata.toml", doc.as_bytes().to_vec()));
        args.push_str(&format!(
            " --confidential --initdata {}/initdata.toml",
            guest::RUN_FILES
        ));
    } else {
        args.push_str(" --require-verity");
    }
    // The run VM has neither a TPM nor an attestation agent: the layers are recorded in
    // the JSON-lines event log only (streamed to the host as `eventlog` lines), which a
    // confidential agent accepts only when asked for explicitly.
    args.push_str(" --measure log");
    args.push('\n');
    files.push(("agent-args", args.into_bytes()));
    let appendix = guest::appendix(&files)?;
    let copied = fs::copy(base, out).map_err(VmError::io("copy the initramfs to", out))?;
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(out)
        .map_err(VmError::io("open", out))?;
    // The kernel looks for the next archive's magic at a 4-byte aligned offset and skips
    // zero bytes before it.
    let pad = usize::try_from((4 - copied % 4) % 4).unwrap_or(0);
    f.write_all(&[0_u8; 3][..pad])
        .and_then(|()| f.write_all(&appendix))
        .and_then(|()| f.flush())
        .map_err(VmError::io("append to", out))?;
    Ok(())
}
