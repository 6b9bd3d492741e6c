//! Our own tar → EROFS writer: one streaming pass over an OCI layer (plain, gzip or zstd
//! tar) producing a reproducible EROFS image, with containerd's dm-verity layout appended.
//!
//! - `input`: compression by magic bytes, diff ID (sha256 of the uncompressed tar);
//! - `tarread`: tar entries → `tree` (metadata) and `data` (contents, streamed);
//! - `layout`: nids, directory blocks, xattr sharing; `write`: the rest of the image;
//! - `format`: the kernel's on-disk structures; `xattr`, `path`: names and normalisation;
//! - `index`: EROFS metadata over a tar whose contents stay in place (zero-copy layers).
//!
//! The image is built in a temporary file next to the output and renamed into place only
//! when it and its hash tree are complete: an error leaves nothing behind. See
//! `docs/erofs.md` for the format choices and what makes the output reproducible.

mod data;
mod error;
mod format;
pub mod fuzz_harness;
pub mod index;
mod input;
mod layout;
mod path;
mod tarread;
mod tarstream;
mod tree;
mod write;
mod xattr;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

pub use error::ErofsError;
pub use format::BLOCK_SIZE;
/// A layer stream (plain, gzip or zstd, told by its magic bytes) as the uncompressed tar.
pub use input::open as open_tar;

use crate::verity::{
    Follower, FormatOptions, FormatReport, LeafDigests, Sidecar, format_file,
    format_file_from_leaves, sidecar_path,
};

/// Default [`ConvertOptions::max_layer_bytes`]: 64 GiB of uncompressed tar.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 64 << 30;
/// Default [`ConvertOptions::max_entries`]: 10 million tar entries.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000_000;

/// How to convert a layer.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Write the EROFS image only: no hash tree, no sidecar.
    pub no_verity: bool,
    /// Superblock build time in seconds (also the mtime of implicit directories); `None`
    /// means 0. The CLI fills it from `--mkfs-time` or `SOURCE_DATE_EPOCH`.
    pub mkfs_time: Option<u64>,
    /// Most bytes of uncompressed tar read (the end-of-archive blocks and whatever follows
    /// them included): a larger layer, such as a gzip bomb, stops with
    /// [`ErofsError::LayerTooLarge`]. Default [`DEFAULT_MAX_LAYER_BYTES`].
    pub max_layer_bytes: u64,
    /// Most tar entries (extension headers not counted): the tree of a layer is held in
    /// memory, so more stop with [`ErofsError::TooManyEntries`]. Default
    /// [`DEFAULT_MAX_ENTRIES`].
    pub max_entries: u64,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            no_verity: false,
            mkfs_time: None,
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// What `convert_layer` wrote; the JSON form is `layerpass convert layer --json`.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertReport {
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    pub path: PathBuf,
    /// Bytes of the EROFS image (whole blocks).
    pub erofs_size: u64,
    /// Bytes of the file: the image plus the verity superblock area and tree.
    pub blob_size: u64,
    pub root_hash: Option<String>,
    /// Byte offset of the verity superblock (= `erofs_size`), as in the sidecar.
    pub hash_offset: Option<u64>,
}

/// The EROFS UUID of the layer with diff ID `diff_id`.
pub fn erofs_uuid(diff_id: &str) -> Uuid {
    Uuid::new_v5(&namespace(), format!("erofs:{diff_id}").as_bytes())
}

/// The dm-verity superblock UUID of the layer with diff ID `diff_id`.
pub fn verity_uuid(diff_id: &str) -> Uuid {
    Uuid::new_v5(&namespace(), format!("dm-verity:{diff_id}").as_bytes())
}

fn namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"layerpass:layer")
}

/// Converts the tar layer read from `input` (plain, gzip or zstd) into an EROFS image at
/// `out`, with the dm-verity tree appended and `<out>.dmverity` written unless
/// `opts.no_verity`. On error nothing is left at `out`.
pub fn convert_layer<R: Read + Send>(
    input: R,
    out: &Path,
    opts: &ConvertOptions,
) -> Result<ConvertReport, ErofsError> {
    // The layer is read (and decompressed) on a thread of this scope, so that reading,
    // hashing and converting run side by side.
    std::thread::scope(|scope| convert_in(scope, input, out, opts))
}

