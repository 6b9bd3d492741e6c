//! `veritysetup verify`: find the hash area, read its parameters, check every block.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Progress;
use super::error::VerityError;
use super::geometry::Geometry;
use super::hash::RootHash;
use super::params::VerityParams;
use super::sidecar::{Sidecar, sidecar_path};
use super::superblock::{SUPERBLOCK_SIZE, Superblock};
use super::verify::{VerifyLocation, verify_tree};

/// Where to find the tree and, without a superblock, its parameters.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Parameters used when there is no superblock (with one, the superblock's win, as in
    /// veritysetup).
    pub params: VerityParams,
    pub superblock: bool,
    /// Separate hash file; the data file itself when absent.
    pub hash_file: Option<PathBuf>,
    /// Offset of the hash area. Default: 0 in a separate file; for an appended tree, the
    /// sidecar's `hashoffset`, else the end of `data_blocks`.
    pub hash_offset: Option<u64>,
    pub data_blocks: Option<u64>,
}

/// What was checked.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VerifyReport {
    pub root_hash: String,
    pub salt: String,
    pub hash_offset: u64,
    pub data_blocks: u64,
    pub hash_start_block: u64,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub hash_algorithm: String,
    pub format: u32,
}

/// Verifies `data_path` against `root_hex`; [`VerityError::Mismatch`] names the first bad
/// block.
pub fn verify_file(
    data_path: &Path,
    root_hex: &str,
    opts: &VerifyOptions,
    progress: Option<Progress<'_>>,
) -> Result<VerifyReport, VerityError> {
    let data = File::open(data_path).map_err(VerityError::io("open", data_path))?;
    let data_size = data
        .metadata()
        .map_err(VerityError::io("stat", data_path))?
        .len();
    let hash_path = opts
        .hash_file
        .clone()
        .unwrap_or_else(|| data_path.to_owned());
    let hash = File::open(&hash_path).map_err(VerityError::io("open", &hash_path))?;
    let hash_size = hash
        .metadata()
        .map_err(VerityError::io("stat", &hash_path))?
        .len();

    let hash_offset = match (opts.hash_offset, &opts.hash_file) {
        (Some(o), _) => o,
        (None, Some(_)) => 0,
        (None, None) => {
            let side = sidecar_path(data_path);
            if side.exists() {
                Sidecar::read(&side)?.hashoffset
            } else if let (false, Some(n)) = (opts.superblock, opts.data_blocks) {
                n * u64::from(opts.params.data_block_size)
            } else {
                return Err(VerityError::BadSidecar {
                    path: side,
                    reason: "it does not exist and no --hash-offset was given, so the hash \
                             area cannot be found"
                        .into(),
                });
            }
        }
    };

    let (params, data_blocks, tree_start) = if opts.superblock {
        let mut raw = [0u8; SUPERBLOCK_SIZE];
        hash.read_exact_at(&mut raw, hash_offset)
            .map_err(|_| VerityError::BadSuperblock {
                path: hash_path.clone(),
                offset: hash_offset,
                reason: format!("the file ends at byte {hash_size}"),
            })?;
        let sb = Superblock::parse(&raw, &hash_path, hash_offset)?;
        let hbs = u64::from(sb.params.hash_block_size);
        let start = (hash_offset + SUPERBLOCK_SIZE as u64).div_ceil(hbs) * hbs;
        (sb.params, sb.data_blocks, start)
    } else {
        opts.params.validate()?;
        let dbs = u64::from(opts.params.data_block_size);
        let n = match (opts.data_blocks, &opts.hash_file) {
            (Some(n), _) => n,
            (None, Some(_)) => data_size / dbs,
            (None, None) => hash_offset / dbs,
        };
        (opts.params.clone(), n, hash_offset)
    };
    let geometry = Geometry::new(&params, data_blocks)?;
    if geometry.data_bytes() > data_size {
        return Err(VerityError::NotEnoughData {
            path: data_path.to_owned(),
            available: data_size / u64::from(params.data_block_size),
            requested: data_blocks,
        });
    }
    let tree_end = if geometry.levels.is_empty() {
        // No tree: only the superblock (if any) must be there.
        hash_offset
            + if opts.superblock {
                SUPERBLOCK_SIZE as u64
            } else {
                0
            }
    } else {
        tree_start + geometry.tree_bytes()
    };
    if tree_end > hash_size {
        return Err(VerityError::TruncatedHashArea {
            path: hash_path,
            size: hash_size,
            needed: tree_end,
        });
    }
    let root = RootHash::parse(root_hex, params.algorithm)?;
    let loc = VerifyLocation {
        data: (&data, data_path),
        hash: (&hash, &hash_path),
        tree_start,
    };
    verify_tree(loc, &params, &geometry, &root, progress)?;
    Ok(VerifyReport {
        root_hash: root.to_hex(),
        salt: params.salt.to_table_hex(),
        hash_offset,
        data_blocks,
        hash_start_block: tree_start / u64::from(params.hash_block_size),
        data_block_size: params.data_block_size,
        hash_block_size: params.hash_block_size,
        hash_algorithm: params.algorithm.name().to_owned(),
        format: params.hash_type.number(),
    })
}
