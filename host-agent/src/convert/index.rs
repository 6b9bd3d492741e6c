//! One layer as an index layer (`LayerFormat::Index`): EROFS metadata over the
//! uncompressed tar ([`crate::erofs::index`]), keyed by diff ID like a full blob.
//!
//! - A plain layer is referenced where it is: the blob file of an OCI layout directory
//!   (offset 0) or the member of a `docker save` / OCI archive (at its offset). Nothing of
//!   it is copied; its bytes are read once, through the image's verifying reader, for the
//!   metadata and the tree. Its diff ID is its blob digest (the same bytes), which the
//!   verifying reader checks, so the config's diff ID must equal the blob digest.
//! - A gzip or zstd layer is decompressed once into `META.tar` beside the metadata; the
//!   decompressed bytes are hashed on the way for the diff ID check.
//!
//! Everything is made under temporary names (`.<hex>.erofs.partial` and its `.tar`, `.tree`,
//! `.dmverity`) and renamed into place only once the blob and the diff ID have checked —
//! the tar, the tree, the sidecar, the metadata last — so an interrupted or refused layer
//! leaves nothing. An earlier conversion is reused only when its metadata, tree and
//! sidecar are complete and the tar it needs has the length the metadata addresses.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use layerpass_types::{Digest, HashAlgorithm, RootHash};
use sha2::{Digest as _, Sha256};

use super::counting::CountingReader;
use super::error::LayerConvertError;
use super::options::{ConvertEvent, ImageConvertOptions, Progress};
use super::publish::remove_if_present;
use super::report::{IndexFiles, LayerConvertReport, LayerOutcome};
use super::tarstamp::{TarStamp, stamp_path};
use crate::compression::Compression;
use crate::erofs::ErofsError;
use crate::erofs::index::{
    IndexInfo, IndexOptions, MAX_TAR_BYTES, TarData, index_tar, index_verity_params, tar_path_for,
    tree_path_for,
};
use crate::export::index::IndexTar;
use crate::image::{ImageError, Layer};
use crate::verity::{Geometry, Sidecar, sidecar_path};

/// The tree file's veritysetup superblock area (one hash block).
const TREE_SUPERBLOCK_AREA: u64 = 4096;
/// The served disk pads `[META][TAR]` to this before the tree.
const DISK_ALIGN: u64 = 4096;

/// Indexes `layer`, or reports the index already in place.
pub(super) fn index_one(
    layer: &Layer,
    opts: &ImageConvertOptions,
    index_opts: &IndexOptions,
    progress: Progress<'_>,
) -> Result<LayerConvertReport, LayerConvertError> {
    let span = tracing::info_span!("layer", index = layer.index, diff_id = %layer.diff_id);
    let _enter = span.enter();
    let meta = opts.layout.blob_path(&opts.out_dir, &layer.diff_id);
    let (file, offset) = layer.file_range()?;
    let plain = stored_compression(&file, offset, layer.size)? == Compression::None;
    if plain {
        // the blob is the tar: its digest (checked as it is read) is the diff ID
        if layer.digest != layer.diff_id {
            return Err(LayerConvertError::DiffIdMismatch {
                actual: layer.digest.to_string(),
                expected: layer.diff_id.clone(),
            });
        }
        if layer.size > MAX_TAR_BYTES {
            return Err(ErofsError::TarTooLarge { bytes: layer.size }.into());
        }
    }
    let tar = if plain {
        IndexTar { path: file, offset }
    } else {
        IndexTar {
            path: tar_path_for(&meta),
            offset: 0,
        }
    };
    let report = |found: Found, outcome| LayerConvertReport {
        index: layer.index,
        diff_id: layer.diff_id.clone(),
        digest: layer.digest.clone(),
        media_type: layer.media_type.clone(),
        sidecar: sidecar_path(&meta),
        path: meta.clone(),
        size: found.meta_bytes,
        root_hash: found.root_hash,
        hash_offset: found.hash_offset,
        index_files: Some(IndexFiles {
            tar: tar.clone(),
            tar_bytes: found.tar_bytes,
            in_cache: !plain,
            tree: tree_path_for(&meta),
        }),
        outcome,
    };
    let tar_len = if plain {
        Some(layer.size)
    } else {
        fs::metadata(&tar.path)
            .ok()
            .filter(fs::Metadata::is_file)
            .map(|m| m.len())
    };
    // an in-place tar must also be the very file (and state) it was indexed from
    let same_tar = !plain || TarStamp::still_matches(&stamp_path(&meta), &tar.path, tar.offset);
    if same_tar && let Some(found) = tar_len.and_then(|len| already_indexed(&meta, len)) {
        tracing::info!(meta = %meta.display(), "already indexed; skipped");
        progress(ConvertEvent::Read { bytes: layer.size });
        return Ok(report(found, LayerOutcome::Skipped));
    }
    let dir = layerpass_fsutil::dir_of(&meta);
    fs::create_dir_all(dir).map_err(|source| LayerConvertError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let tmp = dir.join(format!(".{}.erofs.partial", layer.diff_id.hex()));
    let made = stamp_in_place(plain.then_some(&tar), &tmp)
        .and_then(|()| index_to(layer, plain.then_some(&tar), &tmp, index_opts, progress))
        .and_then(|found| publish(&tmp, &meta, !plain).map(|()| found));
    match made {
        Ok(found) => Ok(report(found, LayerOutcome::Converted)),
        Err(e) => {
            discard(&tmp);
            Err(e)
        }
    }
}

/// What an index (made now or earlier) is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    root_hash: RootHash,
    hash_offset: u64,
    meta_bytes: u64,
    tar_bytes: u64,
}

