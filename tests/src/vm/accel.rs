//! Choosing the accelerator. `/dev/kvm` may exist and open while ordinary guest kernels
//! still fail under it (nested virtualisation), so KVM is used only after a probe guest
//! booted with it to userspace. The verdict is kept for the process and on disk in
//! `vm-assets/accel-verdict`, keyed by host kernel, QEMU version and guest kernel.
//! `LAYERPASS_VM_ACCEL=kvm|tcg` overrides the detection.

use std::fs::{self, OpenOptions};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::assets::{self, Kernel};
use super::initramfs::Initramfs;
use super::qemu::{QEMU, VmBuilder};
use crate::tools::run;

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation (`-accel kvm -cpu host`).
    Kvm,
    /// Emulation (`-accel tcg -cpu max`).
    Tcg,
}

impl Accel {
    /// The `-accel` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
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
const PROBE_TIMEOUT: Duration = Duration::from_secs(90);

/// The accelerator for VM tests: the override, else the cached verdict, else a probe.
pub fn detect() -> Result<Accel> {
    static DETECTED: OnceLock<Accel> = OnceLock::new();
    if let Some(a) = DETECTED.get() {
        return Ok(*a);
    }
    let accel = detect_uncached()?;
    Ok(*DETECTED.get_or_init(|| accel))
}

fn detect_uncached() -> Result<Accel> {
    match std::env::var("LAYERPASS_VM_ACCEL").as_deref() {
        Ok("kvm") => return Ok(Accel::Kvm),
        Ok("tcg") => return Ok(Accel::Tcg),
        Ok(other) => bail!("LAYERPASS_VM_ACCEL={other:?}: expected kvm or tcg"),
        Err(_) => {}
    }
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        eprintln!("vm: /dev/kvm unusable ({e}): using TCG");
        return Ok(Accel::Tcg);
    }
    let kernel = assets::cloud_kernel()?;
    let key = verdict_key(&kernel)?;
    let _lock = assets::lock_assets("accel.lock")?;
    let cache = assets::asset_dir().join("accel-verdict");
    if let Ok(text) = fs::read_to_string(&cache)
        && let Some((cached_key, verdict)) = text.trim_end().rsplit_once('\n')
        && cached_key == key
    {
        match verdict {
            "kvm" => return Ok(Accel::Kvm),
            "tcg" => return Ok(Accel::Tcg),
            _ => {}
        }
    }
    let verdict = probe_kvm(&kernel)?;
    fs::write(&cache, format!("{key}\n{}\n", verdict.name()))
        .with_context(|| format!("cannot write {}", cache.display()))?;
    Ok(verdict)
}

fn verdict_key(kernel: &Kernel) -> Result<String> {
    let host = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let out = run(Command::new(QEMU).arg("--version"))?;
    let qemu = String::from_utf8_lossy(&out.stdout);
    Ok(format!(
        "host={} qemu={} guest={}",
        host.trim(),
        qemu.lines().next().unwrap_or_default().trim(),
        kernel.release
    ))
}

/// Boots a tiny guest under KVM: KVM is usable if its init runs.
fn probe_kvm(kernel: &Kernel) -> Result<Accel> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let initrd = dir.path().join("probe.cpio.gz");
    let mut image = Initramfs::empty();
    image.busybox(&assets::busybox()?)?.init(&format!(
        "#!/bin/sh\necho {PROBE_MARKER}\n/bin/poweroff -f\n"
    ));
    image.write(&initrd)?;
    let mut vm = VmBuilder::new("kvm-probe", kernel, &initrd)
        .accel(Accel::Kvm)
        .memory_mib(256)
        .smp(1)
        .spawn()?;
    match vm.wait_for(PROBE_MARKER, PROBE_TIMEOUT) {
        Ok(()) => {
            eprintln!(
                "vm: KVM works ({:.1} s probe boot): using KVM",
                vm.elapsed().as_secs_f64()
            );
            Ok(Accel::Kvm)
        }
        Err(e) => {
            let console = vm.console();
            let tail: Vec<&str> = console.lines().rev().take(5).collect();
            eprintln!("vm: KVM probe failed ({e:#}; last lines: {tail:?}): using TCG");
            Ok(Accel::Tcg)
        }
    }
}
