//! Index layers: EROFS metadata (`META`, 512-byte blocks) whose regular files' chunks point
//! into an uncompressed tar (`TAR`, from byte `OFFSET` of its file) that follows it on the
//! same disk, as `layerpass convert layer --index` writes them. The disk is
//! `[META][TAR][zeros to 4096][TREE padded to 4096]`, assembled from the files as they are.
//!
//! What is checked before anything is served (the superblock read by the index writer's
//! own `erofs::index::IndexInfo::read`): `META` is a regular file, a whole number of
//! 512-byte blocks, with an EROFS superblock at byte 1024 whose block size is 512; its
//! `blocks` field covers more than `META` (the rest is the tar: `blocks * 512 - len(META)`
//! bytes); `OFFSET` is on a 512-byte record boundary; the file `TAR` is a whole number of
//! 512-byte records and holds the tar's bytes from `OFFSET`.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::error::DiskError;
use crate::erofs::ErofsError;
use crate::erofs::index::IndexInfo;

/// The EROFS block size of an index (`blkszbits` 9) and the tar's record size.
pub const INDEX_BLOCK: u64 = 512;

/// The tar an index layer's metadata points into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexTar {
    /// The file holding the tar.
    pub path: PathBuf,
    /// Where the tar starts in it (a layer tar inside a `docker save` archive).
    pub offset: u64,
}

/// The sizes an index layer's files were checked to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexGeometry {
    /// Length of the metadata file (a multiple of 512).
    pub meta_len: u64,
    /// Bytes of the tar served after it: `blocks * 512 - meta_len` (a multiple of 512).
    pub tar_len: u64,
}

impl IndexGeometry {
    /// `[META][TAR]` padded to 4096 bytes: where the tree starts on the disk, the sidecar's
    /// `hashoffset`, and the data dm-verity covers.
    pub fn data_len(&self) -> u64 {
        (self.meta_len + self.tar_len).div_ceil(super::layer::LAYER_ALIGN)
            * super::layer::LAYER_ALIGN
    }
}

/// Checks an index layer's metadata file and tar (see the module documentation) and
/// returns their sizes.
pub fn check_index(meta: &Path, tar: &IndexTar) -> Result<IndexGeometry, DiskError> {
    let bad_meta = |reason: String| DiskError::Invalid {
        what: format!("index metadata {}", meta.display()),
        reason,
    };
    let m = File::open(meta).map_err(DiskError::io("open", meta))?;
    let md = m.metadata().map_err(DiskError::io("stat", meta))?;
    if !md.is_file() {
        return Err(bad_meta("not a regular file".into()));
    }
    let meta_len = md.len();
    if meta_len == 0 || !meta_len.is_multiple_of(INDEX_BLOCK) {
        return Err(bad_meta(format!(
            "its length {meta_len} is not a whole number of 512-byte EROFS blocks"
        )));
    }
    // the superblock as the index writer reads it back: magic, 512-byte blocks, `blocks`
    let info = IndexInfo::read(meta).map_err(|e| match e {
        ErofsError::NotAnIndex { reason, .. } => bad_meta(reason),
        ErofsError::NotErofs { .. } => bad_meta("no EROFS superblock at byte 1024".into()),
        other => bad_meta(other.to_string()),
    })?;
    let total = u64::from(info.blocks) * INDEX_BLOCK;
    if total <= meta_len {
        return Err(bad_meta(format!(
            "its superblock counts {} blocks ({total} bytes), no more than the metadata's own \
             {meta_len} bytes: it addresses no tar (not an index layer?)",
            info.blocks
        )));
    }
    let tar_len = total - meta_len;
    check_tar(tar, tar_len)?;
    Ok(IndexGeometry { meta_len, tar_len })
}

