//! Reference values from an image alone: the dm-verity root hash of each layer as a given
//! builder makes it, computed on any machine without a host, a daemon or the conversion
//! cache (a tampered cache whose trees were re-formatted to match cannot produce matching
//! root hashes). Each layer is built into a temporary directory, removed as soon as its root
//! hash is known (and the whole directory on drop).
//!
//! - [`Builder::Layerpass`]: our converter (`layerpass convert`, the daemon, `layerpass
//!   run`): same tar, same root hash.
//! - [`Builder::LayerpassIndex`]: our index layers (`convert --index`, `layer_format =
//!   "index"`, `layerpass run --index`): metadata over the tar and the tree over both, at
//!   512-byte data blocks; the same tar gives the same root hash wherever the tar is.
//! - [`Builder::Containerd`]: containerd's EROFS differ with kata-deploy's options
//!   ([`super::containerd`]).

use std::path::{Path, PathBuf};

use layerpass_types::Digest;
use serde::Serialize;
use uuid::Uuid;

use super::containerd::{self, ContainerdPath, REPRODUCIBILITY_NOTE, Which};
use super::error::ReferenceError;
use super::mkfs::MkfsErofs;
use super::source::{Source, Stream, digests_of};
use crate::erofs::index::{IndexOptions, TarData, index_tar, index_verity_params};
use crate::erofs::{ConvertOptions, convert_layer};
use crate::image::{Platform, open_image};
use crate::verity::{FormatOptions, sidecar_path};

/// What to read the layers from.
#[derive(Debug, Clone)]
pub enum Input {
    /// An OCI image layout directory, a `docker save` tar or an OCI layout tar, for a
    /// platform (linux/amd64 when `None`).
    Image {
        path: PathBuf,
        platform: Option<Platform>,
    },
    /// Layer tars (plain, gzip or zstd), bottom first.
    Layers(Vec<PathBuf>),
}

/// Whose EROFS images the root hashes are for.
#[derive(Debug, Clone)]
pub enum Builder {
    /// layerpass's reproducible converter, with this build time (0 unless the layers
    /// were converted with `--mkfs-time`).
    Layerpass { mkfs_time: u64 },
    /// layerpass's index layers (metadata over the tar), with this build time.
    LayerpassIndex { mkfs_time: u64 },
    /// containerd's EROFS differ (kata-deploy's options) run with this `mkfs.erofs`.
    Containerd {
        mkfs: MkfsErofs,
        path: ContainerdPath,
    },
}

/// The builder, as recorded in the output.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "as", rename_all = "lowercase")]
pub enum BuilderReport {
    Layerpass {
        /// The layerpass version that computed them.
        version: &'static str,
        mkfs_time: u64,
        /// Index layers (`convert --index`) rather than full images.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        index: bool,
    },
    Containerd {
        /// The `mkfs.erofs` run.
        mkfs_erofs: String,
        /// Its erofs-utils version: another version may write other bytes.
        erofs_utils_version: String,
        containerd_path: ContainerdPath,
        /// Its arguments, `<uuid>` and the output path aside.
        mkfs_args: Vec<String>,
        note: &'static str,
    },
}

/// The image the layers came from.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    pub source: PathBuf,
    pub manifest: Option<Digest>,
    pub config: Digest,
}

/// One layer's reference value and the dm-verity parameters it holds for.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LayerReference {
    /// Position, 0 = bottom.
    pub index: usize,
    /// The file, or the blob digest in the image.
    pub source: String,
    /// Digest of the layer as stored (compressed, if it is).
    pub digest: Digest,
    /// sha256 of the uncompressed tar: what the guest's reference values bind the root
    /// hash to.
    pub diff_id: Digest,
    /// The dm-verity root hash (hex).
    pub root_hash: String,
    /// Bytes of the EROFS image: where the verity superblock starts (of an index layer:
    /// metadata and tar padded to 4096, where its tree starts on the served disk).
    pub hash_offset: u64,
    pub hash_algorithm: String,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    /// Hex (32 zero bytes).
    pub salt: String,
    /// containerd's `-U` for this layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erofs_uuid: Option<String>,
}

/// Reference values for every layer, bottom first.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceReport {
    pub builder: BuilderReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSummary>,
    pub layers: Vec<LayerReference>,
}

