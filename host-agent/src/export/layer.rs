//! A read-only layer disk: the blob, zero-padded to 4096, optionally followed by a separate
//! hash tree file (itself padded), so that layers whose tree is not appended still reach the
//! guest as one self-contained device. An index layer's disk is its metadata, the tar it
//! points into, zeros to 4096 and its tree ([`super::index`]).
//!
//! Logical block size: dm-verity refuses data or hash blocks smaller than the disk's
//! logical block, and a 512-byte-block EROFS cannot be mounted on a disk with larger
//! blocks. So a layer disk advertises `min(4096, data block size, hash block size)` of the
//! veritysetup superblock its tree starts with (at the sidecar's `hashoffset` for an
//! appended tree: containerd's tar-index blobs have 512/512), 4096 when there is none, and
//! an index layer always 512.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use layerpass_types::envelope::DEFAULT_LOGICAL_BLOCK_SIZE;

use super::error::DiskError;
use super::extent::{ExtentMap, ReadOnlyExtents, Source};
use super::index::{INDEX_BLOCK, IndexTar, check_index};
use super::serial_from;
use crate::plan::read_superblock_at;
use crate::verity::{Sidecar, sidecar_path};

/// Alignment of every part of a layer disk.
pub const LAYER_ALIGN: u64 = 4096;

/// One layer blob (and optional tree file) as a read-only disk.
#[derive(Debug)]
pub struct LayerDisk {
    map: ExtentMap,
    serial: Vec<u8>,
    blob: PathBuf,
    tree_offset: Option<u64>,
    block_size: u32,
}

impl LayerDisk {
    /// Opens `blob` (and `tree`) read-only. `serial` defaults to the blob's file name.
    pub fn open(blob: &Path, tree: Option<&Path>, serial: Option<&str>) -> Result<Self, DiskError> {
        Self::open_layer(blob, None, tree, serial)
    }

    /// Opens a layer: `blob`, or with `index` the index metadata `blob` followed by the tar
    /// it points into; then `tree` (for an index layer by default `<blob>.tree`, where
    /// `layerpass convert layer --index` writes it). `serial` defaults to the blob's file
    /// name.
    pub fn open_layer(
        blob: &Path,
        index: Option<&IndexTar>,
        tree: Option<&Path>,
        serial: Option<&str>,
    ) -> Result<Self, DiskError> {
        let mut map = ExtentMap::default();
        let (tree_offset, block_size) = match index {
            None => {
                push_file(&mut map, blob)?;
                let tree_offset = match tree {
                    Some(t) => {
                        let at = map.size();
                        push_file(&mut map, t)?;
                        Some(at)
                    }
                    None => None,
                };
                (tree_offset, verity_block_size(blob, tree)?)
            }
            Some(tar) => {
                let default_tree = index_tree_path(blob);
                let tree = tree.unwrap_or(&default_tree);
                let g = check_index(blob, tar)?;
                map.push(g.meta_len, file_source(blob, 0, g.meta_len)?);
                map.push(
                    g.data_len() - g.meta_len,
                    file_source(&tar.path, tar.offset, g.tar_len)?,
                );
                let at = map.size();
                push_file(&mut map, tree)?;
                // INDEX_BLOCK is 512.
                (Some(at), INDEX_BLOCK as u32)
            }
        };
        let default_serial = blob
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            map,
            serial: serial_from(serial.unwrap_or(&default_serial)),
            blob: blob.to_owned(),
            tree_offset,
            block_size,
        })
    }

    /// Lowers the logical block size to `size` when that is smaller (a layer whose verity
    /// parameters come from a sidecar the disk cannot find beside its blob). `size` must be
    /// a power of two from 512 to 4096; anything else is ignored.
    #[must_use]
    pub fn limit_block_size(mut self, size: Option<u32>) -> Self {
        if let Some(s) = size
            && s.is_power_of_two()
            && (512..=DEFAULT_LOGICAL_BLOCK_SIZE).contains(&s)
        {
            self.block_size = self.block_size.min(s);
        }
        self
    }

    /// Where the separate tree file starts on the disk, if there is one.
    pub fn tree_offset(&self) -> Option<u64> {
        self.tree_offset
    }

    /// The blob's path.
    pub fn blob(&self) -> &Path {
        &self.blob
    }

    /// The extents, for embedding this layer in a composite disk.
    pub fn extents(&self) -> &ExtentMap {
        &self.map
    }
}

/// `<meta>.tree`: where `layerpass convert layer --index` writes an index layer's tree.
pub fn index_tree_path(meta: &Path) -> PathBuf {
    let mut s = meta.as_os_str().to_owned();
    s.push(".tree");
    PathBuf::from(s)
}

/// The logical block size a layer's disk advertises: `min(4096, data block size, hash
/// block size)` of the veritysetup superblock at the start of `tree`, or (no tree) at the
/// `hashoffset` of the blob's sidecar; 4096 without either.
pub fn verity_block_size(blob: &Path, tree: Option<&Path>) -> Result<u32, DiskError> {
    let verity = |path: &Path| {
        let path = path.to_owned();
        move |source| DiskError::Verity { path, source }
    };
    let superblock = match tree {
        Some(t) => read_superblock_at(t, 0).map_err(verity(t))?,
        None => {
            let side = sidecar_path(blob);
            if !side.exists() {
                return Ok(DEFAULT_LOGICAL_BLOCK_SIZE);
            }
            let s = Sidecar::read(&side).map_err(verity(blob))?;
            read_superblock_at(blob, s.hashoffset).map_err(verity(blob))?
        }
    };
    Ok(superblock.map_or(DEFAULT_LOGICAL_BLOCK_SIZE, |sb| {
        DEFAULT_LOGICAL_BLOCK_SIZE
            .min(sb.params.data_block_size)
            .min(sb.params.hash_block_size)
    }))
}

/// `len` bytes of the regular file `path` from `offset`.
fn file_source(path: &Path, offset: u64, len: u64) -> Result<Source, DiskError> {
    let file = File::open(path).map_err(DiskError::io("open", path))?;
    Ok(Source::File {
        file: Arc::new(file),
        path: Arc::from(path),
        offset,
        len,
    })
}

/// Appends a file, padded with zeros to [`LAYER_ALIGN`].
pub(super) fn push_file(map: &mut ExtentMap, path: &Path) -> Result<(), DiskError> {
    let file = File::open(path).map_err(DiskError::io("open", path))?;
    let meta = file.metadata().map_err(DiskError::io("stat", path))?;
    if !meta.is_file() {
        return Err(DiskError::Invalid {
            what: path.display().to_string(),
            reason: "not a regular file".into(),
        });
    }
    let len = meta.len();
    if len == 0 {
        return Err(DiskError::Empty {
            path: path.to_owned(),
        });
    }
    let padded = len.div_ceil(LAYER_ALIGN) * LAYER_ALIGN;
    map.push(
        padded,
        Source::File {
            file: Arc::new(file),
            path: Arc::from(path),
            offset: 0,
            len,
        },
    );
    Ok(())
}

impl ReadOnlyExtents for LayerDisk {
    fn extent_map(&self) -> &ExtentMap {
        &self.map
    }

    fn serial_bytes(&self) -> &[u8] {
        &self.serial
    }

    fn block_size(&self) -> u32 {
        self.block_size
    }
}
