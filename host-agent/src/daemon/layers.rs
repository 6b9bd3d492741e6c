//! From a request's source to the layers to serve, top first, each with its verity, and the
//! upper containerd asks for:
//! - a containerd mount list: parsed by the pure [`crate::containerd`] parser, then each
//!   blob and sidecar checked on disk;
//! - an OCI layout or `docker save` archive: converted by our writer into the daemon's layer
//!   cache (`<cache_dir>/layers`, containerd's `layer_content_caches` layout), a layer
//!   already there (same diff ID) reused; with `layer_format = "index"` into
//!   `<cache_dir>/index-layers` as index layers, whose plain tars stay in the image.

use std::path::{Path, PathBuf};

use layerpass_types::Digest;

use super::DaemonError;
use super::config::VerityMode;
use super::verity::{LayerVerity, layer_verity};
use crate::containerd::{self, ContainerdUpper, LayerVerity as ListVerity, MountEntry};
use crate::convert::{
    ImageConvertOptions, LayerConvertReport, LayerFormat, OutputLayout, convert_image,
};
use crate::export::index::IndexTar;
use crate::image::Platform;
use crate::plan::layer_mapping;
use crate::verity::{check_top_block, sidecar_path};

/// Where converted layers of `format` are kept under the cache directory: `layers/` for
/// full images, `index-layers/` for index layers (the same diff ID gives a file of each).
pub fn layer_cache_dir(cache_dir: &Path, format: LayerFormat) -> PathBuf {
    cache_dir.join(match format {
        LayerFormat::Full => "layers",
        LayerFormat::Index => "index-layers",
    })
}

/// One layer to serve.
#[derive(Debug, Clone)]
pub struct ResolvedLayer {
    /// The blob, or an index layer's metadata.
    pub blob: PathBuf,
    /// An index layer's tar.
    pub index: Option<IndexTar>,
    /// Its diff ID when known (images; containerd's mount lists do not carry it).
    pub diff_id: Option<Digest>,
    /// Its verity.
    pub verity: LayerVerity,
}

/// The upper the source asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceUpper {
    /// containerd's block-mode `rwlayer.img`: served as the scratch disk. `create` holds the
    /// size when containerd's mkfs transformer has not run yet (the daemon makes it).
    BlockImage {
        /// The image file.
        path: PathBuf,
        /// Its filesystem.
        fs_type: String,
        /// Size to create it with, when it is still to be made.
        create: Option<u64>,
    },
    /// Nothing the VM can use: the daemon's configured or requested upper.
    None,
}

/// A source, resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Top layer first.
    pub layers: Vec<ResolvedLayer>,
    /// The upper the source asks for.
    pub upper: SourceUpper,
    /// Overlay `volatile`.
    pub volatile: bool,
    /// Overlay `userxattr`.
    pub userxattr: bool,
    /// For `List`: what the layers came from.
    pub description: String,
    /// Cache files made for this export (removed if it fails).
    pub created: Vec<PathBuf>,
}

/// Resolves a containerd mount list.
pub fn from_containerd(
    mounts: &[MountEntry],
    mode: VerityMode,
    trees_dir: &Path,
) -> Result<Resolved, DaemonError> {
    let rootfs = containerd::parse(mounts)?;
    let description = format!("containerd mounts ({} layers)", rootfs.layers.len());
    if rootfs.layers.is_empty() {
        return Err(DaemonError::NoLayers(description));
    }
    let mut created = Vec::new();
    let mut layers = Vec::with_capacity(rootfs.layers.len());
    let result = (|| {
        for l in &rootfs.layers {
            let sidecar = match &l.verity {
                ListVerity::Sidecar(p) => Some(p.as_path()),
                ListVerity::Off => None,
            };
            let verity = layer_verity(&l.blob, sidecar, mode, trees_dir)?;
            created.extend(verity.created.iter().cloned());
            layers.push(ResolvedLayer {
                blob: l.blob.clone(),
                index: None,
                diff_id: None,
                verity,
            });
        }
        Ok::<_, DaemonError>(())
    })();
    if let Err(e) = result {
        remove_files(&created);
        return Err(e);
    }
    let upper = match rootfs.upper {
        ContainerdUpper::BlockImage {
            path,
            fs_type,
            create,
        } => SourceUpper::BlockImage {
            path,
            fs_type,
            create: create.map(|c| c.size),
        },
        ContainerdUpper::ReadOnly | ContainerdUpper::HostDir { .. } => SourceUpper::None,
    };
    Ok(Resolved {
        layers,
        upper,
        volatile: rootfs.overlay.volatile,
        userxattr: rootfs.overlay.userxattr,
        description,
        created,
    })
}

