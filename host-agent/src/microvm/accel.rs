//! Choosing the accelerator. `/dev/kvm` may exist and open while ordinary guest kernels
//! still fail under it (nested virtualisation), so KVM is used only after a probe guest
//! booted with it to userspace. The verdict is kept in `<cache>/accel-verdict`, keyed by
//! host kernel, QEMU version and guest kernel, so the probe runs once per combination.

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::assets::{AssetCache, Kernel};
use super::error::VmError;
use super::initramfs::Initramfs;
use super::process::VmProcess;
use super::qemu::{DEFAULT_APPEND, Machine};
use super::tool::run;

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation (`-accel kvm -cpu host`).
    Kvm,
    /// Emulation (`-accel tcg,thread=single -cpu max`).
    Tcg,
}

impl Accel {
    /// The accelerator's name (`kvm`, `tcg`): what `--accel` takes, what the verdict cache
    /// and `run --json` record.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }

    /// The `-accel` value QEMU is started with.
    ///
    /// TCG runs single-threaded: every vCPU of a guest on one host thread, taken in turn.
    /// Multi-threaded TCG (QEMU's default on x86 hosts) raced in 2-vCPU guests of
    /// QEMU 10.0.2: a Debian 6.12 kernel hung at boot with its second vCPU's timer
    /// interrupt lost (RCU stall, no progress for 600 s), and in 1 boot of 72 (four
    /// guests on two host cores) oopsed on an `int3` left by the other vCPU's live code
    /// patching. Single-threaded TCG booted 160 of 160 there, and sooner (docs/testing.md,
    /// "TCG: single-threaded"). Emulated guests are for hosts without usable KVM, where
    /// correctness matters more than a second host thread.
    pub fn qemu_arg(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg,thread=single",
        }
    }

    /// The `-cpu` value that goes with it.
    pub fn cpu(self) -> &'static str {
        match self {
            Self::Kvm => "host",
            Self::Tcg => "max",
        }
    }
}

const PROBE_MARKER: &str = "LAYERPASS-KVM-PROBE-OK";
/// A kernel that works under KVM reaches userspace in well under a second; one that does
/// not hangs or crawls. Generous for a loaded host, short enough for a first run.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// KVM if `/dev/kvm` opens and a probe guest of `kernel` boots under it to userspace
/// (verdict cached), else TCG. `why` is told the reason for TCG.
pub fn detect(
    qemu: &Path,
    cache: &AssetCache,
    kernel: &Kernel,
    busybox: &Path,
) -> Result<(Accel, String), VmError> {
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return Ok((Accel::Tcg, format!("/dev/kvm unusable ({e})")));
    }
    let key = verdict_key(qemu, kernel)?;
    let _lock = cache.lock("accel.lock")?;
    let path = cache.dir().join("accel-verdict");
    if let Ok(text) = fs::read_to_string(&path)
        && let Some((cached_key, verdict)) = text.trim_end().rsplit_once('\n')
        && cached_key == key
    {
        match verdict {
            "kvm" => return Ok((Accel::Kvm, "KVM probe passed (cached)".into())),
            "tcg" => return Ok((Accel::Tcg, "KVM probe failed (cached)".into())),
            _ => {}
        }
    }
    let (verdict, why) = probe_kvm(qemu, kernel, busybox)?;
    fs::write(&path, format!("{key}\n{}\n", verdict.name()))
        .map_err(VmError::io("write", &path))?;
    Ok((verdict, why))
}

fn verdict_key(qemu: &Path, kernel: &Kernel) -> Result<String, VmError> {
    let host = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let out = run(Command::new(qemu).arg("--version"))?;
    let version = String::from_utf8_lossy(&out.stdout);
    Ok(format!(
        "host={} qemu={} guest={}",
        host.trim(),
        version.lines().next().unwrap_or_default().trim(),
        kernel.release
    ))
}

/// Boots a tiny guest under KVM: KVM is usable if its init runs.
fn probe_kvm(qemu: &Path, kernel: &Kernel, busybox: &Path) -> Result<(Accel, String), VmError> {
    let dir = tempfile::tempdir().map_err(VmError::io("create", std::env::temp_dir()))?;
    let initrd = dir.path().join("probe.cpio.gz");
    let mut image = Initramfs::empty();
    image.busybox(busybox)?.init(&format!(
        "#!/bin/sh\necho {PROBE_MARKER}\n/bin/poweroff -f\n"
    ));
    image.write(&initrd)?;
    let machine = Machine {
        kernel: kernel.vmlinuz.clone(),
        initrd,
        append: DEFAULT_APPEND.to_owned(),
        memory_mib: 256,
        cpus: 1,
        accel: Accel::Kvm,
    };
    let vm = VmProcess::spawn(&mut machine.command(qemu))?;
    if vm.wait_for(PROBE_MARKER, PROBE_TIMEOUT) {
        Ok((Accel::Kvm, "KVM probe passed".into()))
    } else {
        Ok((
            Accel::Tcg,
            format!(
                "KVM probe failed: {}",
                vm.console_tail(3).replace('\n', " | ")
            ),
        ))
    }
}
