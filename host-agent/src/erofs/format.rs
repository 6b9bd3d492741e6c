//! EROFS on-disk structures, as the kernel's `fs/erofs/erofs_fs.h` defines them (all
//! little-endian). The full writer uses only what a Linux 5.4 kernel reads (4096-byte
//! blocks, no compression, no chunks, no long xattr prefixes); the tar index adds
//! 512-byte blocks and chunk-based files (`index/`).

/// Block size of the full writer: 4096 bytes (`blkszbits` 12).
pub const BLOCK_SIZE: u64 = 4096;
pub const BLOCK_BITS: u8 = 12;
/// Block size of a tar index: 512 bytes (`blkszbits` 9), the tar's own block size.
pub const INDEX_BLOCK_BITS: u8 = 9;
/// `EROFS_FEATURE_INCOMPAT_CHUNKED_FILE`: some inodes are chunk-based.
pub const FEATURE_INCOMPAT_CHUNKED_FILE: u32 = 0x4;
/// `EROFS_CHUNK_FORMAT_INDEXES`: 8-byte chunk indexes rather than 4-byte block-map entries.
pub const CHUNK_FORMAT_INDEXES: u16 = 0x20;
/// `EROFS_CHUNK_FORMAT_BLKBITS_MASK`: chunk bits minus block bits.
pub const CHUNK_FORMAT_BLKBITS_MASK: u16 = 0x1F;
/// Bytes of one `erofs_inode_chunk_index` `{advise u16, device_id u16, blkaddr u32}`.
pub const CHUNK_INDEX_SIZE: u64 = 8;
/// Bytes before the first block that may hold anything but the superblock (its end).
pub const SUPER_END: u64 = SUPER_OFFSET as u64 + 128;
/// The superblock sits at byte 1024 of block 0.
pub const SUPER_OFFSET: usize = 1024;
pub const SUPER_MAGIC: u32 = 0xE0F5_E1E2;
/// `EROFS_FEATURE_COMPAT_SB_CHKSUM`: the superblock carries a crc32c.
pub const FEATURE_COMPAT_SB_CHKSUM: u32 = 0x1;
/// "No block" in `raw_blkaddr` (a fully inline file).
pub const NULL_ADDR: u32 = 0xFFFF_FFFF;

pub const COMPACT_INODE_SIZE: u64 = 32;
pub const EXTENDED_INODE_SIZE: u64 = 64;
/// Inodes are addressed in 32-byte slots: `nid = offset / 32`.
pub const SLOT_SIZE: u64 = 32;

/// Data layouts (`i_format` bits 1–3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataLayout {
    /// Whole blocks from `raw_blkaddr`, the last one zero-padded.
    FlatPlain = 0,
    /// Whole blocks from `raw_blkaddr`, the tail right after the inode and its xattrs.
    FlatInline = 2,
    /// Chunks listed by the chunk indexes after the inode and its xattrs.
    ChunkBased = 4,
}

/// `EROFS_FT_*` dirent file types (the kernel's `FT_*`).
pub mod ft {
    pub const REG: u8 = 1;
    pub const DIR: u8 = 2;
    pub const CHRDEV: u8 = 3;
    pub const BLKDEV: u8 = 4;
    pub const FIFO: u8 = 5;
    pub const SYMLINK: u8 = 7;
}

/// `S_IF*` file type bits of `i_mode`.
pub mod mode {
    pub const S_IFMT: u32 = 0o170_000;
    pub const S_IFSOCK: u32 = 0o140_000;
    pub const S_IFLNK: u32 = 0o120_000;
    pub const S_IFREG: u32 = 0o100_000;
    pub const S_IFBLK: u32 = 0o060_000;
    pub const S_IFDIR: u32 = 0o040_000;
    pub const S_IFCHR: u32 = 0o020_000;
    pub const S_IFIFO: u32 = 0o010_000;
}

/// The size of one on-disk dirent: `{nid u64, nameoff u16, file_type u8, reserved u8}`.
pub const DIRENT_SIZE: u64 = 12;

/// Superblock fields layerpass sets; everything else is zero.
#[derive(Debug, Clone)]
pub struct Superblock {
    pub root_nid: u16,
    pub inos: u64,
    pub build_time: u64,
    pub blocks: u32,
    pub meta_blkaddr: u32,
    pub xattr_blkaddr: u32,
    pub uuid: [u8; 16],
    /// `blkszbits`: [`BLOCK_BITS`] or [`INDEX_BLOCK_BITS`].
    pub block_bits: u8,
    pub feature_incompat: u32,
    /// Set `FEATURE_COMPAT_SB_CHKSUM` and the crc32c. Not with 512-byte blocks:
    /// erofs-utils 1.8.6's `fsck.erofs` and `dump.erofs` compute the checksum over
    /// `blksz - 1024` bytes and crash when the block is smaller than 1024, and Linux
    /// changed the covered length for such blocks; dm-verity covers the superblock anyway.
    pub checksum: bool,
}

