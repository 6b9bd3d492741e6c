//! A layer's dm-verity mapping, read from its files the way containerd lays them out.
//!
//! - Tree appended (containerd's layout): the `.dmverity` sidecar gives the root hash and
//!   `hashoffset`. With a veritysetup superblock at that offset (what containerd and
//!   `layerpass convert` write), the superblock gives the algorithm, format, block sizes,
//!   data blocks and salt, and the tree starts one hash block later:
//!   `hash_start_block = hashoffset / hash_block_size + 1`. Without one, containerd's
//!   parameters apply (sha256, format 1, 4096/4096, 32 zero bytes of salt),
//!   `data_blocks = hashoffset / 4096` and the tree starts at the offset.
//! - Separate tree file (`FILE:TREE`): the disk holds the blob padded to 4096 bytes, then
//!   the tree file; its superblock (at its start, veritysetup's default) gives the
//!   parameters. The root hash comes from the blob's sidecar
//!   (`layerpass verity format --hash-file T --sidecar`); the host never derives a root hash
//!   from the tree it serves.
//! - Index layer (`META+TAR[#OFFSET][:TREE]`): the disk holds `[META][TAR]` padded to 4096
//!   bytes, then the tree file (`META.tree` by default) — a separate tree whose "blob" is
//!   `[META][TAR]`. The sidecar `META.dmverity` must give that padded length as its
//!   `hashoffset` (what `layerpass convert layer --index` writes), the tree's superblock
//!   512-byte data blocks (the EROFS block size) covering all of it: `hash_start_block =
//!   hashoffset / hash_block_size + 1`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use layerpass_types::{CorruptionMode, RootHash, VerityMapping};

use super::PlanError;
use crate::export::index::{INDEX_BLOCK, check_index};
use crate::export::layer::{LAYER_ALIGN, index_tree_path};
use crate::export::spec::LayerFileSpec;
use crate::verity::{
    Geometry, SUPERBLOCK_SIZE, Sidecar, Superblock, VerityError, VerityParams, sidecar_path,
};

const SIGNATURE: &[u8; 8] = b"verity\0\0";

/// The dm-verity mapping of the layer `spec` names, as it sits on its disk (a layer disk,
/// or a composite partition: both start with the padded blob).
pub fn layer_mapping(spec: &LayerFileSpec) -> Result<VerityMapping, PlanError> {
    let blob = &spec.blob;
    let verity = |source: VerityError| PlanError::Verity {
        path: blob.clone(),
        source,
    };
    let side = sidecar_path(blob);
    if !side.exists() {
        return Err(PlanError::NoVerity { path: blob.clone() });
    }
    let sidecar = Sidecar::read(&side).map_err(verity)?;
    if spec.index.is_some() {
        return index_mapping(spec, sidecar);
    }
    let blob_len = std::fs::metadata(blob)
        .map_err(VerityError::io("stat", blob))
        .map_err(verity)?
        .len();
    let found = match &spec.tree {
        None => Found {
            superblock: read_superblock_at(blob, sidecar.hashoffset).map_err(verity)?,
            sidecar,
            blob_len,
            tree_len: None,
        },
        Some(tree) => {
            let tree_err = |source| PlanError::Verity {
                path: tree.clone(),
                source,
            };
            let tree_len = std::fs::metadata(tree)
                .map_err(VerityError::io("stat", tree))
                .map_err(tree_err)?
                .len();
            Found {
                superblock: read_superblock_at(tree, 0).map_err(tree_err)?,
                sidecar,
                blob_len,
                tree_len: Some(tree_len),
            }
        }
    };
    mapping(blob, &found)
}

/// The mapping of an index layer: a separate tree after `[META][TAR]` padded to 4096,
/// checked against the sidecar and the sizes of the files.
fn index_mapping(spec: &LayerFileSpec, sidecar: Sidecar) -> Result<VerityMapping, PlanError> {
    let blob = &spec.blob;
    let Some(tar) = &spec.index else {
        return Err(PlanError::NoVerity { path: blob.clone() });
    };
    let g = check_index(blob, tar)?;
    let data_len = g.data_len();
    let invalid = |reason: String| PlanError::Invalid {
        what: format!("index layer {}", blob.display()),
        reason,
    };
    if sidecar.hashoffset != data_len {
        return Err(invalid(format!(
            "its sidecar's hashoffset {} is not where its tree starts on the disk: {} bytes of \
             metadata and {} of tar ({}), padded to 4096, end at byte {data_len} (a sidecar \
             of another layer or tar?)",
            sidecar.hashoffset,
            g.meta_len,
            g.tar_len,
            tar.path.display()
        )));
    }
    let tree = spec.tree.clone().unwrap_or_else(|| index_tree_path(blob));
    let tree_err = |source| PlanError::Verity {
        path: tree.clone(),
        source,
    };
    let tree_len = std::fs::metadata(&tree)
        .map_err(VerityError::io("stat", &tree))
        .map_err(tree_err)?
        .len();
    let Some(superblock) = read_superblock_at(&tree, 0).map_err(tree_err)? else {
        return Err(invalid(format!(
            "its tree {} has no veritysetup superblock",
            tree.display()
        )));
    };
    let dbs = u64::from(superblock.params.data_block_size);
    if dbs != INDEX_BLOCK {
        return Err(invalid(format!(
            "its tree {} has {dbs}-byte data blocks; a 512-byte-block EROFS index needs 512",
            tree.display()
        )));
    }
    if superblock.data_blocks.saturating_mul(dbs) != data_len {
        return Err(invalid(format!(
            "its tree {} covers {} blocks of 512 bytes, not the {data_len} bytes of metadata, \
             tar and padding",
            tree.display(),
            superblock.data_blocks
        )));
    }
    mapping(
        blob,
        &Found {
            sidecar,
            blob_len: data_len,
            tree_len: Some(tree_len),
            superblock: Some(superblock),
        },
    )
}

