//! Zero-copy layers: EROFS metadata over an uncompressed tar, whose file contents stay
//! where they are in the tar (`layerpass convert layer TAR OUT --index`).
//!
//! The layer is served as one disk `[OUT][TAR][zeros to 4096][OUT.tree]`:
//!
//! - `OUT`: the metadata alone, `M` bytes of 512-byte EROFS blocks (the tar's block size,
//!   so every file's content starts on a block). Regular files are chunk-based with 8-byte
//!   chunk indexes `{advise 0, device_id 0, blkaddr}` whose `blkaddr` is the absolute block
//!   on that one disk (`M / 512` + the content's block in the tar). No device table: Linux
//!   6.1 (≥ 6.1.113 for 512-byte blocks) mounts it, while `mkfs.erofs --tar=i`'s device
//!   table needs 6.4's flat device mapping. The superblock's `blocks` counts metadata and
//!   tar: `tar_len` rounded up to 512 = `blocks * 512 - M`.
//! - `OUT.tree`: the dm-verity tree over `[OUT][TAR][zeros to 4096]` in veritysetup's
//!   hash-file layout (superblock, then the tree): sha256, format 1, 512-byte data blocks
//!   (EROFS's blocks must not be smaller than the disk's), 4096-byte hash blocks, 32 zero
//!   bytes of salt. The tar's blocks are hashed while the tar is read (one pass).
//! - `OUT.dmverity`: containerd's sidecar, `hashoffset` = `M + tar_len` rounded up to 4096.
//!
//! The tar file is only read. A gzip or zstd layer is decompressed once, into `OUT.tar`,
//! which is then the tar. Everything is written under temporary names and renamed into
//! place when complete, the metadata last. See `docs/tar-index.md`.

mod contents;
mod inflate;
mod info;
mod source;
mod verity;

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

use super::data::DataWriter;
use super::error::ErofsError;
use super::format::{INDEX_BLOCK_BITS, SUPER_END};
use super::input::{self, Compression};
use super::layout::{self, Geometry};
use super::tarstream::TarStream;
use super::tree::Tree;
use super::{DEFAULT_MAX_ENTRIES, DEFAULT_MAX_LAYER_BYTES, tarread, write};
use crate::verity::LeafDigests;

pub use info::IndexInfo;
pub use verity::index_verity_params;

/// Largest tar an index addresses: 2 TiB, 2^32 blocks of 512 bytes (the metadata's blocks
/// come off that too; the exact check is on the sum).
pub const MAX_TAR_BYTES: u64 = 1 << 41;
/// The index's block size.
pub const INDEX_BLOCK_SIZE: u64 = 1 << INDEX_BLOCK_BITS;

/// How to index a layer.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Superblock build time (also the mtime of implicit directories); `None` means 0.
    pub mkfs_time: Option<u64>,
    /// Most bytes of uncompressed tar read (also capped at [`MAX_TAR_BYTES`]).
    pub max_layer_bytes: u64,
    /// Most tar entries.
    pub max_entries: u64,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            mkfs_time: None,
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// What [`index_layer`] wrote; the JSON form is `layerpass convert layer --index --json`.
#[derive(Debug, Clone, Serialize)]
pub struct IndexReport {
    /// The metadata (`OUT`).
    pub meta: PathBuf,
    /// The tar the metadata points into: the input, or `OUT.tar` for a compressed one.
    pub tar: PathBuf,
    pub tree: PathBuf,
    pub sidecar: PathBuf,
    /// `plain`, `gzip` or `zstd`: the input's compression.
    pub compression: &'static str,
    /// Bytes of the metadata (`M`, whole 512-byte blocks).
    pub meta_bytes: u64,
    /// Bytes of the tar.
    pub tar_bytes: u64,
    /// Bytes of the tree file (veritysetup superblock area and tree).
    pub tree_bytes: u64,
    pub root_hash: String,
    /// Byte offset of the tree on the served disk: `M + tar_bytes` rounded up to 4096.
    pub hash_offset: u64,
    /// 512-byte data blocks the tree covers: `hash_offset / 512`.
    pub data_blocks: u64,
    /// Bytes this conversion wrote: metadata, tree, sidecar and a decompressed tar.
    pub bytes_written: u64,
    pub entries: u64,
}

