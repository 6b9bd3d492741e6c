//! The test initramfs: the product's builder ([`layerpass::microvm::Initramfs`]) with the
//! test `/init`, its shell helpers and the test script.

use anyhow::Result;
pub use layerpass::microvm::Initramfs;

use super::assets::{self, Kernel};
use super::modules;

/// The default `/init`: mounts, loads `/etc/layerpass/modules`, runs `/test.sh` with
/// `set -e`, prints [`RESULT_MARKER`] `PASS` or `FAIL (exit N)`, then `poweroff -f`.
pub const DEFAULT_INIT: &str = include_str!("guest/init.sh");
/// Shell helpers sourced before `/test.sh`: `lp_wait`, `lp_port NAME`, `lp_disk SERIAL`.
pub const GUEST_LIB: &str = include_str!("guest/lib.sh");
/// Printed by the default init once the modules are loaded.
pub const BOOTED_MARKER: &str = "LAYERPASS-BOOTED";
/// Prefix of the default init's result line.
pub const RESULT_MARKER: &str = "LAYERPASS-RESULT: ";

/// The tests' additions to the initramfs builder.
pub trait TestImage {
    /// The usual test image: busybox-static with every applet linked in `/bin`, the
    /// [`modules::DEFAULT_MODULES`] closure of `kernel`, the default `/init` and helpers.
    /// Add the test script with [`TestImage::test_script`].
    fn standard(kernel: &Kernel) -> Result<Initramfs>;
    /// Sets `/test.sh`, run by the default init with `set -e`.
    fn test_script(&mut self, script: &str) -> &mut Initramfs;
}

impl TestImage for Initramfs {
    fn standard(kernel: &Kernel) -> Result<Initramfs> {
        let mut me = Self::empty();
        me.busybox(&assets::busybox()?)?;
        me.modules(&modules::resolve(kernel, modules::DEFAULT_MODULES)?);
        me.init(DEFAULT_INIT)
            .file("/etc/layerpass/lib.sh", GUEST_LIB.as_bytes(), 0o644);
        Ok(me)
    }

    fn test_script(&mut self, script: &str) -> &mut Initramfs {
        self.file("/test.sh", script.as_bytes(), 0o755)
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};

    use flate2::read::GzDecoder;

    use super::*;
    use crate::tools::require_tool;

    /// The real `cpio` reads what we write: names, types, modes, link targets, sizes.
    #[test]
    fn cpio_lists_the_image() {
        let Some(cpio) = require_tool("cpio", "cpio") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host.bin");
        fs::write(&host, b"from the host").unwrap();
        let mut image = Initramfs::empty();
        image
            .init("#!/bin/sh\n")
            .file("/etc/layerpass/lib.sh", GUEST_LIB.as_bytes(), 0o644)
            .file("/etc/deep/er/conf", b"x=1\n", 0o600)
            .host_file("/opt/host.bin", &host, 0o755)
            .symlink("/bin/sh", "busybox");
        let path = dir.path().join("initrd.gz");
        image.write(&path).unwrap();

        let mut raw = Vec::new();
        GzDecoder::new(File::open(&path).unwrap())
            .read_to_end(&mut raw)
            .unwrap();
        let mut child = Command::new(cpio)
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&raw).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8(out.stdout).unwrap();
        let line = |name: &str| {
            listing
                .lines()
                .find(|l| l.ends_with(name) || l.contains(&format!(" {name} -> ")))
                .unwrap_or_else(|| panic!("{name} missing from:\n{listing}"))
                .to_owned()
        };
        assert!(line("dev/console").starts_with("crw-------"));
        assert!(line("init").starts_with("-rwxr-xr-x"));
        assert!(line("etc/deep/er").starts_with("drwxr-xr-x"));
        assert!(line("etc/deep/er/conf").starts_with("-rw-------"));
        assert!(line("opt/host.bin").starts_with("-rwxr-xr-x"));
        assert!(line("opt/host.bin").contains(" 13 "), "size: {listing}");
        assert!(line("bin/sh").starts_with("lrwxrwxrwx"));
        assert!(line("bin/sh").ends_with("bin/sh -> busybox"));
        assert!(line("etc/layerpass/lib.sh").starts_with("-rw-r--r--"));
    }
}