/// Hears which layer (index, count) is being built.
pub type OnLayer<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// Computes the reference values of `input` as `builder` makes the layers, with temporary
/// files under `scratch` (the system's temporary directory when `None`).
pub fn compute(
    input: &Input,
    builder: &Builder,
    scratch: Option<&Path>,
    on_layer: OnLayer<'_>,
) -> Result<ReferenceReport, ReferenceError> {
    let (sources, image) = match input {
        Input::Image { path, platform } => {
            let img = open_image(path, platform.as_ref()).map_err(|e| ReferenceError::Image {
                path: path.clone(),
                source: e,
            })?;
            let summary = ImageSummary {
                source: path.clone(),
                manifest: img.manifest_digest.clone(),
                config: img.config_digest.clone(),
            };
            let sources: Vec<Source> = img.layers.into_iter().map(Source::Image).collect();
            (sources, Some(summary))
        }
        Input::Layers(files) => (files.iter().cloned().map(Source::File).collect(), None),
    };
    if sources.is_empty() {
        return Err(ReferenceError::NoLayers);
    }
    let mut tmp = tempfile::Builder::new();
    tmp.prefix("layerpass-reference-");
    let dir = match scratch {
        Some(d) => tmp.tempdir_in(d),
        None => tmp.tempdir(),
    }
    .map_err(ReferenceError::io(
        "create a temporary directory in",
        scratch.map_or_else(std::env::temp_dir, Path::to_owned),
    ))?;
    let mut layers = Vec::with_capacity(sources.len());
    for (index, source) in sources.iter().enumerate() {
        on_layer(index, sources.len());
        let out = dir.path().join(format!("layer-{index}.erofs"));
        let r = match builder {
            Builder::Layerpass { mkfs_time } => layerpass_layer(source, index, *mkfs_time, &out),
            Builder::LayerpassIndex { mkfs_time } => {
                let r = index_layer_reference(source, index, *mkfs_time, &out);
                for p in [
                    crate::erofs::index::tree_path_for(&out),
                    crate::erofs::index::tar_path_for(&out),
                ] {
                    let _ = std::fs::remove_file(p);
                }
                r
            }
            Builder::Containerd { mkfs, path } => {
                containerd_layer(source, index, mkfs, *path, &out)
            }
        };
        // only the root hash is needed
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(sidecar_path(&out));
        layers.push(r?);
    }
    let builder = match builder {
        Builder::Layerpass { mkfs_time } => BuilderReport::Layerpass {
            version: env!("CARGO_PKG_VERSION"),
            mkfs_time: *mkfs_time,
            index: false,
        },
        Builder::LayerpassIndex { mkfs_time } => BuilderReport::Layerpass {
            version: env!("CARGO_PKG_VERSION"),
            mkfs_time: *mkfs_time,
            index: true,
        },
        Builder::Containerd { mkfs, path } => BuilderReport::Containerd {
            mkfs_erofs: mkfs.describe(),
            erofs_utils_version: mkfs.version().to_owned(),
            containerd_path: *path,
            mkfs_args: containerd::mkfs_args(&Uuid::nil())
                .into_iter()
                .map(|a| {
                    if a == Uuid::nil().to_string() {
                        "<uuid>".into()
                    } else {
                        a
                    }
                })
                .collect(),
            note: REPRODUCIBILITY_NOTE,
        },
    };
    Ok(ReferenceReport {
        builder,
        image,
        layers,
    })
}

/// The salt, sizes and algorithm every builder here uses (containerd's layout).
fn reference(
    index: usize,
    source: &Source,
    digest: Digest,
    diff_id: Digest,
    root_hash: String,
    hash_offset: u64,
    erofs_uuid: Option<Uuid>,
) -> LayerReference {
    let p = FormatOptions::containerd().params;
    LayerReference {
        index,
        source: source.name(),
        digest,
        diff_id,
        root_hash,
        hash_offset,
        hash_algorithm: p.algorithm.to_string(),
        data_block_size: p.data_block_size,
        hash_block_size: p.hash_block_size,
        salt: p.salt.to_table_hex(),
        erofs_uuid: erofs_uuid.map(|u| u.to_string()),
    }
}

/// The diff ID the image config gives, or that the file pre-pass computed, must be what the
/// build read.
fn check_diff_id(
    index: usize,
    source: &Source,
    actual: &str,
    expected: &Digest,
) -> Result<(), ReferenceError> {
    if actual == expected.as_str() {
        return Ok(());
    }
    Err(ReferenceError::DiffIdMismatch {
        index,
        name: source.name(),
        actual: actual.to_owned(),
        expected: format!("{expected} (the image config's, or the file's when first read)"),
    })
}

/// Reads what the builder left of `stream` and returns the stored bytes' digest.
fn finish(stream: Stream, index: usize, source: &Source) -> Result<Digest, ReferenceError> {
    stream.finish().map_err(|e| ReferenceError::Layer {
        index,
        name: source.name(),
        reason: format!("cannot read it: {e}"),
    })
}

