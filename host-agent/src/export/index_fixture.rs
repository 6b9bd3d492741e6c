//! Test fixtures: index layers at the byte level (an EROFS superblock as far as the host's
//! checks read it, a tar of patterned records, a real dm-verity tree over `[META][TAR]` by
//! our veritysetup-identical formatter) and containerd-style tar-index blobs (verity
//! 512/512 appended, with the sidecar).

use std::path::{Path, PathBuf};

use super::index::tests::meta_bytes;
use super::layer::index_tree_path;
use crate::verity::{
    FormatOptions, FormatReport, HashTarget, Sidecar, VerityParams, format_file, sidecar_path,
};

/// An index layer's files.
pub(crate) struct IndexFixture {
    pub meta: PathBuf,
    pub tar: PathBuf,
    pub tree: PathBuf,
    /// The tar's offset in its file.
    pub offset: u64,
    pub meta_bytes: Vec<u8>,
    pub tar_bytes: Vec<u8>,
    /// `[META][TAR]` padded to 4096.
    pub data_len: u64,
    pub report: FormatReport,
}

impl IndexFixture {
    /// `META+TAR#OFFSET`.
    pub fn spec(&self) -> String {
        format!(
            "{}+{}#{}",
            self.meta.display(),
            self.tar.display(),
            self.offset
        )
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) | 1)
        .collect()
}

/// `name` (metadata of `meta_blocks` blocks) and `name.tar` (`tar_records` records after
/// `prefix_records` records of something else), its tree `name.tree` (data 512, hash
/// 4096, superblock) and sidecar `name.dmverity` as `convert layer --index` writes them.
pub(crate) fn index_layer(
    dir: &Path,
    name: &str,
    meta_blocks: u32,
    tar_records: u32,
    prefix_records: u32,
) -> IndexFixture {
    let meta = dir.join(name);
    let mut meta_b = meta_bytes(meta_blocks, meta_blocks + tar_records, 9);
    if let Some(rest) = meta_b.get_mut(2048..) {
        rest.fill(0x5a);
    }
    std::fs::write(&meta, &meta_b).unwrap();
    let tar_b = pattern(tar_records as usize * 512, meta_blocks as u8);
    let tar = dir.join(format!("{name}.tar"));
    let mut file = vec![0xEEu8; prefix_records as usize * 512];
    file.extend_from_slice(&tar_b);
    file.extend_from_slice(&[0xDD; 1024]);
    std::fs::write(&tar, &file).unwrap();
    let data_len = (meta_b.len() + tar_b.len()).div_ceil(4096) as u64 * 4096;
    // the formatter reads the data from one file: a test-only copy
    let data = dir.join(format!("{name}.data"));
    let mut d = meta_b.clone();
    d.extend_from_slice(&tar_b);
    d.resize(data_len as usize, 0);
    std::fs::write(&data, &d).unwrap();
    let tree = index_tree_path(&meta);
    let opts = FormatOptions {
        params: VerityParams {
            data_block_size: 512,
            ..VerityParams::containerd()
        },
        target: HashTarget::File(tree.clone()),
        sidecar: false,
        ..FormatOptions::containerd()
    };
    let report = format_file(&data, &opts, None).unwrap();
    std::fs::remove_file(&data).unwrap();
    Sidecar {
        roothash: report.root_hash.clone(),
        hashoffset: data_len,
    }
    .write(&sidecar_path(&meta))
    .unwrap();
    IndexFixture {
        meta,
        tar,
        tree,
        offset: u64::from(prefix_records) * 512,
        meta_bytes: meta_b,
        tar_bytes: tar_b,
        data_len,
        report,
    }
}

/// A containerd tar-index style blob: `blocks` 512-byte blocks of data with a verity tree
/// of `data`/`hash`-byte blocks appended, a superblock and the sidecar.
pub(crate) fn appended_blob(
    dir: &Path,
    name: &str,
    blocks: usize,
    data: u32,
    hash: u32,
) -> (PathBuf, FormatReport) {
    let p = dir.join(name);
    std::fs::write(&p, pattern(blocks * 512, 7)).unwrap();
    let opts = FormatOptions {
        params: VerityParams {
            data_block_size: data,
            hash_block_size: hash,
            ..VerityParams::containerd()
        },
        ..FormatOptions::containerd()
    };
    let r = format_file(&p, &opts, None).unwrap();
    (p, r)
}
