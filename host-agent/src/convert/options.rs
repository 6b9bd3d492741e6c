//! What [`super::convert_image`] takes: where to write, and whom to tell how far it got.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::layout::OutputLayout;
use crate::erofs::{DEFAULT_MAX_ENTRIES, DEFAULT_MAX_LAYER_BYTES};
use crate::image::Platform;

/// What a layer becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerFormat {
    /// A full EROFS image with its dm-verity tree appended (every file's data rewritten).
    #[default]
    Full,
    /// An index layer: EROFS metadata over the uncompressed tar, which stays where it is
    /// (a plain layer blob referenced in place; a gzip or zstd one decompressed once beside
    /// the metadata). See `docs/tar-index.md`.
    Index,
}

impl LayerFormat {
    /// The name the configuration and the reports use: `full` or `index`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Index => "index",
        }
    }
}

/// How to convert an image.
#[derive(Debug, Clone)]
pub struct ImageConvertOptions {
    /// Layout of `out_dir`.
    pub layout: OutputLayout,
    /// Directory the blobs are written to (created if missing).
    pub out_dir: PathBuf,
    /// Full EROFS images, or index layers over the tars.
    pub format: LayerFormat,
    /// Platform of the image to convert; linux/amd64 when `None`.
    pub platform: Option<Platform>,
    /// EROFS build time in seconds since the epoch; `None` means 0. The CLI fills it from
    /// `--mkfs-time` or `SOURCE_DATE_EPOCH`.
    pub mkfs_time: Option<u64>,
    /// Most bytes of uncompressed tar in one layer (`ConvertOptions::max_layer_bytes`).
    pub max_layer_bytes: u64,
    /// Most tar entries in one layer (`ConvertOptions::max_entries`).
    pub max_entries: u64,
}

impl ImageConvertOptions {
    /// Options for `layout` in `out_dir`: linux/amd64, build time 0, the default limits
    /// ([`DEFAULT_MAX_LAYER_BYTES`], [`DEFAULT_MAX_ENTRIES`]), full conversion.
    pub fn new(layout: OutputLayout, out_dir: impl Into<PathBuf>) -> Self {
        Self {
            layout,
            out_dir: out_dir.into(),
            format: LayerFormat::Full,
            platform: None,
            mkfs_time: None,
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// How far a conversion got, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConvertEvent {
    /// The image was read and checked: `layers` layers whose blobs add up to
    /// `total_bytes`.
    Started { layers: usize, total_bytes: u64 },
    /// Layer `index` (0 = bottom) of `layers` begins.
    Layer { index: usize, layers: usize },
    /// `bytes` more of the layer blobs were read (a skipped layer counts whole).
    Read { bytes: u64 },
}

/// Progress callback; called from the converting threads, hence `Sync`.
pub type Progress<'a> = &'a (dyn Fn(ConvertEvent) + Sync);
