//! Choosing the accelerator for the tests: the product's probe
//! ([`layerpass::microvm::accel::detect`]) with its verdict cached in `vm-assets/`, kept
//! for the process. `LAYERPASS_VM_ACCEL=kvm|tcg` overrides the detection.

use std::sync::OnceLock;

use anyhow::{Result, bail};
pub use layerpass::microvm::Accel;

use super::assets;
use super::qemu::QEMU;
use crate::tools::find_tool;

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
    let Some(qemu) = find_tool(QEMU) else {
        bail!("{QEMU} not found (Debian package qemu-system-x86)");
    };
    let kernel = assets::cloud_kernel()?;
    let busybox = assets::busybox()?;
    let (accel, why) =
        layerpass::microvm::accel::detect(&qemu, &assets::cache(), &kernel, &busybox)?;
    eprintln!("vm: {}: {why}", accel.name());
    Ok(accel)
}
