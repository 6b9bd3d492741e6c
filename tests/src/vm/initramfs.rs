//! The test initramfs: busybox-static with its applet links, kernel modules, an `/init`
//! (the default one or the test's own), the test script and any extra files, written as a
//! gzip-compressed newc cpio.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use flate2::Compression;
use flate2::write::GzEncoder;

use super::assets::{self, Kernel};
use super::cpio::{Kind, Writer};
use super::modules::{self, Module};

/// The default `/init`: mounts, loads `/etc/layerpass/modules`, runs `/test.sh` with
/// `set -e`, prints [`RESULT_MARKER`] `PASS` or `FAIL (exit N)`, then `poweroff -f`.
pub const DEFAULT_INIT: &str = include_str!("guest/init.sh");
/// Shell helpers sourced before `/test.sh`: `lp_wait`, `lp_port NAME`, `lp_disk SERIAL`.
pub const GUEST_LIB: &str = include_str!("guest/lib.sh");
/// Printed by the default init once the modules are loaded.
pub const BOOTED_MARKER: &str = "LAYERPASS-BOOTED";
/// Prefix of the default init's result line.
pub const RESULT_MARKER: &str = "LAYERPASS-RESULT: ";

#[derive(Debug, Clone)]
enum Node {
    Dir,
    Bytes(Vec<u8>, u32),
    Host(PathBuf, u32),
    Symlink(String),
    CharDev(u32, u32),
}

/// Builder for an initramfs image.
#[derive(Debug, Clone)]
pub struct Initramfs {
    nodes: BTreeMap<String, Node>,
    modules: Vec<String>,
}

impl Default for Initramfs {
    fn default() -> Self {
        Self::empty()
    }
}

impl Initramfs {
    /// An image with only `/dev/console` (the kernel opens it for init's stdio) and the
    /// standard directories.
    pub fn empty() -> Self {
        let mut me = Self {
            nodes: BTreeMap::new(),
            modules: Vec::new(),
        };
        for dir in [
            "bin", "dev", "etc", "lib", "proc", "sys", "tmp", "run", "mnt",
        ] {
            me.dir(dir);
        }
        me.nodes.insert("dev/console".into(), Node::CharDev(5, 1));
        me
    }

    /// The usual test image: busybox-static with every applet linked in `/bin`, the
    /// [`modules::DEFAULT_MODULES`] closure of `kernel`, the default `/init` and helpers.
    /// Add the test script with [`Initramfs::test_script`].
    pub fn standard(kernel: &Kernel) -> Result<Self> {
        let mut me = Self::empty();
        me.busybox(&assets::busybox()?)?;
        me.modules(&modules::resolve(kernel, modules::DEFAULT_MODULES)?);
        me.init(DEFAULT_INIT);
        Ok(me)
    }

    /// Adds `busybox` as `/bin/busybox` and links every applet to it.
    pub fn busybox(&mut self, busybox: &Path) -> Result<&mut Self> {
        for applet in assets::busybox_applets(busybox)? {
            self.symlink(&format!("/bin/{applet}"), "busybox");
        }
        self.host_file("/bin/busybox", busybox, 0o755);
        Ok(self)
    }

    /// Adds the modules as `/lib/modules/<name>.ko` and appends them, in order, to
    /// `/etc/layerpass/modules`, which the default init loads.
    pub fn modules(&mut self, modules: &[Module]) -> &mut Self {
        for m in modules {
            if !self.modules.contains(&m.name) {
                self.modules.push(m.name.clone());
                self.host_file(&modules::guest_path(&m.name), &m.path, 0o644);
            }
        }
        self
    }

    /// Sets `/init`.
    pub fn init(&mut self, script: &str) -> &mut Self {
        self.file("/init", script.as_bytes(), 0o755)
    }

    /// Sets `/test.sh`, run by the default init with `set -e`.
    pub fn test_script(&mut self, script: &str) -> &mut Self {
        self.file("/test.sh", script.as_bytes(), 0o755)
    }

    /// Adds a file with the given contents (parents are created).
    pub fn file(&mut self, guest: &str, data: &[u8], mode: u32) -> &mut Self {
        self.insert(guest, Node::Bytes(data.to_vec(), mode))
    }

    /// Adds a copy of the host file `host` (read when the image is written).
    pub fn host_file(&mut self, guest: &str, host: &Path, mode: u32) -> &mut Self {
        self.insert(guest, Node::Host(host.to_path_buf(), mode))
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, guest: &str, target: &str) -> &mut Self {
        self.insert(guest, Node::Symlink(target.to_owned()))
    }

    /// Adds a directory (parents are created).
    pub fn dir(&mut self, guest: &str) -> &mut Self {
        self.insert(guest, Node::Dir)
    }

    fn insert(&mut self, guest: &str, node: Node) -> &mut Self {
        let path = guest.trim_start_matches('/').to_owned();
        let mut parent = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .skip(1)
            .rev()
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.nodes.entry(parent.clone()).or_insert(Node::Dir);
        }
        self.nodes.insert(path, node);
        self
    }

    /// Writes the gzip-compressed cpio to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let gz = GzEncoder::new(BufWriter::new(file), Compression::fast());
        let mut cpio = Writer::new(gz);
        let mut all = self.clone();
        all.file(
            "/etc/layerpass/modules",
            format!("{}\n", all.modules.join("\n")).as_bytes(),
            0o644,
        )
        .file("/etc/layerpass/lib.sh", GUEST_LIB.as_bytes(), 0o644);
        let nodes = all.nodes;
        ensure!(nodes.contains_key("init"), "the initramfs has no /init");
        // BTreeMap order puts every directory before its children.
        for (name, node) in &nodes {
            let io = match node {
                Node::Dir => cpio.entry(name, Kind::Dir, 0o755, &[]),
                Node::Bytes(data, mode) => cpio.entry(name, Kind::File, *mode, data),
                Node::Host(host, mode) => {
                    let data = if host.to_string_lossy().contains(".ko") {
                        Module {
                            name: name.clone(),
                            path: host.clone(),
                        }
                        .contents()?
                    } else {
                        fs::read(host).with_context(|| format!("cannot read {}", host.display()))?
                    };
                    cpio.entry(name, Kind::File, *mode, &data)
                }
                Node::Symlink(target) => cpio.entry(name, Kind::Symlink, 0o777, target.as_bytes()),
                Node::CharDev(maj, min) => cpio.entry(name, Kind::CharDev(*maj, *min), 0o600, &[]),
            };
            io.with_context(|| format!("cannot write {name} into {}", path.display()))?;
        }
        cpio.finish()
            .and_then(GzEncoder::finish)
            .and_then(|mut w| std::io::Write::flush(&mut w))
            .with_context(|| format!("cannot finish {}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
