//! The disks a fuzz run is served against, with what each holds, known without the backend.
//!
//! All live in one temporary directory (in `TMPDIR`), made once per harness:
//! - `layer`: [`BLOB_LEN`] bytes of [`BLOB_BYTE`], padded with zeros to 4096 (12 288 bytes);
//! - `layer-tree`: [`BLOB2_LEN`] bytes of [`BLOB2_BYTE`] then a separate tree file of
//!   [`TREE_LEN`] bytes of [`TREE_BYTE`], each padded to 4096 (12 288 bytes);
//! - `composite`: a GPT disk with 4096-byte blocks holding both layers as partitions 1 and 2;
//!   its bytes are read whole once, and checked to hold the layers where the partition
//!   table says;
//! - `scratch`: a writable sparse file of [`SCRATCH_LEN`] bytes, emptied (truncated to 0 and
//!   back) before every run that serves it, so every run starts from zeros.

use std::fs::{self, File, OpenOptions};
use std::sync::Arc;

use layerpass_types::Digest;
use tempfile::TempDir;
use vm_memory::VolatileSlice;

use super::HarnessError;
use super::layout::DiskKind;
use crate::export::composite::{CompositeDisk, CompositeLayer};
use crate::export::layer::{LAYER_ALIGN, LayerDisk};
use crate::export::scratch::ScratchDisk;
use crate::export::{Disk, DiskError};

/// Length of the layer blob of the `layer` disk (and of the composite disk's partition 1).
pub const BLOB_LEN: usize = 10_000;
/// The byte that blob is filled with.
pub const BLOB_BYTE: u8 = 0x5a;
/// Length of the blob of the `layer-tree` disk (partition 2 of the composite disk).
pub const BLOB2_LEN: usize = 5_000;
/// The byte that blob is filled with.
pub const BLOB2_BYTE: u8 = 0xa5;
/// Length of the separate tree file of the `layer-tree` disk.
pub const TREE_LEN: usize = 3_000;
/// The byte that tree file is filled with.
pub const TREE_BYTE: u8 = 0x3c;
/// Size of the scratch disk.
pub const SCRATCH_LEN: u64 = 0x10000;
/// The serial of every disk.
pub const SERIAL: &str = "fuzz";
/// Logical block size of the composite disk.
pub const COMPOSITE_LBA: u64 = 4096;

/// A disk and the bytes it holds at the start of a run.
#[derive(Debug)]
struct Known<D> {
    disk: Arc<D>,
    bytes: Arc<[u8]>,
}

impl<D: Disk + 'static> Known<D> {
    fn new(disk: D, bytes: Vec<u8>) -> Self {
        Self {
            disk: Arc::new(disk),
            bytes: bytes.into(),
        }
    }

    fn shared(&self) -> (Arc<dyn Disk>, Arc<[u8]>) {
        (self.disk.clone(), self.bytes.clone())
    }
}

/// Every disk of the harness.
#[derive(Debug)]
pub struct Disks {
    layer: Known<LayerDisk>,
    layer_tree: Known<LayerDisk>,
    composite: Known<CompositeDisk>,
    scratch: Known<ScratchDisk>,
    /// A second handle on the scratch file, to empty it.
    scratch_file: File,
    // Removed on drop, after the disks (fields drop in order).
    _dir: TempDir,
}

