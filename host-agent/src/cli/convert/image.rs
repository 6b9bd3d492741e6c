//! `layerpass convert image`: every layer of an image to an EROFS blob with dm-verity, in
//! containerd's `layer_content_caches` layout (`sha256/<xx>/<hex>.erofs` + `.dmverity`) or
//! flat (`<hex>.erofs`), keyed by the layer's diff id.
//!
//! Each layer is converted to a temporary name next to its final path; the blob is read
//! through a verifying reader (checked to the last byte even when the converter stops at
//! the tar's end marker) and the converter's diff id is compared with the config's. Only then
//! are the sidecar and the blob renamed into place, sidecar first, so that a reader never
//! sees a blob without its sidecar and an interrupted run leaves no half-made blob. A layer
//! whose blob and sidecar already exist, with the size the sidecar implies, is skipped.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use serde::Serialize;

use super::super::{Outcome, emit};
use crate::erofs::{ConvertOptions, convert_layer};
use crate::image::{Image, Layer, Platform, open_image};
use crate::progress::bytes_bar;
use crate::verity::{Geometry, Sidecar, VerityParams, sidecar_path};

/// Where layer blobs go in OUT_DIR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutKind {
    /// `sha256/<first 2 hex>/<hex>.erofs` + `.dmverity`: containerd 2.4's
    /// `layer_content_caches`.
    ContainerdCache,
    /// `<hex>.erofs` + `.dmverity`.
    Flat,
}

impl LayoutKind {
    /// The blob path for diff id hex `hex`.
    pub fn blob_path(self, out_dir: &Path, hex: &str) -> PathBuf {
        match self {
            Self::ContainerdCache => out_dir
                .join("sha256")
                .join(&hex[..2])
                .join(format!("{hex}.erofs")),
            Self::Flat => out_dir.join(format!("{hex}.erofs")),
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
}

/// One converted (or already present) layer, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub index: usize,
    pub diff_id: String,
    /// Digest of the layer blob in the image (compressed).
    pub digest: String,
    pub media_type: String,
    pub path: PathBuf,
    /// Bytes of the written blob (EROFS image + verity superblock area + tree).
    pub size: u64,
    pub root_hash: String,
    pub hash_offset: u64,
    /// True when the blob was already there and was not rewritten.
    pub skipped: bool,
}

#[derive(Debug, Serialize)]
struct ImageReport<'a> {
    image: &'a Path,
    format: crate::image::SourceFormat,
    manifest: Option<String>,
    config: String,
    platform: Option<String>,
    layout: &'static str,
    layers: Vec<LayerReport>,
}

impl ImageArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let mkfs_time = match self.mkfs_time {
            Some(t) => Some(t),
            None => super::source_date_epoch()?,
        };
        let opts = ConvertOptions {
            no_verity: false,
            mkfs_time,
        };
        let image = open_image(&self.image, self.platform.as_ref())
            .with_context(|| format!("cannot read the image {}", self.image.display()))?;
        fs::create_dir_all(&self.out_dir)
            .with_context(|| format!("cannot create {}", self.out_dir.display()))?;
        let total: u64 = image.layers.iter().map(|l| l.size).sum();
        let bar = bytes_bar(total, "converting");
        let mut reports = Vec::with_capacity(image.layers.len());
        for layer in &image.layers {
            bar.set_message(format!("layer {}/{}", layer.index + 1, image.layers.len()));
            let report =
                convert_one(layer, self.layout, &self.out_dir, &opts, &bar).with_context(|| {
                    format!("cannot convert layer {} ({})", layer.index, layer.digest)
                })?;
            reports.push(report);
        }
        bar.finish_and_clear();
        self.print(&image, reports)?;
        Ok(Outcome::Success)
    }

    fn print(&self, image: &Image, layers: Vec<LayerReport>) -> anyhow::Result<()> {
        if self.json {
            let report = ImageReport {
                image: &self.image,
                format: image.format,
                manifest: image.manifest_digest.as_ref().map(ToString::to_string),
                config: image.config_digest.to_string(),
                platform: image.platform.as_ref().map(ToString::to_string),
                layout: match self.layout {
                    LayoutKind::ContainerdCache => "containerd-cache",
                    LayoutKind::Flat => "flat",
                },
                layers,
            };
            return emit(&serde_json::to_string(&report)?);
        }
        let mut text = format!(
            "{} ({} layers, config {})",
            self.image.display(),
            layers.len(),
            image.config_digest
        );
        for l in &layers {
            text.push_str(&format!(
                "\n  {} {}\n    {} bytes, root hash {}, hash offset {}{}",
                l.diff_id,
                l.path.display(),
                l.size,
                l.root_hash,
                l.hash_offset,
                if l.skipped {
                    " (already converted)"
                } else {
                    ""
                }
            ));
        }
        emit(&text)
    }
}

