//! `layerpass convert layer` (and, later, `convert image`).

use std::fs::File;
use std::io;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use layerpass::convert::CountingReader;
use layerpass::erofs::index::{IndexOptions, IndexReport, index_layer};
use layerpass::erofs::{
    ConvertOptions, ConvertReport, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_LAYER_BYTES, convert_layer,
};

mod image;

use super::progress::bytes_bar;
use super::{Outcome, emit};

#[derive(Debug, Subcommand)]
pub enum ConvertCommand {
    /// Convert one tar layer (plain, gzip or zstd; `-` reads stdin) into a reproducible
    /// EROFS image with containerd's dm-verity layout appended and OUT.dmverity written.
    /// With --index: write only EROFS metadata (OUT) pointing into the tar, the dm-verity
    /// tree (OUT.tree) and OUT.dmverity; the layer is then served as OUT+TAR.
    Layer(LayerArgs),
    /// Convert every layer of an image (OCI layout directory, docker save tar or OCI layout
    /// tar) into OUT_DIR, keyed by diff id: containerd's `layer_content_caches` layout
    /// (`sha256/XX/HEX.erofs` + `.dmverity`) or flat (`HEX.erofs`). Layers already there
    /// are skipped.
    Image(image::ImageArgs),
}

impl ConvertCommand {
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            Self::Layer(a) => a.run(),
            Self::Image(a) => a.run(),
        }
    }
}

#[derive(Debug, Args)]
pub struct LayerArgs {
    /// The layer tar (plain, gzip or zstd), or `-` for stdin.
    tar: PathBuf,
    /// The EROFS image to write.
    out: PathBuf,
    /// Write the EROFS image only: no hash tree, no sidecar.
    #[arg(long, conflicts_with = "index")]
    no_verity: bool,
    /// Zero-copy: write EROFS metadata (512-byte blocks) whose files point into TAR, which
    /// stays as it is, plus the dm-verity tree over [OUT][TAR] in OUT.tree and OUT.dmverity.
    /// A gzip or zstd TAR is decompressed once into OUT.tar, which becomes the tar. Needs
    /// Linux 6.1.113 or later in the guest; tars up to 2 TiB.
    #[arg(long)]
    index: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Build time in seconds since the epoch (default: SOURCE_DATE_EPOCH, else 0).
    #[arg(long, value_name = "SECONDS")]
    mkfs_time: Option<u64>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Limits that stop a hostile layer (a gzip bomb, millions of entries) with a clear error
/// and nothing written.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Most bytes of uncompressed tar in a layer (default 64 GiB); a larger layer, such
    /// as a gzip bomb, is refused.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LAYER_BYTES)]
    max_layer_bytes: u64,
    /// Most tar entries in a layer (default 10 million); the layer's tree is held in
    /// memory while it is converted.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_ENTRIES)]
    max_entries: u64,
}

impl LayerArgs {
    fn run(self) -> anyhow::Result<Outcome> {
        let mkfs_time = match self.mkfs_time {
            Some(t) => Some(t),
            None => source_date_epoch()?,
        };
        let opts = ConvertOptions {
            no_verity: self.no_verity,
            mkfs_time,
            max_layer_bytes: self.limits.max_layer_bytes,
            max_entries: self.limits.max_entries,
        };
        if self.index {
            return self.run_index(mkfs_time);
        }
        let report = if self.tar.as_os_str() == "-" {
            convert_layer(io::stdin(), &self.out, &opts)
        } else {
            let file = File::open(&self.tar)
                .with_context(|| format!("cannot open {}", self.tar.display()))?;
            let total = file.metadata().map_or(0, |m| m.len());
            let bar = bytes_bar(total, "converting");
            let reader = CountingReader::new(file, |n| bar.inc(n));
            let r = convert_layer(reader, &self.out, &opts);
            bar.finish_and_clear();
            r
        }
        .with_context(|| {
            format!(
                "cannot convert {} to {}",
                self.tar.display(),
                self.out.display()
            )
        })?;
        if self.json {
            emit(&serde_json::to_string(&report)?)?;
        } else {
            emit(&text(&report))?;
        }
        Ok(Outcome::Success)
    }
}

impl LayerArgs {
    fn run_index(self, mkfs_time: Option<u64>) -> anyhow::Result<Outcome> {
        if self.tar.as_os_str() == "-" {
            anyhow::bail!(
                "--index needs the layer as a file: its metadata points into the tar, which \
                 must stay where it is"
            );
        }
        let opts = IndexOptions {
            mkfs_time,
            max_layer_bytes: self.limits.max_layer_bytes,
            max_entries: self.limits.max_entries,
        };
        let report = index_layer(&self.tar, &self.out, &opts).with_context(|| {
            format!(
                "cannot index {} into {}",
                self.tar.display(),
                self.out.display()
            )
        })?;
        if self.json {
            emit(&serde_json::to_string(&report)?)?;
        } else {
            emit(&index_text(&report))?;
        }
        Ok(Outcome::Success)
    }
}

fn index_text(r: &IndexReport) -> String {
    format!(
        "{meta}+{tar}\n  metadata:      {mb} bytes\n  tar:           {tb} bytes ({c})\n  \
         tree:          {tree} ({trb} bytes)\n  root hash:     {root}\n  hash offset:   {off}\n  \
         bytes written: {w}",
        meta = r.meta.display(),
        tar = r.tar.display(),
        mb = r.meta_bytes,
        tb = r.tar_bytes,
        c = r.compression,
        tree = r.tree.display(),
        trb = r.tree_bytes,
        root = r.root_hash,
        off = r.hash_offset,
        w = r.bytes_written,
    )
}

fn source_date_epoch() -> anyhow::Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => {
            Ok(Some(v.trim().parse().with_context(|| {
                format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")
            })?))
        }
        _ => Ok(None),
    }
}

fn text(r: &ConvertReport) -> String {
    let mut s = format!(
        "{}\n  diff id:    {}\n  EROFS size: {} bytes\n  blob size:  {} bytes",
        r.path.display(),
        r.diff_id,
        r.erofs_size,
        r.blob_size
    );
    if let (Some(root), Some(off)) = (&r.root_hash, r.hash_offset) {
        s.push_str(&format!("\n  root hash:  {root}\n  hash offset: {off}"));
    }
    s
}
