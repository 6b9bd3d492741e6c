//! An initramfs: busybox-static with its applet links, kernel modules, an `/init` and any
//! other files, written as a gzip-compressed newc cpio; and the small uncompressed cpio
//! appended to one (the kernel unpacks concatenated archives in order, later files
//! replacing earlier ones).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::assets;
use super::cpio::{Kind, Writer};
use super::error::VmError;
use super::modules::{self, Module};

/// Where the initramfs lists the modules its init loads, in order.
pub const MODULES_LIST: &str = "/etc/layerpass/modules";

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

    /// Adds `busybox` as `/bin/busybox` and links every applet to it.
    pub fn busybox(&mut self, busybox: &Path) -> Result<&mut Self, VmError> {
        for applet in assets::busybox_applets(busybox)? {
            self.symlink(&format!("/bin/{applet}"), "busybox");
        }
        self.host_file("/bin/busybox", busybox, 0o755);
        Ok(self)
    }

    /// Adds the modules as `/lib/modules/<name>.ko` and appends them, in order, to
    /// [`MODULES_LIST`], which the init loads.
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

    /// Writes the gzip-compressed cpio to `path`. An image without `/init` is refused.
    pub fn write(&self, path: &Path) -> Result<(), VmError> {
        if !self.nodes.contains_key("init") {
            return Err(VmError::Asset(format!(
                "the initramfs {} has no /init",
                path.display()
            )));
        }
        let file = File::create(path).map_err(VmError::io("create", path))?;
        let gz = GzEncoder::new(BufWriter::new(file), Compression::fast());
        let out = self
            .write_cpio(gz, path)?
            .finish()
            .and_then(|mut w| std::io::Write::flush(&mut w));
        out.map_err(VmError::io("write", path))
    }

    /// The uncompressed cpio of these nodes only (no `/init` needed): what is appended to
    /// an initramfs.
    pub fn appendix(&self) -> Result<Vec<u8>, VmError> {
        self.write_cpio(Vec::new(), Path::new("the appended cpio"))
    }

    fn write_cpio<W: std::io::Write>(&self, out: W, path: &Path) -> Result<W, VmError> {
        let mut cpio = Writer::new(out);
        let mut all = self.clone();
        if !all.modules.is_empty() {
            all.file(
                MODULES_LIST,
                format!("{}\n", all.modules.join("\n")).as_bytes(),
                0o644,
            );
        }
        let nodes = all.nodes;
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
                        fs::read(host).map_err(VmError::io("read", host))?
                    };
                    cpio.entry(name, Kind::File, *mode, &data)
                }
                Node::Symlink(target) => cpio.entry(name, Kind::Symlink, 0o777, target.as_bytes()),
                Node::CharDev(maj, min) => cpio.entry(name, Kind::CharDev(*maj, *min), 0o600, &[]),
            };
            io.map_err(VmError::io("write an entry into", path.join(name)))?;
        }
        cpio.finish().map_err(VmError::io("finish", path))
    }
}