/// Indexes the layer at `input` (a plain tar, or gzip/zstd decompressed into `OUT.tar`)
/// into `out`, `out.tree` and `out.dmverity`. The input is never modified; on error
/// nothing is left at those paths.
pub fn index_layer(
    input_path: &Path,
    out: &Path,
    opts: &IndexOptions,
) -> Result<IndexReport, ErofsError> {
    let limit = opts.max_layer_bytes.min(MAX_TAR_BYTES);
    let file = File::open(input_path).map_err(ErofsError::io("open", input_path))?;
    let handle = file
        .try_clone()
        .map_err(ErofsError::io("open", input_path))?;
    let (compression, reader) = input::open(handle).map_err(ErofsError::Read)?;
    let plain = compression == Compression::None;
    let reader: Box<dyn std::io::Read + Send> = if plain {
        reader
    } else {
        Box::new(inflate::threaded(reader)?)
    };
    if plain {
        let len = file
            .metadata()
            .map_err(ErofsError::io("stat", input_path))?
            .len();
        if len > MAX_TAR_BYTES {
            return Err(ErofsError::TarTooLarge { bytes: len });
        }
        if len > limit {
            return Err(ErofsError::LayerTooLarge { limit });
        }
    }
    let data = if plain {
        TarData::InPlace(input_path)
    } else {
        TarData::Decompressed(compression)
    };
    index_tar(reader, data, out, opts)
}

/// What the uncompressed tar [`index_tar`] reads is, and so where the index's tar will be.
#[derive(Debug, Clone, Copy)]
pub enum TarData<'a> {
    /// The bytes of this file (from some offset the caller knows: a layer tar inside an
    /// archive), named as the tar in the report and never copied.
    InPlace(&'a Path),
    /// Decompressed from this compression: written to `OUT.tar` as it is read, which then
    /// is the tar.
    Decompressed(Compression),
}