/// Converts an image into the layer cache (`cache_dir`, see [`layer_cache_dir`]) as
/// `format` says and resolves its layers.
pub fn from_image(
    image: &Path,
    platform: Option<&str>,
    cache_dir: &Path,
    format: LayerFormat,
    mode: VerityMode,
    trees_dir: &Path,
) -> Result<Resolved, DaemonError> {
    if !image.exists() {
        return Err(DaemonError::Missing {
            what: "image",
            path: image.to_owned(),
        });
    }
    let mut opts = ImageConvertOptions::new(OutputLayout::ContainerdCache, cache_dir);
    opts.format = format;
    if let Some(p) = platform {
        opts.platform = Some(
            p.parse::<Platform>()
                .map_err(|e| DaemonError::BadRequest(format!("platform {p:?}: {e}")))?,
        );
    }
    let report = convert_image(image, &opts, &|_| {})?;
    let mut created: Vec<PathBuf> = report
        .layers
        .iter()
        .filter(|l| !l.skipped())
        .flat_map(made_files)
        .collect();
    let description = format!("image {} ({} layers)", image.display(), report.layers.len());
    let mut layers = Vec::with_capacity(report.layers.len());
    // the report lists the layers bottom first; the plan wants the top first
    for l in report.layers.iter().rev() {
        let verity = match &l.index_files {
            None => layer_verity(&l.path, Some(&sidecar_path(&l.path)), mode, trees_dir),
            Some(_) => index_verity(l, mode),
        };
        match verity {
            Ok(verity) => {
                created.extend(verity.created.iter().cloned());
                layers.push(ResolvedLayer {
                    blob: l.path.clone(),
                    index: l.index_files.as_ref().map(|i| i.tar.clone()),
                    diff_id: Some(l.diff_id.clone()),
                    verity,
                });
            }
            Err(e) => {
                remove_files(&created);
                return Err(e);
            }
        }
    }
    if layers.is_empty() {
        return Err(DaemonError::NoLayers(description));
    }
    Ok(Resolved {
        layers,
        upper: SourceUpper::None,
        volatile: false,
        userxattr: false,
        description,
        created,
    })
}

/// The cache files a conversion made for `l` (removed again if the export fails).
fn made_files(l: &LayerConvertReport) -> Vec<PathBuf> {
    let mut files = vec![l.path.clone(), l.sidecar.clone()];
    if let Some(i) = &l.index_files {
        files.push(i.tree.clone());
        if i.in_cache {
            files.push(i.tar.path.clone());
        }
    }
    files
}

/// An index layer's verity: its tree file (`META.tree`, served after `[META][TAR]` padded
/// to 4096) mapped as the plan maps `META+TAR[#OFFSET]` (sidecar, tree superblock and the
/// sizes of metadata and tar checked against each other), and the sidecar's root hash the
/// hash of the tree's top block. `off`: no verity (the tree is still on the disk).
fn index_verity(l: &LayerConvertReport, mode: VerityMode) -> Result<LayerVerity, DaemonError> {
    let spec = l.file_spec();
    let tree = spec.tree.clone();
    if mode == VerityMode::Off {
        return Ok(LayerVerity {
            tree,
            mapping: None,
            created: Vec::new(),
        });
    }
    let m = layer_mapping(&spec)?;
    let tree_path = tree.clone().unwrap_or_default();
    // the tree's top block is one hash block into the tree file, after its superblock
    let top_in_tree =
        (m.hash_start_block * u64::from(m.hash_block_size)).saturating_sub(l.hash_offset);
    check_top_block(&tree_path, top_in_tree, &m).map_err(|source| DaemonError::Verity {
        blob: l.path.clone(),
        source,
    })?;
    Ok(LayerVerity {
        tree,
        mapping: Some(m),
        created: Vec::new(),
    })
}

/// Removes files an export made; what is already gone is fine.
pub fn remove_files(files: &[PathBuf]) {
    for f in files {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %f.display(), error = %e, "cannot remove"),
        }
    }
}