/// Converts one layer, or reports the blob already in place.
fn convert_one(
    layer: &Layer,
    layout: LayoutKind,
    out_dir: &Path,
    opts: &ConvertOptions,
    bar: &ProgressBar,
) -> anyhow::Result<LayerReport> {
    let span = tracing::info_span!("layer", index = layer.index, diff_id = %layer.diff_id);
    let _enter = span.enter();
    let path = layout.blob_path(out_dir, layer.diff_id.hex());
    let report = |size: u64, root_hash: String, hash_offset: u64, skipped: bool| LayerReport {
        index: layer.index,
        diff_id: layer.diff_id.to_string(),
        digest: layer.digest.to_string(),
        media_type: layer.media_type.clone(),
        path: path.clone(),
        size,
        root_hash,
        hash_offset,
        skipped,
    };
    if let Some((sidecar, size)) = already_converted(&path) {
        tracing::info!(path = %path.display(), "already converted; skipped");
        bar.inc(layer.size);
        return Ok(report(size, sidecar.roothash, sidecar.hashoffset, true));
    }
    let dir = path.parent().unwrap_or(out_dir);
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.erofs.partial", layer.diff_id.hex()));
    let tmp_sidecar = sidecar_path(&tmp);
    let result = convert_to(layer, &tmp, opts, bar);
    let (root_hash, hash_offset, size) = match result {
        Ok(r) => r,
        Err(e) => {
            remove_if_present(&tmp);
            remove_if_present(&tmp_sidecar);
            return Err(e);
        }
    };
    let side = sidecar_path(&path);
    fs::rename(&tmp_sidecar, &side).with_context(|| {
        format!(
            "cannot rename {} to {}",
            tmp_sidecar.display(),
            side.display()
        )
    })?;
    fs::rename(&tmp, &path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    if let Ok(d) = fs::File::open(dir) {
        d.sync_all()
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    Ok(report(size, root_hash, hash_offset, false))
}

/// Converts `layer` into `tmp` (and its sidecar), checking the blob and the diff id.
fn convert_to(
    layer: &Layer,
    tmp: &Path,
    opts: &ConvertOptions,
    bar: &ProgressBar,
) -> anyhow::Result<(String, u64, u64)> {
    let mut reader = layer.open()?;
    let converted = {
        let counting = Counting {
            inner: &mut reader,
            bar,
        };
        convert_layer(counting, tmp, opts)
    };
    let report = match converted {
        Ok(r) => r,
        Err(e) => {
            // A corrupted blob often shows up first as a decompression or tar error; name the
            // blob when that is the cause.
            reader.finish()?;
            return Err(e.into());
        }
    };
    reader.finish()?;
    if report.diff_id != layer.diff_id.as_str() {
        bail!(
            "the layer's tar has diff id {}, but the image config says {}",
            report.diff_id,
            layer.diff_id
        );
    }
    match (report.root_hash, report.hash_offset) {
        (Some(root), Some(offset)) => Ok((root, offset, report.blob_size)),
        _ => bail!(
            "the converter wrote no dm-verity tree for {}",
            tmp.display()
        ),
    }
}

/// The sidecar and blob size of a layer already in place: the sidecar parses and the blob
/// has exactly the size its hash offset implies (image, 4096-byte superblock area, tree).
fn already_converted(path: &Path) -> Option<(Sidecar, u64)> {
    let side = sidecar_path(path);
    if !side.is_file() {
        return None;
    }
    let sidecar = match Sidecar::read(&side) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable sidecar; converting again");
            return None;
        }
    };
    let size = fs::metadata(path).ok().filter(fs::Metadata::is_file)?.len();
    let expected = expected_blob_size(sidecar.hashoffset)?;
    if size != expected {
        tracing::warn!(path = %path.display(), size, expected, "blob has the wrong size; converting again");
        return None;
    }
    Some((sidecar, size))
}

/// Size of a containerd-layout blob whose verity superblock is at `hash_offset`.
fn expected_blob_size(hash_offset: u64) -> Option<u64> {
    let params = VerityParams::containerd();
    let block = u64::from(params.hash_block_size);
    if hash_offset == 0 || !hash_offset.is_multiple_of(block) {
        return None;
    }
    let geometry = Geometry::new(&params, hash_offset / block).ok()?;
    hash_offset
        .checked_add(block)?
        .checked_add(geometry.tree_bytes())
}

fn remove_if_present(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a partial output");
    }
}

/// Counts compressed bytes read, for the progress bar.
struct Counting<'a, R> {
    inner: R,
    bar: &'a ProgressBar,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}