impl Superblock {
    /// The blocks before the first one free for anything else: zeros, the 128-byte
    /// superblock at 1024, its crc32c (block 0 with 4096-byte blocks, blocks 0–2 with 512).
    pub fn to_block(&self) -> Vec<u8> {
        let bs = 1u64 << self.block_bits;
        let mut b = vec![0u8; SUPER_END.next_multiple_of(bs) as usize];
        let s = &mut b[SUPER_OFFSET..];
        s[0..4].copy_from_slice(&SUPER_MAGIC.to_le_bytes());
        // checksum at 4..8, filled below
        if self.checksum {
            s[8..12].copy_from_slice(&FEATURE_COMPAT_SB_CHKSUM.to_le_bytes());
        }
        s[12] = self.block_bits;
        s[13] = 0; // sb_extslots
        s[14..16].copy_from_slice(&self.root_nid.to_le_bytes());
        s[16..24].copy_from_slice(&self.inos.to_le_bytes());
        s[24..32].copy_from_slice(&self.build_time.to_le_bytes());
        s[32..36].copy_from_slice(&0u32.to_le_bytes()); // build_time_nsec
        s[36..40].copy_from_slice(&self.blocks.to_le_bytes());
        s[40..44].copy_from_slice(&self.meta_blkaddr.to_le_bytes());
        s[44..48].copy_from_slice(&self.xattr_blkaddr.to_le_bytes());
        s[48..64].copy_from_slice(&self.uuid);
        // volume_name 64..80 zero
        s[80..84].copy_from_slice(&self.feature_incompat.to_le_bytes());
        // the rest zero (no device table: extra_devices 0)
        // The kernel's `erofs_superblock_csum_verify` covers `blksz - 1024` bytes from
        // the superblock when the block is larger than 1024: 3072 with 4096-byte blocks.
        if self.checksum {
            let crc = crc32c_raw(&b[SUPER_OFFSET..]);
            b[SUPER_OFFSET + 4..SUPER_OFFSET + 8].copy_from_slice(&crc.to_le_bytes());
        }
        b
    }
}

/// Sets the UUID of the superblock in `head` (the image's first bytes, through the end of
/// the superblock's block) and recomputes its checksum.
pub fn reseal_superblock(head: &mut [u8], uuid: [u8; 16]) {
    let bs = 1usize << head[SUPER_OFFSET + 12];
    let len = if bs > SUPER_OFFSET {
        bs - SUPER_OFFSET
    } else {
        bs
    };
    let s = &mut head[SUPER_OFFSET..SUPER_OFFSET + len];
    s[48..64].copy_from_slice(&uuid);
    s[4..8].fill(0);
    let crc = crc32c_raw(s);
    s[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// What goes into one on-disk inode.
#[derive(Debug, Clone)]
pub struct InodeRecord {
    pub extended: bool,
    pub layout: DataLayout,
    pub xattr_icount: u16,
    /// File type and permission bits.
    pub mode: u16,
    pub nlink: u32,
    pub size: u64,
    /// `raw_blkaddr`, encoded rdev, or 0.
    pub i_u: u32,
    pub ino: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    pub mtime_nsec: u32,
}

impl InodeRecord {
    /// Appends the 32- or 64-byte inode to `out`. The caller has checked that the values
    /// fit a compact inode when `extended` is false.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let format = u16::from(self.extended) | ((self.layout as u16) << 1);
        out.extend_from_slice(&format.to_le_bytes());
        out.extend_from_slice(&self.xattr_icount.to_le_bytes());
        out.extend_from_slice(&self.mode.to_le_bytes());
        if self.extended {
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&self.size.to_le_bytes());
            out.extend_from_slice(&self.i_u.to_le_bytes());
            out.extend_from_slice(&self.ino.to_le_bytes());
            out.extend_from_slice(&self.uid.to_le_bytes());
            out.extend_from_slice(&self.gid.to_le_bytes());
            out.extend_from_slice(&self.mtime.to_le_bytes());
            out.extend_from_slice(&self.mtime_nsec.to_le_bytes());
            out.extend_from_slice(&self.nlink.to_le_bytes());
            out.extend_from_slice(&[0u8; 16]);
        } else {
            out.extend_from_slice(&low16(self.nlink).to_le_bytes());
            out.extend_from_slice(&low32(self.size).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&self.i_u.to_le_bytes());
            out.extend_from_slice(&self.ino.to_le_bytes());
            out.extend_from_slice(&low16(self.uid).to_le_bytes());
            out.extend_from_slice(&low16(self.gid).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
    }
}

fn low16(v: u32) -> u16 {
    (v & 0xFFFF) as u16
}

fn low32(v: u64) -> u32 {
    (v & 0xFFFF_FFFF) as u32
}

/// The kernel's `new_encode_dev`: 12-bit major, 20-bit minor.
pub fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// crc32c (Castagnoli, reflected) with seed `!0` and no final xor: the kernel's
/// `crc32c(~0, ...)` as `erofs_superblock_csum_verify` computes it.
pub fn crc32c_raw(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc = CRC32C_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0x82F6_3B78 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The standard check value 0xE3069283 is with the final xor.
        assert_eq!(!crc32c_raw(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn device_numbers_encode_as_the_kernel_does() {
        assert_eq!(encode_dev(0, 0), 0);
        assert_eq!(encode_dev(1, 3), 0x103);
        assert_eq!(encode_dev(8, 0x12345), 0x1230_0845);
    }

    #[test]
    fn inodes_have_their_sizes() {
        let mut rec = InodeRecord {
            extended: false,
            layout: DataLayout::FlatInline,
            xattr_icount: 0,
            mode: 0o100_644,
            nlink: 1,
            size: 5,
            i_u: NULL_ADDR,
            ino: 1,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
        };
        let mut out = Vec::new();
        rec.encode(&mut out);
        assert_eq!(out.len() as u64, COMPACT_INODE_SIZE);
        assert_eq!(out[0], 4);
        rec.extended = true;
        out.clear();
        rec.encode(&mut out);
        assert_eq!(out.len() as u64, EXTENDED_INODE_SIZE);
        assert_eq!(out[0], 5);
    }
}
