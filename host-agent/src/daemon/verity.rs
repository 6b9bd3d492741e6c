//! Each layer's dm-verity, as the daemon's `verity` setting says:
//! - with a sidecar (containerd's, or the one the daemon's converter wrote): the superblock
//!   at `hashoffset` gives the parameters (salt, sizes), the mapping is checked against the
//!   blob, and the sidecar's root hash must be the hash of the tree's top block (one block
//!   read, never the whole blob);
//! - without one, under `compute`: the tree is built into `<state_dir>/trees/` as a separate
//!   file with a veritysetup superblock (containerd's blobs may be immutable and are never
//!   written) and served after the padded blob; it is reused while the blob's identity
//!   (device, inode, size, modification time) stays the same;
//! - `off`: no verity.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use layerpass_types::{HashAlgorithm, RootHash, VerityMapping};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::DaemonError;
use super::config::VerityMode;
use crate::export::layer::LAYER_ALIGN;
use crate::plan::{Found, mapping};
use crate::verity::{
    FormatOptions, HashTarget, Sidecar, check_top_block, format_file, sidecar_path,
};

/// A layer's verity as it will be served: the tree file when the daemon computed one, and
/// the mapping on the layer's disk (or partition).
#[derive(Debug, Clone)]
pub struct LayerVerity {
    /// The computed tree, served after the padded blob.
    pub tree: Option<PathBuf>,
    /// The mapping; `None` without verity.
    pub mapping: Option<VerityMapping>,
    /// A cache file this call created (removed if the export fails).
    pub created: Vec<PathBuf>,
}

/// The blob must be a regular file.
pub fn check_blob(blob: &Path) -> Result<u64, DaemonError> {
    match fs::metadata(blob) {
        Ok(m) if m.is_file() => Ok(m.len()),
        Ok(_) => Err(DaemonError::NotAFile {
            what: "layer blob",
            path: blob.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DaemonError::Missing {
            what: "layer blob",
            path: blob.to_owned(),
        }),
        Err(e) => Err(DaemonError::io("stat", blob)(e)),
    }
}

/// The verity of `blob`: `sidecar` is the one the mount list names (`None`: look beside
/// the blob).
pub fn layer_verity(
    blob: &Path,
    sidecar: Option<&Path>,
    mode: VerityMode,
    trees_dir: &Path,
) -> Result<LayerVerity, DaemonError> {
    let blob_len = check_blob(blob)?;
    if mode == VerityMode::Off {
        return Ok(LayerVerity {
            tree: None,
            mapping: None,
            created: Vec::new(),
        });
    }
    let side = sidecar.map_or_else(|| sidecar_path(blob), Path::to_owned);
    if side.exists() {
        let mapping = checked_sidecar(blob, &side, blob_len)?;
        return Ok(LayerVerity {
            tree: None,
            mapping: Some(mapping),
            created: Vec::new(),
        });
    }
    match (mode, sidecar) {
        // the mount list named a sidecar that is not there
        (_, Some(named)) => Err(DaemonError::Missing {
            what: "dm-verity sidecar",
            path: named.to_owned(),
        }),
        (VerityMode::RequireSidecar, None) => Err(DaemonError::NoSidecar {
            blob: blob.to_owned(),
            sidecar: side,
        }),
        _ => computed(blob, blob_len, trees_dir),
    }
}

/// The mapping of an appended tree from `side`, checked: parameters from the superblock at
/// `hashoffset`, the tree inside the blob, the root hash the hash of the top block.
fn checked_sidecar(blob: &Path, side: &Path, blob_len: u64) -> Result<VerityMapping, DaemonError> {
    let verity = |source| DaemonError::Verity {
        blob: blob.to_owned(),
        source,
    };
    let sidecar = Sidecar::read(side).map_err(verity)?;
    let superblock = crate::plan::read_superblock_at(blob, sidecar.hashoffset).map_err(verity)?;
    let found = Found {
        sidecar,
        blob_len,
        tree_len: None,
        superblock,
    };
    let m = mapping(blob, &found)?;
    let top = m.hash_start_block * u64::from(m.hash_block_size);
    check_top_block(blob, top, &m).map_err(verity)?;
    Ok(m)
}

/// What the daemon keeps beside a computed tree.
#[derive(Debug, Serialize, Deserialize)]
struct TreeInfo {
    roothash: String,
    blob: PathBuf,
}

/// The blob's cache key: its path and identity (a blob rewritten in place gets a new tree).
fn tree_key(blob: &Path, meta: &fs::Metadata) -> String {
    let mut h = Sha256::new();
    h.update(blob.as_os_str().as_encoded_bytes());
    for n in [
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
    ] {
        h.update(n.to_le_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

fn computed(blob: &Path, blob_len: u64, trees_dir: &Path) -> Result<LayerVerity, DaemonError> {
    let verity = |source| DaemonError::Verity {
        blob: blob.to_owned(),
        source,
    };
    let meta = fs::metadata(blob).map_err(DaemonError::io("stat", blob))?;
    let key = tree_key(blob, &meta);
    let tree = trees_dir.join(format!("{key}.tree"));
    let info_path = trees_dir.join(format!("{key}.json"));
    let mut created = Vec::new();
    let root = match read_info(&info_path) {
        Some(info) if tree.is_file() && info.blob == blob => info.roothash,
        _ => {
            fs::create_dir_all(trees_dir).map_err(DaemonError::io("create", trees_dir))?;
            let opts = FormatOptions {
                superblock: true,
                sidecar: false,
                target: HashTarget::File(tree.clone()),
                ..FormatOptions::containerd()
            };
            let report = format_file(blob, &opts, None).map_err(verity)?;
            created.push(tree.clone());
            let info = TreeInfo {
                roothash: report.root_hash.clone(),
                blob: blob.to_owned(),
            };
            write_info(&info_path, &info)?;
            created.push(info_path.clone());
            tracing::info!(blob = %blob.display(), tree = %tree.display(), root_hash = %info.roothash, "computed a dm-verity tree");
            info.roothash
        }
    };
    let tree_len = fs::metadata(&tree)
        .map_err(DaemonError::io("stat", &tree))?
        .len();
    let superblock = crate::plan::read_superblock_at(&tree, 0).map_err(verity)?;
    RootHash::parse(&root, HashAlgorithm::Sha256).map_err(|e| verity(e.into()))?;
    let found = Found {
        sidecar: Sidecar {
            roothash: root,
            hashoffset: blob_len.div_ceil(LAYER_ALIGN) * LAYER_ALIGN,
        },
        blob_len,
        tree_len: Some(tree_len),
        superblock,
    };
    let m = mapping(blob, &found)?;
    // the tree's top block sits right after the superblock's hash block
    let top_in_tree = m.hash_start_block * u64::from(m.hash_block_size) - found.sidecar.hashoffset;
    check_top_block(&tree, top_in_tree, &m).map_err(verity)?;
    Ok(LayerVerity {
        tree: Some(tree),
        mapping: Some(m),
        created,
    })
}

fn read_info(path: &Path) -> Option<TreeInfo> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

fn write_info(path: &Path, info: &TreeInfo) -> Result<(), DaemonError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec(info).map_err(|e| DaemonError::Io {
        what: "encode",
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    fs::write(&tmp, text).map_err(DaemonError::io("write", &tmp))?;
    fs::rename(&tmp, path).map_err(DaemonError::io("rename into place", path))
}
