//! The store on disk: its directories, the device nodes and the sockets' paths.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{CWD, FileType, Mode};
use tracing::{debug, info};

use super::name::validate_name;
use super::{DEVICES_DIR, KataStoreError, MAX_MINOR, SOCKETS_DIR, VHOST_USER_BLK_MAJOR};

/// A Kata vhost-user store rooted at a directory (Kata's `vhost_user_store_path`).
#[derive(Debug, Clone)]
pub struct KataStore {
    root: PathBuf,
}

/// A device node found under `block/devices/`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    path: PathBuf,
    major: u32,
    minor: u32,
}

/// Makes each probe file name unique within the process.
static PROBES: AtomicU64 = AtomicU64::new(0);

impl KataStore {
    /// Opens the store at `root`: creates `block/sockets/` and `block/devices/` if
    /// missing and proves both writable by creating and removing a probe file.
    pub fn open(root: &Path) -> Result<Self, KataStoreError> {
        let store = Self {
            root: root.to_owned(),
        };
        for dir in [store.sockets_dir(), store.devices_dir()] {
            std::fs::create_dir_all(&dir).map_err(|source| KataStoreError::NotWritable {
                path: dir.clone(),
                source,
            })?;
            probe(&dir)?;
        }
        debug!(root = %root.display(), "kata vhost-user store opened");
        Ok(store)
    }

    /// The store's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/block/sockets`.
    pub fn sockets_dir(&self) -> PathBuf {
        self.root.join(SOCKETS_DIR)
    }

    /// `<root>/block/devices`.
    pub fn devices_dir(&self) -> PathBuf {
        self.root.join(DEVICES_DIR)
    }

    /// Where the vhost-user socket of export `name` goes. `name` is not checked here:
    /// check it first with [`super::validate_name`] (or [`KataStore::make_node`]).
    pub fn socket_path(&self, name: &str) -> PathBuf {
        self.sockets_dir().join(name)
    }

    /// Where the device node of export `name` goes (unchecked, as [`Self::socket_path`]).
    pub fn device_path(&self, name: &str) -> PathBuf {
        self.devices_dir().join(name)
    }

    /// Creates the node `block/devices/<name>`, a block device `241:minor` with mode
    /// 0600. Anything already at that path, or another node with the same number, is an
    /// error.
    pub fn make_node(&self, name: &str, minor: u32) -> Result<PathBuf, KataStoreError> {
        validate_name(name)?;
        if minor > MAX_MINOR {
            return Err(KataStoreError::InvalidMinor {
                minor,
                max: MAX_MINOR,
            });
        }
        let path = self.device_path(name);
        if let Some(other) = self
            .nodes()?
            .into_iter()
            .find(|n| n.major == VHOST_USER_BLK_MAJOR && n.minor == minor)
        {
            return Err(KataStoreError::MinorInUse {
                major: VHOST_USER_BLK_MAJOR,
                minor,
                other: other.path,
            });
        }
        let dev = rustix::fs::makedev(VHOST_USER_BLK_MAJOR, minor);
        rustix::fs::mknodat(
            CWD,
            &path,
            FileType::BlockDevice,
            Mode::from_raw_mode(0o600),
            dev,
        )
        .map_err(|errno| match io::Error::from(errno) {
            e if e.kind() == io::ErrorKind::AlreadyExists => {
                KataStoreError::Exists { path: path.clone() }
            }
            source => KataStoreError::Io {
                op: "mknod",
                path: path.clone(),
                source,
            },
        })?;
        info!(node = %path.display(), major = VHOST_USER_BLK_MAJOR, minor, "kata device node created");
        Ok(path)
    }

    /// Removes the node and the socket of export `name`; either already gone is fine.
    pub fn remove(&self, name: &str) -> Result<(), KataStoreError> {
        validate_name(name)?;
        // The node first: from then on Kata no longer resolves the export.
        for path in [self.device_path(name), self.socket_path(name)] {
            match std::fs::remove_file(&path) {
                Ok(()) => debug!(path = %path.display(), "removed"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(KataStoreError::Io {
                        op: "remove",
                        path,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// The minors of the major-241 device nodes under `block/devices/` (following
    /// symlinks, as Kata does). Character devices 241:N count too: Kata matches the
    /// device number whatever the file type.
    pub fn minors_in_use(&self) -> Result<BTreeSet<u32>, KataStoreError> {
        Ok(self
            .nodes()?
            .into_iter()
            .filter(|n| n.major == VHOST_USER_BLK_MAJOR)
            .map(|n| n.minor)
            .collect())
    }

    /// The socket Kata's Go runtime resolves for device `major:minor`, found the way
    /// Kata finds it (see the module docs), with errors where Kata fails.
    pub fn resolve(&self, major: u32, minor: u32) -> Result<PathBuf, KataStoreError> {
        super::resolve::resolve(&self.devices_dir(), &self.sockets_dir(), major, minor)
    }

    /// The block and character device nodes under `block/devices/`. Entries that vanish
    /// while being listed (or dangling symlinks) are skipped.
    fn nodes(&self) -> Result<Vec<Node>, KataStoreError> {
        let dir = self.devices_dir();
        let io_err = |op, path: &Path| {
            let path = path.to_owned();
            move |source| KataStoreError::Io { op, path, source }
        };
        let mut nodes = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let path = entry.map_err(io_err("read directory", &dir))?.path();
            let meta = match std::fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(io_err("stat", &path)(source)),
            };
            let file_type = meta.file_type();
            if file_type.is_block_device() || file_type.is_char_device() {
                nodes.push(Node {
                    major: rustix::fs::major(meta.rdev()),
                    minor: rustix::fs::minor(meta.rdev()),
                    path,
                });
            }
        }
        Ok(nodes)
    }
}

/// Creates and removes a file in `dir`.
fn probe(dir: &Path) -> Result<(), KataStoreError> {
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".layerpass-probe-{}-{n}", std::process::id()));
    let not_writable = |source| KataStoreError::NotWritable {
        path: dir.to_owned(),
        source,
    };
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(not_writable)?;
    std::fs::remove_file(&path).map_err(not_writable)
}