/// What [`layer_mapping`] reads from a layer's files.
#[derive(Debug, Clone)]
pub struct Found {
    /// The blob's sidecar.
    pub sidecar: Sidecar,
    /// The blob's length in bytes.
    pub blob_len: u64,
    /// The separate tree file's length (`None`: the tree is appended to the blob).
    pub tree_len: Option<u64>,
    /// The veritysetup superblock: at the sidecar's `hashoffset` in the blob, or at the
    /// start of the tree file (`None`: no signature there).
    pub superblock: Option<Superblock>,
}

/// The mapping of what was read from the layer `blob`'s files (named in errors): the
/// checks of [`layer_mapping`] without the file system, for the fuzz harness.
pub fn mapping(blob: &Path, found: &Found) -> Result<VerityMapping, PlanError> {
    let verity = |source: VerityError| PlanError::Verity {
        path: blob.to_owned(),
        source,
    };
    let Found {
        sidecar,
        blob_len,
        tree_len,
        superblock,
    } = found;
    // (where the hash area starts on the disk, where the data ends, where the disk ends)
    let (area_start, data_limit, disk_end) = match tree_len {
        None => (sidecar.hashoffset, sidecar.hashoffset, *blob_len),
        Some(tree_len) => {
            let start = blob_len.div_ceil(LAYER_ALIGN).saturating_mul(LAYER_ALIGN);
            (start, *blob_len, start.saturating_add(*tree_len))
        }
    };
    let (params, data_blocks, tree_skip) = match superblock {
        Some(sb) => (sb.params.clone(), sb.data_blocks, 1),
        None => {
            let p = VerityParams::containerd();
            let dbs = u64::from(p.data_block_size);
            if !data_limit.is_multiple_of(dbs) {
                return Err(PlanError::Invalid {
                    what: format!("layer {}", blob.display()),
                    reason: format!(
                        "no veritysetup superblock, and its data ({data_limit} bytes) is not \
                         whole {dbs}-byte blocks"
                    ),
                });
            }
            (p, data_limit / dbs, 0)
        }
    };
    let hbs = u64::from(params.hash_block_size);
    if !area_start.is_multiple_of(hbs) {
        return Err(PlanError::Invalid {
            what: format!("layer {}", blob.display()),
            reason: format!(
                "its hash area starts at byte {area_start}, not a multiple of the hash block \
                 size {hbs}"
            ),
        });
    }
    let data_end = data_blocks.saturating_mul(u64::from(params.data_block_size));
    if data_end > data_limit {
        return Err(PlanError::Invalid {
            what: format!("layer {}", blob.display()),
            reason: format!(
                "{data_blocks} data blocks of {} bytes reach byte {data_end}, past the data's \
                 end at {data_limit}",
                params.data_block_size
            ),
        });
    }
    let geometry = Geometry::new(&params, data_blocks).map_err(verity)?;
    let tree_start = (area_start / hbs + tree_skip).saturating_mul(hbs);
    let tree_end = tree_start.saturating_add(geometry.tree_bytes());
    if tree_end > disk_end {
        return Err(PlanError::Invalid {
            what: format!("layer {}", blob.display()),
            reason: format!(
                "its hash tree would span bytes {tree_start}..{tree_end}, past the end of the \
                 disk at byte {disk_end} (a wrong hashoffset in the sidecar?)"
            ),
        });
    }
    let root_hash = RootHash::parse(&sidecar.roothash, params.algorithm).map_err(|source| {
        PlanError::Contract {
            what: format!("layer {} sidecar roothash", blob.display()),
            source,
        }
    })?;
    Ok(VerityMapping {
        algorithm: params.algorithm,
        format: params.hash_type.number(),
        data_block_size: params.data_block_size,
        hash_block_size: params.hash_block_size,
        data_blocks,
        hash_start_block: area_start / hbs + tree_skip,
        salt: params.salt.as_bytes().to_vec(),
        root_hash: root_hash.as_bytes().to_vec(),
        on_corruption: CorruptionMode::Eio,
    })
}

/// The veritysetup superblock at `offset` of `path`, or `None` when there is none there
/// (no signature). A signature with a bad superblock behind it is an error.
pub fn read_superblock_at(path: &Path, offset: u64) -> Result<Option<Superblock>, VerityError> {
    let f = File::open(path).map_err(VerityError::io("open", path))?;
    let mut b = [0u8; SUPERBLOCK_SIZE];
    match f.read_exact_at(&mut b, offset) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(VerityError::io("read", path)(e)),
    }
    if &b[..8] != SIGNATURE {
        return Ok(None);
    }
    Superblock::parse(&b, path, offset).map(Some)
}
