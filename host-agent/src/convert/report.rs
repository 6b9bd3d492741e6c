//! What [`super::convert_image`] did, typed: the image and one report per layer.

use std::path::PathBuf;

use layerpass_types::{Digest, RootHash};

use super::layout::OutputLayout;
use super::options::LayerFormat;
use crate::export::index::IndexTar;
use crate::export::spec::LayerFileSpec;
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
    /// Full images or index layers.
    pub layer_format: LayerFormat,
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
    /// The blob: EROFS image, verity superblock area, hash tree; for an index layer its
    /// metadata (`META`).
    pub path: PathBuf,
    /// Its `.dmverity` sidecar.
    pub sidecar: PathBuf,
    /// Bytes of the blob (of an index layer: of its metadata).
    pub size: u64,
    pub root_hash: RootHash,
    /// Byte offset of the verity superblock (the end of the EROFS image); of an index
    /// layer, where its tree starts on the served disk (`[META][TAR]` padded to 4096).
    pub hash_offset: u64,
    /// For an index layer: the tar its metadata points into, and its tree.
    pub index_files: Option<IndexFiles>,
    pub outcome: LayerOutcome,
}

/// The files of an index layer besides its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFiles {
    /// The tar: the image's own blob file or archive at the layer's offset (a plain
    /// layer, nothing copied), or `META.tar` in the output directory (decompressed).
    pub tar: IndexTar,
    /// Bytes of the tar.
    pub tar_bytes: u64,
    /// Whether the tar is a decompressed copy in the output directory (`META.tar`).
    pub in_cache: bool,
    /// The dm-verity tree (`META.tree`).
    pub tree: PathBuf,
}

impl LayerConvertReport {
    /// True when the blob was already there and was not rewritten.
    pub fn skipped(&self) -> bool {
        self.outcome == LayerOutcome::Skipped
    }

    /// The layer as the command line names a layer file: the blob, or `META+TAR[#OFFSET]`
    /// for an index layer (its tree and sidecar are beside `META`).
    pub fn spec(&self) -> String {
        match &self.index_files {
            None => self.path.display().to_string(),
            Some(i) if i.tar.offset == 0 => {
                format!("{}+{}", self.path.display(), i.tar.path.display())
            }
            Some(i) => format!(
                "{}+{}#{}",
                self.path.display(),
                i.tar.path.display(),
                i.tar.offset
            ),
        }
    }

    /// The layer as [`LayerFileSpec`], with its diff ID: what the export side opens.
    pub fn file_spec(&self) -> LayerFileSpec {
        LayerFileSpec {
            blob: self.path.clone(),
            index: self.index_files.as_ref().map(|i| i.tar.clone()),
            tree: self.index_files.as_ref().map(|i| i.tree.clone()),
            digest: Some(self.diff_id.clone()),
            serial: None,
        }
    }
}
