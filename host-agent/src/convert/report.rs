//! What [`super::convert_image`] did, typed: the image and one report per layer.

use std::path::PathBuf;

use layerpass_types::{Digest, RootHash};

use super::layout::OutputLayout;
use crate::image::{Platform, SourceFormat};

/// The image converted and its layers, bottom first.
#[derive(Debug, Clone)]
pub struct ImageConvertReport {
    /// The directory or archive read.
    pub source: PathBuf,
    pub format: SourceFormat,
    /// The image manifest's digest; `None` for a `docker save` archive, which has none.
    pub manifest: Option<Digest>,
    pub config: Digest,
    /// The platform the image config names, if it names one.
    pub platform: Option<Platform>,
    pub layout: OutputLayout,
    pub out_dir: PathBuf,
    pub layers: Vec<LayerConvertReport>,
}

/// Whether a layer's blob was written by this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerOutcome {
    /// Converted and published by this run.
    Converted,
    /// Already there (sidecar and blob of the right size), not rewritten.
    Skipped,
}

/// One layer's blob, converted or already present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerConvertReport {
    /// Position in the manifest, 0 = bottom.
    pub index: usize,
    /// sha256 of the uncompressed tar: the key of the blob.
    pub diff_id: Digest,
    /// Digest of the layer blob in the image (compressed, if it is).
    pub digest: Digest,
    pub media_type: String,
    /// The blob: EROFS image, verity superblock area, hash tree.
    pub path: PathBuf,
    /// Its `.dmverity` sidecar.
    pub sidecar: PathBuf,
    /// Bytes of the blob.
    pub size: u64,
    pub root_hash: RootHash,
    /// Byte offset of the verity superblock (the end of the EROFS image).
    pub hash_offset: u64,
    pub outcome: LayerOutcome,
}

impl LayerConvertReport {
    /// True when the blob was already there and was not rewritten.
    pub fn skipped(&self) -> bool {
        self.outcome == LayerOutcome::Skipped
    }
}
