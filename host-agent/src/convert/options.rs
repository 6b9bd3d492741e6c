//! What [`super::convert_image`] takes: where to write, and whom to tell how far it got.

use std::path::PathBuf;

use super::layout::OutputLayout;
use crate::erofs::{DEFAULT_MAX_ENTRIES, DEFAULT_MAX_LAYER_BYTES};
use crate::image::Platform;

/// How to convert an image.
#[derive(Debug, Clone)]
pub struct ImageConvertOptions {
    /// Layout of `out_dir`.
    pub layout: OutputLayout,
    /// Directory the blobs are written to (created if missing).
    pub out_dir: PathBuf,
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
    /// ([`DEFAULT_MAX_LAYER_BYTES`], [`DEFAULT_MAX_ENTRIES`]).
    pub fn new(layout: OutputLayout, out_dir: impl Into<PathBuf>) -> Self {
        Self {
            layout,
            out_dir: out_dir.into(),
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