/// The layer's stored bytes' compression, told by their first bytes (as the converter
/// tells it).
fn stored_compression(file: &Path, offset: u64, size: u64) -> Result<Compression, ImageError> {
    let mut head = vec![0u8; usize::try_from(size.min(4)).unwrap_or(4)];
    File::open(file)
        .and_then(|f| f.read_exact_at(&mut head, offset))
        .map_err(ImageError::io("read", file))?;
    Ok(Compression::sniff(&head))
}

/// Indexes `layer` into `tmp` (with `tmp.tree`, `tmp.dmverity` and, for a compressed
/// layer, `tmp.tar`), checking the blob and the diff ID. `in_place`: the plain layer's
/// own bytes, which the metadata will point into.
fn index_to(
    layer: &Layer,
    in_place: Option<&IndexTar>,
    tmp: &Path,
    opts: &IndexOptions,
    progress: Progress<'_>,
) -> Result<Found, LayerConvertError> {
    let mut reader = layer.open()?;
    let counted = CountingReader::new(&mut reader, |bytes| progress(ConvertEvent::Read { bytes }));
    let (indexed, diff_id) = match in_place {
        Some(tar) => (
            index_tar(counted, TarData::InPlace(&tar.path), tmp, opts),
            None,
        ),
        None => match crate::erofs::open_tar(counted) {
            Ok((compression, tar)) => {
                let mut hashed = Sha256Reader::new(tar);
                let indexed = index_tar(&mut hashed, TarData::Decompressed(compression), tmp, opts);
                (indexed, Some(hashed.digest()))
            }
            Err(e) => (Err(ErofsError::Read(e)), None),
        },
    };
    // The index reads its stream to the end, but a decompressor may stop at the end of
    // the compressed data: read and check the rest of the blob. A corrupted blob often
    // shows up first as a decompression or tar error; name the blob when that is the cause.
    reader.finish()?;
    let report = indexed?;
    if let Some(actual) = diff_id
        && actual != layer.diff_id
    {
        return Err(LayerConvertError::DiffIdMismatch {
            actual: actual.to_string(),
            expected: layer.diff_id.clone(),
        });
    }
    if in_place.is_some() && report.tar_bytes != layer.size {
        return Err(LayerConvertError::Convert(ErofsError::NotAnIndex {
            path: tmp.to_owned(),
            reason: format!(
                "it indexed {} bytes of tar, not the layer's {}",
                report.tar_bytes, layer.size
            ),
        }));
    }
    let root_hash = RootHash::parse(&report.root_hash, HashAlgorithm::Sha256)
        .map_err(LayerConvertError::BadRootHash)?;
    Ok(Found {
        root_hash,
        hash_offset: report.hash_offset,
        meta_bytes: report.meta_bytes,
        tar_bytes: report.tar_bytes,
    })
}