/// Indexes the uncompressed tar read from `tar` (an image's layer through its verifying
/// reader, for instance) into `out`, `out.tree` and `out.dmverity`; `data` says whether
/// those bytes stay where they are or are copied into `OUT.tar`. On error nothing is left
/// at those paths. [`index_layer`] is this for a file.
pub fn index_tar<'a>(
    tar: impl Read + Send + 'a,
    data: TarData<'_>,
    out: &Path,
    opts: &IndexOptions,
) -> Result<IndexReport, ErofsError> {
    let span = tracing::info_span!("index_layer", out = %out.display());
    let _enter = span.enter();
    let dir = layerpass_fsutil::dir_of(out).to_owned();
    let limit = opts.max_layer_bytes.min(MAX_TAR_BYTES);
    let reader: Box<dyn Read + Send + 'a> = Box::new(tar);
    let (plain, compression) = match data {
        TarData::InPlace(_) => (true, Compression::None),
        TarData::Decompressed(c) => (false, c),
    };
    let tar_out = tar_path_for(out);
    let tar_tmp = if plain {
        None
    } else {
        Some(temp_in(&dir, ".tar.tmp")?)
    };
    let copy = match &tar_tmp {
        Some(t) => Some(source::Copy {
            file: t
                .as_file()
                .try_clone()
                .map_err(ErofsError::io("open", t.path()))?,
            path: t.path().to_owned(),
        }),
        None => None,
    };

    let meta_tmp = temp_in(&dir, ".erofs.tmp")?;
    let meta_path = meta_tmp.path().to_owned();
    let meta_file = meta_tmp
        .as_file()
        .try_clone()
        .map_err(ErofsError::io("open", &meta_path))?;
    let first = SUPER_END.div_ceil(INDEX_BLOCK_SIZE);
    let symlinks = DataWriter::with_blocks(meta_file, &meta_path, &dir, INDEX_BLOCK_SIZE, first)?;
    let leaves = LeafDigests::spilled(index_verity_params(), &dir)?;

    let source = source::TarSource::new(reader, leaves, limit, copy)?;
    let mut archive = TarStream::new(source);
    let mut tree = Tree::new(opts.mkfs_time.unwrap_or(0));
    let mut contents = contents::IndexContents { meta: symlinks };
    let read = tarread::read_entries(
        &mut archive,
        &mut tree,
        &mut contents,
        compression.name(),
        opts.max_entries,
    );
    let mut source = archive.into_inner();
    let stats = match read {
        Ok(s) => s,
        Err(e) => return Err(source.take_failure().unwrap_or(e)),
    };
    let (leaves, tar_bytes, _copy) = source.finish()?;

    // The metadata.
    let data_end = contents.meta.next_block();
    let (meta_file, tails) = contents.meta.finish()?;
    let tar_blocks = tar_bytes.div_ceil(INDEX_BLOCK_SIZE);
    let plan = layout::plan(&tree, data_end, Geometry::index(tar_blocks))?;
    let rest = write::write_rest(&meta_file, &meta_path, &tree, &plan, &tails, [0u8; 16])?;
    drop(tails);
    let meta_bytes = rest.size;
    let fingerprint = verity::seal_superblock(&meta_file, &meta_path, meta_bytes, tar_bytes)?;
    let report = verity::write_tree(
        &meta_file,
        &meta_path,
        leaves,
        meta_bytes,
        tar_bytes,
        &fingerprint,
        &dir,
    )?;
    meta_file
        .sync_all()
        .map_err(ErofsError::io("sync", &meta_path))?;
    drop(meta_file);
    tracing::debug!(
        entries = stats.entries,
        inodes = plan.order.len(),
        tar_bytes,
        meta_bytes,
        "tar index written"
    );

    // Into place: the tar, the tree, the sidecar, the metadata last.
    let tree_path = tree_path_for(out);
    let sidecar = crate::verity::sidecar_path(out);
    let mut placed: Vec<PathBuf> = Vec::new();
    let result = (|| -> Result<(), ErofsError> {
        if let Some(t) = tar_tmp {
            layerpass_fsutil::rename_synced(t, &tar_out)?;
            placed.push(tar_out.clone());
        }
        layerpass_fsutil::rename_synced(report.tree, &tree_path)?;
        placed.push(tree_path.clone());
        crate::verity::Sidecar {
            roothash: report.root_hash.clone(),
            hashoffset: report.hash_offset,
        }
        .write(&sidecar)?;
        placed.push(sidecar.clone());
        layerpass_fsutil::rename_synced(meta_tmp, out)?;
        layerpass_fsutil::sync_dir(&dir)?;
        Ok(())
    })();
    if let Err(e) = result {
        for p in &placed {
            let _ = fs::remove_file(p);
        }
        return Err(e);
    }
    let sidecar_bytes = fs::metadata(&sidecar).map_or(0, |m| m.len());
    let tar = match data {
        TarData::InPlace(p) => p.to_owned(),
        TarData::Decompressed(_) => tar_out,
    };
    let bytes_written =
        meta_bytes + report.tree_bytes + sidecar_bytes + if plain { 0 } else { tar_bytes };
    tracing::info!(meta_bytes, tar_bytes, tree_bytes = report.tree_bytes, root_hash = %report.root_hash, "layer indexed");
    Ok(IndexReport {
        meta: out.to_owned(),
        tar,
        tree: tree_path,
        sidecar,
        compression: compression.name(),
        meta_bytes,
        tar_bytes,
        tree_bytes: report.tree_bytes,
        root_hash: report.root_hash,
        hash_offset: report.hash_offset,
        data_blocks: report.data_blocks,
        bytes_written,
        entries: stats.entries,
    })
}

/// `OUT.tree`: where [`index_layer`] puts the hash tree of `OUT`.
pub fn tree_path_for(meta: &Path) -> PathBuf {
    with_suffix(meta, ".tree")
}

/// `OUT.tar`: where [`index_layer`] decompresses a compressed layer for `OUT`.
pub fn tar_path_for(meta: &Path) -> PathBuf {
    with_suffix(meta, ".tar")
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn temp_in(dir: &Path, suffix: &str) -> Result<tempfile::NamedTempFile, ErofsError> {
    tempfile::Builder::new()
        .prefix(".layerpass-")
        .suffix(suffix)
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(ErofsError::io("create a temporary file in", dir))
}

/// The EROFS and dm-verity UUIDs of an index: derived from its metadata (names,
/// ownership, sizes and offsets of every file) and the tar's length, not from the
/// contents (which would take another hash over the whole tar); the root hash covers the
/// contents.
fn uuids(fingerprint: &[u8]) -> (Uuid, Uuid) {
    let ns = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"layerpass:tar-index");
    let hex: String = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
    (
        Uuid::new_v5(&ns, format!("erofs:{hex}").as_bytes()),
        Uuid::new_v5(&ns, format!("dm-verity:{hex}").as_bytes()),
    )
}
