//! Reproducible layer tars: entries sorted by path, owner 0:0 unless said otherwise, one
//! fixed mtime, fixed modes, no user or group names; gzip with header mtime 0.

use std::collections::BTreeMap;
use std::io::{self, Write};

use flate2::GzBuilder;
use sha2::{Digest as _, Sha256};

/// Modification time of every entry: 2024-01-01T00:00:00Z.
pub const MTIME: u64 = 1_704_067_200;

/// One tar entry.
#[derive(Debug, Clone)]
enum Entry {
    Dir {
        mode: u32,
        owner: u64,
    },
    File {
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        target: String,
    },
    /// A hard link to an earlier entry of the same tar.
    Hardlink {
        target: String,
    },
}

/// A layer under construction: paths (relative, no leading `/`) to entries.
#[derive(Debug, Default)]
pub struct LayerTar {
    entries: BTreeMap<String, Entry>,
}

/// A finished layer: the uncompressed tar's sha256 (the diff id) and the gzip blob.
#[derive(Debug, Clone)]
pub struct LayerBlob {
    pub diff_id: String,
    pub gzip: Vec<u8>,
}

impl LayerTar {
    /// A directory owned by root.
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.dir_owned(path, mode, 0)
    }

    /// A directory owned by `owner:owner`.
    pub fn dir_owned(&mut self, path: &str, mode: u32, owner: u64) -> &mut Self {
        self.put(path, Entry::Dir { mode, owner })
    }

    pub fn file(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) -> &mut Self {
        let data = data.into();
        self.put(path, Entry::File { mode, data })
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let target = target.to_owned();
        self.put(path, Entry::Symlink { target })
    }

    /// A hard link at `path` to `target` (a path of this tar that sorts before `path`).
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let target = target.to_owned();
        self.put(path, Entry::Hardlink { target })
    }

    fn put(&mut self, path: &str, entry: Entry) -> &mut Self {
        self.entries.insert(path.to_owned(), entry);
        self
    }

    /// The tar, entries in path order (a directory before what it holds).
    pub fn tar(&self) -> io::Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let mut h = tar::Header::new_ustar();
            h.set_mtime(MTIME);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(0);
            match entry {
                Entry::Dir { mode, owner } => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_uid(*owner);
                    h.set_gid(*owner);
                    b.append_data(&mut h, format!("{path}/"), io::empty())?;
                }
                Entry::File { mode, data } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, &data[..])?;
                }
                Entry::Symlink { target } => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    b.append_link(&mut h, path, target)?;
                }
                Entry::Hardlink { target } => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_mode(0o644);
                    b.append_link(&mut h, path, target)?;
                }
            }
        }
        b.into_inner()
    }

    /// The tar, its diff id and its gzip blob.
    pub fn finish(&self) -> io::Result<LayerBlob> {
        let tar = self.tar()?;
        let diff_id = sha256_digest(&tar);
        let mut gz = GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        gz.write_all(&tar)?;
        Ok(LayerBlob {
            diff_id,
            gzip: gz.finish()?,
        })
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