fn layerpass_layer(
    source: &Source,
    index: usize,
    mkfs_time: u64,
    out: &Path,
) -> Result<LayerReference, ReferenceError> {
    let opts = ConvertOptions {
        mkfs_time: Some(mkfs_time),
        ..ConvertOptions::default()
    };
    let mut stream = source.open(index)?;
    let converted = convert_layer(&mut stream, out, &opts);
    // the converter may stop at the end-of-archive blocks: check the rest of the blob
    let digest = finish(stream, index, source)?;
    let report = converted.map_err(|e| ReferenceError::Convert {
        index,
        name: source.name(),
        source: Box::new(e),
    })?;
    if let Source::Image(l) = source {
        check_diff_id(index, source, &report.diff_id, &l.diff_id)?;
    }
    let diff_id = Digest::parse(&report.diff_id).map_err(|e| ReferenceError::Layer {
        index,
        name: source.name(),
        reason: format!("the converter reported diff id {}: {e}", report.diff_id),
    })?;
    let (Some(root), Some(offset)) = (report.root_hash, report.hash_offset) else {
        return Err(ReferenceError::Layer {
            index,
            name: source.name(),
            reason: "the converter wrote no dm-verity tree".into(),
        });
    };
    Ok(reference(
        index, source, digest, diff_id, root, offset, None,
    ))
}

/// An index layer's root hash: the layer's uncompressed tar indexed into `out` (a
/// compressed layer decompressed beside it, into a file removed afterwards; a plain one
/// only read), its diff ID computed from what was indexed.
fn index_layer_reference(
    source: &Source,
    index: usize,
    mkfs_time: u64,
    out: &Path,
) -> Result<LayerReference, ReferenceError> {
    let opts = IndexOptions {
        mkfs_time: Some(mkfs_time),
        ..IndexOptions::default()
    };
    let name = source.name();
    let mut stream = source.open(index)?;
    let (indexed, diff_id) = match crate::erofs::open_tar(&mut stream) {
        Ok((compression, tar)) => {
            let mut hashed = crate::convert::Sha256Reader::new(tar);
            let data = if compression == crate::compression::Compression::None {
                // not copied: the report's tar path is not used here
                TarData::InPlace(out)
            } else {
                TarData::Decompressed(compression)
            };
            let indexed = index_tar(&mut hashed, data, out, &opts);
            (indexed, Some(hashed.digest()))
        }
        Err(e) => (Err(crate::erofs::ErofsError::Read(e)), None),
    };
    let digest = finish(stream, index, source)?;
    let report = indexed.map_err(|e| ReferenceError::Convert {
        index,
        name: name.clone(),
        source: Box::new(e),
    })?;
    let diff_id = diff_id.ok_or_else(|| ReferenceError::Layer {
        index,
        name: name.clone(),
        reason: "no diff ID".into(),
    })?;
    if let Source::Image(l) = source {
        check_diff_id(index, source, diff_id.as_str(), &l.diff_id)?;
    }
    let p = index_verity_params();
    Ok(LayerReference {
        index,
        source: name,
        digest,
        diff_id,
        root_hash: report.root_hash,
        hash_offset: report.hash_offset,
        hash_algorithm: p.algorithm.to_string(),
        data_block_size: p.data_block_size,
        hash_block_size: p.hash_block_size,
        salt: p.salt.to_table_hex(),
        erofs_uuid: None,
    })
}

fn containerd_layer(
    source: &Source,
    index: usize,
    mkfs: &MkfsErofs,
    path: ContainerdPath,
    out: &Path,
) -> Result<LayerReference, ReferenceError> {
    // the UUID needs the digest before the build
    let (digest, diff_id) = match source {
        Source::Image(l) => (l.digest.clone(), l.diff_id.clone()),
        Source::File(_) => digests_of(source, index)?,
    };
    let uuid = containerd::erofs_uuid(match path {
        ContainerdPath::Differ => digest.as_str(),
        ContainerdPath::Cache => diff_id.as_str(),
    });
    let name = source.name();
    let which = Which { index, name: &name };
    let mut stream = source.open(index)?;
    let built = {
        let (_, mut tar) =
            crate::erofs::open_tar(&mut stream).map_err(|e| ReferenceError::Layer {
                index,
                name: name.clone(),
                reason: format!("cannot read it: {e}"),
            })?;
        containerd::build(mkfs, &uuid, &mut tar, out, which)
    };
    let read = finish(stream, index, source)?;
    let built = built?;
    if read != digest {
        return Err(ReferenceError::Layer {
            index,
            name,
            reason: format!("it changed while it was read: {digest}, then {read}"),
        });
    }
    check_diff_id(
        index,
        source,
        &format!("sha256:{}", built.diff_id_hex),
        &diff_id,
    )?;
    Ok(reference(
        index,
        source,
        digest,
        diff_id,
        built.verity.root_hash,
        built.verity.hash_offset,
        Some(uuid),
    ))
}