fn convert_in<'scope, R: Read + Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    input: R,
    out: &Path,
    opts: &ConvertOptions,
) -> Result<ConvertReport, ErofsError> {
    let dir = layerpass_fsutil::dir_of(out).to_owned();
    let span = tracing::info_span!("convert_layer", out = %out.display());
    let _enter = span.enter();

    let tmp = tempfile::Builder::new()
        .prefix(".layerpass-")
        .suffix(".erofs.tmp")
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(&dir)
        .map_err(ErofsError::io("create a temporary file in", &dir))?;
    let tmp_path = tmp.path().to_owned();
    let image = tmp
        .as_file()
        .try_clone()
        .map_err(ErofsError::io("open", &tmp_path))?;

    let (compression, reader) = input::open(input).map_err(ErofsError::Read)?;
    // decompression gets a thread of its own; a plain tar is read where it is parsed
    let read_thread = compression != input::Compression::None;
    let hashing = input::HashingReader::spawn(scope, reader, read_thread, opts.max_layer_bytes)
        .map_err(ErofsError::Read)?;
    let mut archive = tarstream::TarStream::new(hashing);
    let build_time = opts.mkfs_time.unwrap_or(0);
    let mut tree = tree::Tree::new(build_time);
    let mut data = data::DataWriter::new(image, &tmp_path, &dir)?;
    // With verity, the data blocks are hashed on another thread as they are written.
    let follower = if opts.no_verity {
        None
    } else {
        let reader = fs::File::open(&tmp_path).map_err(ErofsError::io("open", &tmp_path))?;
        let f = Follower::start(reader, &tmp_path, FormatOptions::containerd().params, 1)?;
        let reporter = f.reporter();
        data.report_written(Box::new(move |end| reporter.written(end)));
        Some(f)
    };
    let stats = tarread::read_entries(
        &mut archive,
        &mut tree,
        &mut data,
        compression.name(),
        opts.max_entries,
    )?;
    let (diff_id, tar_bytes) = archive.into_inner().finish().map_err(|e| {
        if let Some(limit) = input::over_limit(&e) {
            return ErofsError::LayerTooLarge { limit };
        }
        match input::stream_error(&e) {
            Some(_) => ErofsError::Decompress {
                format: compression.name(),
                source: e,
            },
            None => ErofsError::Read(e),
        }
    })?;

    let data_end = data.next_block();
    let (image, tails) = data.finish()?;
    let plan = layout::plan(&tree, data_end, layout::Geometry::FULL)?;
    let uuid = erofs_uuid(&diff_id);
    let rest = write::write_rest(&image, &tmp_path, &tree, &plan, &tails, *uuid.as_bytes())?;
    let erofs_size = rest.size;
    drop(tails);
    let leaves = match follower {
        Some(f) => Some(leaves_of(f, &image, &tmp_path, &rest)?),
        None => None,
    };
    drop(image);
    tracing::debug!(
        entries = stats.entries,
        skipped = stats.skipped,
        inodes = plan.order.len(),
        tar_bytes,
        erofs_size,
        "EROFS image written"
    );

    let (root_hash, hash_offset, blob_size) = if opts.no_verity {
        remove_stale_sidecar(out)?;
        (None, None, erofs_size)
    } else {
        let report = add_verity_with(&tmp_path, out, verity_uuid(&diff_id), leaves.as_ref())?;
        let size = fs::metadata(&tmp_path)
            .map_err(ErofsError::io("stat", &tmp_path))?
            .len();
        (Some(report.root_hash), Some(report.hash_offset), size)
    };

    // The file is synced here (with verity, `format_file` synced it already and this
    // finds nothing to write).
    if let Err(e) = layerpass_fsutil::rename_synced(tmp, out) {
        if !opts.no_verity {
            let _ = fs::remove_file(sidecar_path(out));
        }
        return Err(e.into());
    }
    layerpass_fsutil::sync_dir(&dir)?;
    tracing::info!(%diff_id, erofs_size, blob_size, root_hash = root_hash.as_deref().unwrap_or("-"), "layer converted");
    Ok(ConvertReport {
        diff_id,
        path: out.to_owned(),
        erofs_size,
        blob_size,
        root_hash,
        hash_offset,
    })
}

