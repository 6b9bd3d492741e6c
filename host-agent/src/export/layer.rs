//! A read-only layer disk: the blob, zero-padded to 4096, optionally followed by a separate
//! hash tree file (itself padded), so that layers whose tree is not appended still reach the
//! guest as one self-contained device.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::DiskError;
use super::extent::{ExtentMap, ReadOnlyExtents, Source};
use super::serial_from;

/// Alignment of every part of a layer disk.
pub const LAYER_ALIGN: u64 = 4096;

/// One layer blob (and optional tree file) as a read-only disk.
#[derive(Debug)]
pub struct LayerDisk {
    map: ExtentMap,
    serial: Vec<u8>,
    blob: PathBuf,
    tree_offset: Option<u64>,
}

impl LayerDisk {
    /// Opens `blob` (and `tree`) read-only. `serial` defaults to the blob's file name.
    pub fn open(blob: &Path, tree: Option<&Path>, serial: Option<&str>) -> Result<Self, DiskError> {
        let mut map = ExtentMap::default();
        push_file(&mut map, blob)?;
        let tree_offset = match tree {
            Some(t) => {
                let at = map.size();
                push_file(&mut map, t)?;
                Some(at)
            }
            None => None,
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
        })
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
}
