//! `layerpass convert image`: arguments, the progress bar and the printed report of
//! [`layerpass::convert::convert_image`], which does the work (layouts, skipping layers
//! already converted, the diff ID check, publishing sidecar first).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use layerpass::convert::{
    ConvertEvent, ImageConvertOptions, ImageConvertReport, LayerConvertReport, LayerFormat,
    OutputLayout, convert_image,
};
use layerpass::image::{Platform, SourceFormat};
use serde::Serialize;

use super::super::progress::conversion_progress;
use super::super::{Outcome, emit};

/// Where layer blobs go in OUT_DIR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutKind {
    /// `sha256/<first 2 hex>/<hex>.erofs` + `.dmverity`: containerd 2.4's
    /// `layer_content_caches`.
    ContainerdCache,
    /// `<hex>.erofs` + `.dmverity`.
    Flat,
}

impl From<LayoutKind> for OutputLayout {
    fn from(k: LayoutKind) -> Self {
        match k {
            LayoutKind::ContainerdCache => Self::ContainerdCache,
            LayoutKind::Flat => Self::Flat,
        }
    }
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// An OCI image layout directory, a `docker save` tar, or an OCI layout tar.
    image: PathBuf,
    /// Directory the layer blobs are written to (created if missing).
    out_dir: PathBuf,
    /// Layout of OUT_DIR.
    #[arg(long, value_enum, default_value = "containerd-cache")]
    layout: LayoutKind,
    /// Platform of the image to convert, os/arch[/variant] (default linux/amd64).
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<Platform>,
    /// Build time in seconds since the epoch (default: SOURCE_DATE_EPOCH, else 0).
    #[arg(long, value_name = "SECONDS")]
    mkfs_time: Option<u64>,
    /// Print one JSON object with a `layers` array instead of text.
    #[arg(long)]
    json: bool,
    /// Zero-copy: each layer becomes an index layer (`<hex>.erofs` is EROFS metadata over
    /// the tar, with `.tree` and `.dmverity` beside it). A plain layer's tar is referenced
    /// where it is in the image (its blob file, or its member of the archive at its
    /// offset); a gzip or zstd layer is decompressed once into `<hex>.erofs.tar`. The
    /// image must stay where it is while its layers are used. See docs/tar-index.md.
    #[arg(long)]
    index: bool,
    #[command(flatten)]
    limits: super::LimitArgs,
}

/// One converted (or already present) layer, as printed.
#[derive(Debug, Serialize)]
struct LayerJson<'a> {
    index: usize,
    diff_id: String,
    /// Digest of the layer blob in the image (compressed).
    digest: String,
    media_type: &'a str,
    path: &'a Path,
    /// Bytes of the written blob (EROFS image + verity superblock area + tree); of an
    /// index layer, of its metadata.
    size: u64,
    root_hash: String,
    hash_offset: u64,
    /// True when the blob was already there and was not rewritten.
    skipped: bool,
    /// The layer as a layer file is named elsewhere: the blob, or `META+TAR[#OFFSET]`.
    spec: String,
    /// An index layer's tar: the file, where the tar starts in it, its length, and
    /// whether it is a decompressed copy in OUT_DIR (else the image's own bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    tar: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tar_offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tar_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tar_in_cache: Option<bool>,
    /// An index layer's dm-verity tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    tree: Option<&'a Path>,
}

#[derive(Debug, Serialize)]
struct ImageJson<'a> {
    image: &'a Path,
    format: SourceFormat,
    manifest: Option<String>,
    config: String,
    platform: Option<String>,
    layout: &'static str,
    /// `full` or `index`.
    layer_format: &'static str,
    layers: Vec<LayerJson<'a>>,
}

impl ImageArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let mkfs_time = match self.mkfs_time {
            Some(t) => Some(t),
            None => super::source_date_epoch()?,
        };
        let opts = ImageConvertOptions {
            platform: self.platform.clone(),
            mkfs_time,
            max_layer_bytes: self.limits.max_layer_bytes,
            max_entries: self.limits.max_entries,
            format: if self.index {
                LayerFormat::Index
            } else {
                LayerFormat::Full
            },
            ..ImageConvertOptions::new(self.layout.into(), &self.out_dir)
        };
        let bar = OnceLock::<ProgressBar>::new();
        let progress = |event: ConvertEvent| conversion_progress(&bar, event);
        let report = convert_image(&self.image, &opts, &progress);
        if let Some(b) = bar.get() {
            b.finish_and_clear();
        }
        self.print(&report?)?;
        Ok(Outcome::Success)
    }

    fn print(&self, report: &ImageConvertReport) -> anyhow::Result<()> {
        if self.json {
            let json = ImageJson {
                image: &self.image,
                format: report.format,
                manifest: report.manifest.as_ref().map(ToString::to_string),
                config: report.config.to_string(),
                platform: report.platform.as_ref().map(ToString::to_string),
                layout: report.layout.name(),
                layer_format: report.layer_format.name(),
                layers: report.layers.iter().map(layer_json).collect(),
            };
            return emit(&serde_json::to_string(&json)?);
        }
        let mut text = format!(
            "{} ({} layers, config {})",
            self.image.display(),
            report.layers.len(),
            report.config
        );
        for l in &report.layers {
            text.push_str(&format!(
                "\n  {} {}\n    {} bytes, root hash {}, hash offset {}{}",
                l.diff_id,
                l.spec(),
                l.size,
                l.root_hash,
                l.hash_offset,
                if l.skipped() {
                    " (already converted)"
                } else {
                    ""
                }
            ));
        }
        emit(&text)
    }
}

fn layer_json(l: &LayerConvertReport) -> LayerJson<'_> {
    LayerJson {
        index: l.index,
        diff_id: l.diff_id.to_string(),
        digest: l.digest.to_string(),
        media_type: &l.media_type,
        path: &l.path,
        size: l.size,
        root_hash: l.root_hash.to_hex(),
        hash_offset: l.hash_offset,
        skipped: l.skipped(),
        spec: l.spec(),
        tar: l.index_files.as_ref().map(|i| i.tar.path.as_path()),
        tar_offset: l.index_files.as_ref().map(|i| i.tar.offset),
        tar_bytes: l.index_files.as_ref().map(|i| i.tar_bytes),
        tar_in_cache: l.index_files.as_ref().map(|i| i.in_cache),
        tree: l.index_files.as_ref().map(|i| i.tree.as_path()),
    }
}