/// The tar's file holds `tar_len` bytes from its offset, in whole 512-byte records.
fn check_tar(tar: &IndexTar, tar_len: u64) -> Result<(), DiskError> {
    let path = &tar.path;
    let bad = |reason: String| DiskError::Invalid {
        what: format!("index tar {}", path.display()),
        reason,
    };
    let md = std::fs::metadata(path).map_err(DiskError::io("stat", path))?;
    if !md.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let len = md.len();
    if !len.is_multiple_of(INDEX_BLOCK) {
        return Err(bad(format!(
            "its length {len} is not a whole number of 512-byte tar records"
        )));
    }
    if !tar.offset.is_multiple_of(INDEX_BLOCK) {
        return Err(bad(format!(
            "offset {} is not on a 512-byte tar record boundary",
            tar.offset
        )));
    }
    let end = tar.offset.checked_add(tar_len);
    if end.is_none_or(|end| end > len) {
        return Err(bad(format!(
            "the metadata addresses {tar_len} bytes of tar from byte {}, but the file has {len} \
             bytes (a different or truncated tar?)",
            tar.offset
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Metadata of `meta_blocks` 512-byte blocks whose superblock counts `blocks` blocks.
    pub(crate) fn meta_bytes(meta_blocks: u32, blocks: u32, blkszbits: u8) -> Vec<u8> {
        let mut m = vec![0u8; meta_blocks as usize * 512];
        let sb = &mut m[1024..];
        sb[0..4].copy_from_slice(&0xE0F5_E1E2u32.to_le_bytes());
        sb[12] = blkszbits;
        sb[36..40].copy_from_slice(&blocks.to_le_bytes());
        m
    }

    fn setup(meta: &[u8], tar: &[u8]) -> (tempfile::TempDir, PathBuf, IndexTar) {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("meta");
        std::fs::write(&m, meta).unwrap();
        let t = dir.path().join("layer.tar");
        std::fs::write(&t, tar).unwrap();
        let tar = IndexTar { path: t, offset: 0 };
        (dir, m, tar)
    }

    fn err(meta: &Path, tar: &IndexTar) -> String {
        check_index(meta, tar).unwrap_err().to_string()
    }

    #[test]
    fn a_valid_index_gives_its_sizes() {
        let (_d, m, t) = setup(&meta_bytes(4, 10, 9), &[1u8; 3072]);
        let g = check_index(&m, &t).unwrap();
        assert_eq!(
            g,
            IndexGeometry {
                meta_len: 2048,
                tar_len: 3072
            }
        );
        assert_eq!(g.data_len(), 8192);
        // a longer file (a tar inside an archive) is fine from an offset
        let (_d, m, mut t) = setup(&meta_bytes(4, 10, 9), &[1u8; 5120]);
        t.offset = 1024;
        assert_eq!(check_index(&m, &t).unwrap().tar_len, 3072);
    }

    #[test]
    fn metadata_length_must_be_whole_blocks() {
        let mut meta = meta_bytes(4, 10, 9);
        meta.push(0);
        let (_d, m, t) = setup(&meta, &[1u8; 3072]);
        assert!(
            err(&m, &t).contains("512-byte EROFS blocks"),
            "{}",
            err(&m, &t)
        );
    }

    #[test]
    fn metadata_must_be_a_regular_file() {
        let (d, _m, t) = setup(&meta_bytes(4, 10, 9), &[1u8; 3072]);
        assert!(err(d.path(), &t).contains("not a regular file"));
    }

    #[test]
    fn metadata_needs_the_erofs_magic() {
        let mut meta = meta_bytes(4, 10, 9);
        meta[1024] ^= 1;
        let (_d, m, t) = setup(&meta, &[1u8; 3072]);
        assert!(
            err(&m, &t).contains("no EROFS superblock"),
            "{}",
            err(&m, &t)
        );
        // too short for a superblock at all
        let (_d, m, t) = setup(&[0u8; 1024], &[1u8; 3072]);
        assert!(err(&m, &t).contains("too short"), "{}", err(&m, &t));
    }

    #[test]
    fn metadata_needs_512_byte_blocks() {
        let (_d, m, t) = setup(&meta_bytes(8, 10, 12), &[1u8; 3072]);
        assert!(err(&m, &t).contains("not 512"), "{}", err(&m, &t));
    }

    #[test]
    fn metadata_must_address_a_tar() {
        let (_d, m, t) = setup(&meta_bytes(4, 4, 9), &[1u8; 3072]);
        assert!(err(&m, &t).contains("addresses no tar"), "{}", err(&m, &t));
    }

    #[test]
    fn the_tar_must_hold_what_the_metadata_addresses() {
        let (_d, m, t) = setup(&meta_bytes(4, 10, 9), &[1u8; 2560]);
        assert!(err(&m, &t).contains("truncated"), "{}", err(&m, &t));
        // the same from an offset
        let (_d, m, mut t) = setup(&meta_bytes(4, 10, 9), &[1u8; 3072]);
        t.offset = 512;
        assert!(err(&m, &t).contains("truncated"), "{}", err(&m, &t));
        t.offset = u64::MAX - 511;
        assert!(err(&m, &t).contains("truncated"), "{}", err(&m, &t));
    }

    #[test]
    fn the_tar_is_whole_records() {
        let (_d, m, t) = setup(&meta_bytes(4, 10, 9), &[1u8; 3073]);
        assert!(
            err(&m, &t).contains("512-byte tar records"),
            "{}",
            err(&m, &t)
        );
        let (_d, m, mut t) = setup(&meta_bytes(4, 10, 9), &[1u8; 4096]);
        t.offset = 100;
        assert!(err(&m, &t).contains("record boundary"), "{}", err(&m, &t));
        let (d, m, _t) = setup(&meta_bytes(4, 10, 9), &[1u8; 3072]);
        let dir_tar = IndexTar {
            path: d.path().to_owned(),
            offset: 0,
        };
        assert!(err(&m, &dir_tar).contains("not a regular file"));
    }
}