/// The index at `meta` and its tree and sidecar, if they are a complete earlier
/// conversion over a tar of `tar_len` bytes; anything else is indexed again.
fn already_indexed(meta: &Path, tar_len: u64) -> Option<Found> {
    let side = sidecar_path(meta);
    let tree = tree_path_for(meta);
    if !side.is_file() || !tree.is_file() {
        return None;
    }
    let again = |why: &str| {
        tracing::warn!(meta = %meta.display(), why, "an earlier index does not fit; indexing again");
    };
    let Ok(sidecar) = Sidecar::read(&side) else {
        again("unreadable sidecar");
        return None;
    };
    let Ok(root_hash) = RootHash::parse(&sidecar.roothash, HashAlgorithm::Sha256) else {
        again("the sidecar has no sha256 root hash");
        return None;
    };
    let Ok(info) = IndexInfo::read(meta) else {
        again("the metadata is not an index (a full blob?)");
        return None;
    };
    if info.extra_devices != 0 || info.tar_len_padded() != tar_len.next_multiple_of(512) {
        again("the metadata addresses a tar of another length");
        return None;
    }
    let data_len = info
        .meta_bytes
        .checked_add(tar_len)?
        .next_multiple_of(DISK_ALIGN);
    if sidecar.hashoffset != data_len {
        again("the sidecar's hash offset is not past metadata and tar");
        return None;
    }
    let geometry = Geometry::new(&index_verity_params(), data_len / 512).ok()?;
    let tree_len = fs::metadata(&tree).ok()?.len();
    if tree_len != TREE_SUPERBLOCK_AREA + geometry.tree_bytes() {
        again("the tree has the wrong size");
        return None;
    }
    Some(Found {
        root_hash,
        hash_offset: sidecar.hashoffset,
        meta_bytes: info.meta_bytes,
        tar_bytes: tar_len,
    })
}

/// Renames the index made at `tmp` into place at `meta`: its tar (when it has one), tree
/// and sidecar, the metadata last; then syncs the directory.
fn publish(tmp: &Path, meta: &Path, with_tar: bool) -> Result<(), LayerConvertError> {
    let mut pairs = Vec::with_capacity(4);
    if with_tar {
        pairs.push((tar_path_for(tmp), tar_path_for(meta)));
    }
    let stamp = stamp_path(tmp);
    if stamp.exists() {
        pairs.push((stamp, stamp_path(meta)));
    } else {
        // a compressed layer's tar is ours, in the cache: no stamp (remove an old one)
        remove_if_present(&stamp_path(meta));
    }
    pairs.push((tree_path_for(tmp), tree_path_for(meta)));
    pairs.push((sidecar_path(tmp), sidecar_path(meta)));
    pairs.push((tmp.to_owned(), meta.to_owned()));
    for (from, to) in pairs {
        fs::rename(&from, &to).map_err(|source| LayerConvertError::Publish { from, to, source })?;
    }
    layerpass_fsutil::sync_dir(layerpass_fsutil::dir_of(meta))?;
    Ok(())
}

/// Records the in-place tar's `stat` data beside `tmp`, before the tar is read.
fn stamp_in_place(in_place: Option<&IndexTar>, tmp: &Path) -> Result<(), LayerConvertError> {
    let Some(tar) = in_place else {
        return Ok(());
    };
    let at = stamp_path(tmp);
    TarStamp::of(&tar.path, tar.offset)
        .and_then(|s| s.write(&at))
        .map_err(|e| {
            LayerConvertError::Convert(ErofsError::io("record the state of", &tar.path)(e))
        })
}

/// Removes whatever of the index at `tmp` exists.
fn discard(tmp: &Path) {
    for p in [
        tmp.to_owned(),
        tree_path_for(tmp),
        sidecar_path(tmp),
        tar_path_for(tmp),
        stamp_path(tmp),
    ] {
        remove_if_present(&p);
    }
}

/// The sha256 of what is read through it (an uncompressed tar: the layer's diff ID).
#[derive(Debug)]
pub struct Sha256Reader<R> {
    inner: R,
    hash: Sha256,
}

impl<R> Sha256Reader<R> {
    /// Hashes what is read from `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
        }
    }

    /// The sha256 of everything read.
    pub fn digest(self) -> Digest {
        Digest::sha256(&self.hash.finalize().into())
    }
}

impl<R: Read> Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}