/// Appends containerd's dm-verity layout (4096-byte superblock area with `uuid`, then the
/// sha256 tree with 32 zero bytes of salt) to the EROFS image at `image`, which must be
/// whole 4096-byte blocks, and writes the sidecar `<sidecar_for>.dmverity`. `convert_layer`
/// uses it on its temporary file; blobs made by `mkfs.erofs` go through it as they are.
pub fn add_verity(
    image: &Path,
    sidecar_for: &Path,
    uuid: Uuid,
) -> Result<FormatReport, ErofsError> {
    add_verity_with(image, sidecar_for, uuid, None)
}

/// [`add_verity`] with the digests of every block of `image` already recorded, if given.
fn add_verity_with(
    image: &Path,
    sidecar_for: &Path,
    uuid: Uuid,
    leaves: Option<&LeafDigests>,
) -> Result<FormatReport, ErofsError> {
    check_erofs(image)?;
    let opts = FormatOptions {
        uuid: Some(uuid),
        sidecar: false,
        ..FormatOptions::containerd()
    };
    let report = match leaves {
        Some(l) => format_file_from_leaves(image, &opts, l)?,
        None => format_file(image, &opts, None)?,
    };
    Sidecar {
        roothash: report.root_hash.clone(),
        hashoffset: report.hash_offset,
    }
    .write(&sidecar_path(sidecar_for))?;
    Ok(report)
}

/// The follower hashed the data blocks while they were written and hashes the metadata
/// after them; block 0 (the superblock, written last) and the blocks zeroed after they
/// were written are hashed again here.
fn leaves_of(
    follower: Follower,
    image: &fs::File,
    path: &Path,
    rest: &write::Rest,
) -> Result<LeafDigests, ErofsError> {
    use std::os::unix::fs::FileExt;
    /// Zero blocks recorded at a time.
    const ZERO_RUN: u64 = 256;
    let mut leaves = follower.finish(rest.size.div_ceil(BLOCK_SIZE))?;
    let mut block = vec![0u8; BLOCK_SIZE as usize];
    image
        .read_exact_at(&mut block, 0)
        .map_err(ErofsError::io("read back", path))?;
    leaves.record(0, &block)?;
    let zeros = vec![0u8; (ZERO_RUN * BLOCK_SIZE) as usize];
    for range in &rest.zeroed {
        let mut b = range.start;
        while b < range.end {
            let n = (range.end - b).min(ZERO_RUN);
            leaves.record(b, &zeros[..(n * BLOCK_SIZE) as usize])?;
            b += n;
        }
    }
    Ok(leaves)
}

/// The EROFS magic at byte 1024, or a clear error.
fn check_erofs(image: &Path) -> Result<(), ErofsError> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(image).map_err(ErofsError::io("open", image))?;
    let mut magic = [0u8; 4];
    f.read_exact_at(&mut magic, format::SUPER_OFFSET as u64)
        .map_err(ErofsError::io("read the superblock of", image))?;
    if u32::from_le_bytes(magic) != format::SUPER_MAGIC {
        return Err(ErofsError::NotErofs {
            path: image.to_owned(),
        });
    }
    Ok(())
}

/// Without verity a sidecar left from an earlier conversion would describe another file.
fn remove_stale_sidecar(out: &Path) -> Result<(), ErofsError> {
    let p = sidecar_path(out);
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ErofsError::Io {
            op: "remove the stale sidecar",
            path: p,
            source: e,
        }),
    }
}