impl Disks {
    /// Writes the files and opens the disks.
    pub fn new() -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("layerpass-vq-fuzz-")
            .tempdir()
            .map_err(HarnessError::Files)?;
        let write = |name: &str, len: usize, byte: u8| {
            let path = dir.path().join(name);
            fs::write(&path, vec![byte; len]).map(|()| path)
        };
        let blob = write("layer", BLOB_LEN, BLOB_BYTE).map_err(HarnessError::Files)?;
        let blob2 = write("layer-tree", BLOB2_LEN, BLOB2_BYTE).map_err(HarnessError::Files)?;
        let tree = write("layer-tree.tree", TREE_LEN, TREE_BYTE).map_err(HarnessError::Files)?;
        let scratch_path = dir.path().join("scratch");
        let scratch_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&scratch_path)
            .and_then(|f| f.set_len(SCRATCH_LEN).map(|()| f))
            .map_err(HarnessError::Files)?;

        let layer_bytes = padded(&[(BLOB_LEN, BLOB_BYTE)]);
        let layer = LayerDisk::open(&blob, None, Some(SERIAL)).map_err(HarnessError::Disk)?;
        let layer2_bytes = padded(&[(BLOB2_LEN, BLOB2_BYTE), (TREE_LEN, TREE_BYTE)]);
        let layer2 =
            LayerDisk::open(&blob2, Some(&tree), Some(SERIAL)).map_err(HarnessError::Disk)?;
        let digest = |n: u8| Digest::sha256(&[n; 32]);
        let composite = CompositeDisk::build(
            &[
                CompositeLayer {
                    blob: blob.clone(),
                    index: None,
                    tree: None,
                    diff_id: Some(digest(1)),
                    root_hash: None,
                    block_size: None,
                },
                CompositeLayer {
                    blob: blob2.clone(),
                    index: None,
                    tree: Some(tree.clone()),
                    diff_id: Some(digest(2)),
                    root_hash: None,
                    block_size: None,
                },
            ],
            COMPOSITE_LBA,
            SERIAL,
        )
        .map_err(HarnessError::Disk)?;
        let composite_bytes = read_whole(&composite).map_err(HarnessError::Disk)?;
        for (p, want) in composite.layers().iter().zip([&layer_bytes, &layer2_bytes]) {
            let got = usize::try_from(p.offset)
                .ok()
                .and_then(|at| composite_bytes.get(at..at + want.len()));
            if got != Some(&want[..]) || p.size != want.len() as u64 {
                return Err(HarnessError::Setup(format!(
                    "composite partition {} does not hold its layer",
                    p.number
                )));
            }
        }
        let scratch = ScratchDisk::open_or_create(&scratch_path, None, Some(SERIAL))
            .map_err(HarnessError::Disk)?;
        Ok(Self {
            layer: Known::new(layer, layer_bytes),
            layer_tree: Known::new(layer2, layer2_bytes),
            composite: Known::new(composite, composite_bytes),
            scratch: Known::new(scratch, vec![0; SCRATCH_LEN as usize]),
            scratch_file,
            _dir: dir,
        })
    }

    /// The disk of `kind` and what it holds now; the scratch disk is emptied first.
    pub fn get(&self, kind: DiskKind) -> Result<(&dyn Disk, &[u8]), HarnessError> {
        Ok(match kind {
            DiskKind::Layer => (&*self.layer.disk, &self.layer.bytes),
            DiskKind::LayerWithTree => (&*self.layer_tree.disk, &self.layer_tree.bytes),
            DiskKind::Composite => (&*self.composite.disk, &self.composite.bytes),
            DiskKind::Scratch => {
                self.empty_scratch()?;
                (&*self.scratch.disk, &self.scratch.bytes)
            }
        })
    }

    /// The disk of `kind` and what it holds at the start of a run, as handles that outlive
    /// a run (for a long-lived engine); the caller empties the scratch disk between runs.
    pub fn shared(&self, kind: DiskKind) -> (Arc<dyn Disk>, Arc<[u8]>) {
        match kind {
            DiskKind::Layer => self.layer.shared(),
            DiskKind::LayerWithTree => self.layer_tree.shared(),
            DiskKind::Composite => self.composite.shared(),
            DiskKind::Scratch => self.scratch.shared(),
        }
    }

    /// Empties the scratch disk (truncated to 0 and back): it reads as zeros again.
    pub fn empty_scratch(&self) -> Result<(), HarnessError> {
        self.scratch_file
            .set_len(0)
            .and_then(|()| self.scratch_file.set_len(SCRATCH_LEN))
            .map_err(HarnessError::Files)
    }
}

/// Files of `(len, byte)` one after another, each padded with zeros to [`LAYER_ALIGN`].
fn padded(files: &[(usize, u8)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(len, byte) in files {
        out.extend(std::iter::repeat_n(byte, len));
        out.resize(out.len().next_multiple_of(LAYER_ALIGN as usize), 0);
    }
    out
}

/// The whole disk, read in one call into one buffer.
fn read_whole(disk: &dyn Disk) -> Result<Vec<u8>, DiskError> {
    let len = usize::try_from(disk.size()).map_err(|_| DiskError::Invalid {
        what: "fuzz disk".into(),
        reason: "larger than memory".into(),
    })?;
    let mut buf = vec![0u8; len];
    disk.read_at(0, &[VolatileSlice::from(&mut buf[..])])?;
    Ok(buf)
}
