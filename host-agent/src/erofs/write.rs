//! Writes what the layout planned after the streamed file contents: directory blocks,
//! inodes with their xattrs and tails (or chunk indexes), shared xattrs, then the
//! superblock into the first block(s).

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::data::Tails;
use super::error::ErofsError;
use super::format::{
    BLOCK_SIZE, CHUNK_FORMAT_INDEXES, CHUNK_INDEX_SIZE, DIRENT_SIZE, FEATURE_INCOMPAT_CHUNKED_FILE,
    InodeRecord, NULL_ADDR, SLOT_SIZE, Superblock, ft, mode,
};
use super::layout::{Layout, chunk_bits, data_layout, dirents, effective_xattrs, split_xattrs};
use super::tree::{InodeId, Kind, Tree};
use super::xattr;

const ZEROS: [u8; BLOCK_SIZE as usize] = [0u8; BLOCK_SIZE as usize];

/// Sequential writer that pads with zeros up to a position.
struct Out<'a> {
    w: BufWriter<&'a File>,
    pos: u64,
    path: &'a Path,
}

impl Out<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), ErofsError> {
        self.w
            .write_all(bytes)
            .map_err(ErofsError::io("write", self.path))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad_to(&mut self, pos: u64) -> Result<(), ErofsError> {
        while self.pos < pos {
            let n = (pos - self.pos).min(BLOCK_SIZE) as usize;
            self.write(&ZEROS[..n])?;
        }
        Ok(())
    }
}

/// What [`write_rest`] did.
#[derive(Debug)]
pub struct Rest {
    /// The image's size in bytes.
    pub size: u64,
    /// Blocks of the data area zeroed after they were written (contents of files that a
    /// later entry replaced): whoever hashed them while they were written must again.
    pub zeroed: Vec<std::ops::Range<u64>>,
}

/// Writes the rest of the image.
pub fn write_rest(
    image: &File,
    path: &Path,
    tree: &Tree,
    layout: &Layout,
    tails: &Tails,
    uuid: [u8; 16],
) -> Result<Rest, ErofsError> {
    let mut f = image;
    let g = layout.geometry;
    let bs = g.block_size();
    let start = layout.dir_start * bs;
    f.seek(SeekFrom::Start(start))
        .map_err(ErofsError::io("seek", path))?;
    let mut out = Out {
        w: BufWriter::with_capacity(1 << 20, image),
        pos: start,
        path,
    };

    // Directory blocks outside the metadata.
    for &id in &layout.order {
        let slot = &layout.slots[id as usize];
        if slot.dir_blocks == 0 {
            continue;
        }
        let bytes = dir_bytes(tree, layout, id);
        let whole = (slot.dir_blocks * bs) as usize;
        debug_assert_eq!(out.pos, u64::from(slot.dir_blkaddr) * bs);
        out.write(&bytes[..whole.min(bytes.len())])?;
        out.pad_to(u64::from(slot.dir_blkaddr) * bs + whole as u64)?;
    }

    // Inodes.
    let meta = u64::from(layout.meta_blkaddr) * bs;
    out.pad_to(meta)?;
    let mut buf = Vec::with_capacity(bs as usize);
    for &id in &layout.order {
        let slot = &layout.slots[id as usize];
        let inode = &tree.inodes[id as usize];
        buf.clear();
        let chunked = g.chunked(&inode.kind);
        let (type_bits, size, i_u) = match &inode.kind {
            Kind::Dir { .. } => (
                mode::S_IFDIR,
                slot.dir_size,
                blkaddr(slot.dir_blocks, slot.dir_blkaddr, slot.inline),
            ),
            Kind::Reg(d) if chunked.is_some() => (
                mode::S_IFREG,
                d.size,
                // i_u.c: {format u16, reserved u16}
                u32::from(
                    CHUNK_FORMAT_INDEXES
                        | u16::from(chunk_bits(d.size, g.block_bits) - g.block_bits),
                ),
            ),
            Kind::Reg(d) => (
                mode::S_IFREG,
                d.size,
                blkaddr(d.blocks, d.blkaddr, slot.inline),
            ),
            Kind::Symlink(d) => (
                mode::S_IFLNK,
                d.size,
                blkaddr(d.blocks, d.blkaddr, slot.inline),
            ),
            Kind::Char { rdev } => (mode::S_IFCHR, 0, *rdev),
            Kind::Block { rdev } => (mode::S_IFBLK, 0, *rdev),
            Kind::Fifo => (mode::S_IFIFO, 0, 0),
        };
        let m = &inode.meta;
        InodeRecord {
            extended: slot.extended,
            layout: data_layout(slot, chunked.is_some()),
            xattr_icount: xattr_icount(slot.xattr_size, tree, id)?,
            mode: ((type_bits | u32::from(m.perm)) & 0xFFFF) as u16,
            nlink: slot.nlink,
            size,
            i_u,
            ino: slot.ino,
            uid: m.uid,
            gid: m.gid,
            mtime: m.mtime as u64,
            mtime_nsec: m.mtime_nsec,
        }
        .encode(&mut buf);
        if slot.xattr_size > 0 {
            encode_xattrs(tree, layout, id, &mut buf);
        }
        if let Some(d) = chunked {
            encode_chunks(d, layout, &mut buf)?;
        } else if slot.inline {
            match &inode.kind {
                Kind::Reg(d) | Kind::Symlink(d) => tails.read_into(d, &mut buf)?,
                Kind::Dir { .. } => {
                    let bytes = dir_bytes(tree, layout, id);
                    buf.extend_from_slice(&bytes[(slot.dir_blocks * bs) as usize..]);
                }
                _ => {}
            }
        }
        out.pad_to(meta + slot.nid * SLOT_SIZE)?;
        out.write(&buf)?;
    }
    out.pad_to(meta + layout.meta_bytes.next_multiple_of(bs))?;

    // Shared xattrs.
    if !layout.shared.is_empty() {
        let base = u64::from(layout.xattr_blkaddr) * bs;
        for ((name, value), xid) in &layout.shared {
            out.pad_to(base + u64::from(*xid) * 4)?;
            buf.clear();
            xattr::encode_entry(name, value, &mut buf);
            out.write(&buf)?;
        }
    }
    let end = layout.total_blocks * bs;
    out.pad_to(end)?;
    out.w.flush().map_err(ErofsError::io("write", path))?;
    drop(out);

    // Contents of files that a later entry replaced: zeroed, so they do not linger.
    // (An index's regular files are in the tar: nothing of theirs is in the image.)
    let mut zeroed = Vec::new();
    for (id, inode) in tree.inodes.iter().enumerate() {
        if let Kind::Reg(d) | Kind::Symlink(d) = &inode.kind
            && g.chunked(&inode.kind).is_none()
            && !layout.slots[id].reachable
            && d.blocks > 0
        {
            for b in 0..d.blocks {
                image
                    .write_all_at(&ZEROS[..bs as usize], (u64::from(d.blkaddr) + b) * bs)
                    .map_err(ErofsError::io("write", path))?;
            }
            zeroed.push(u64::from(d.blkaddr)..u64::from(d.blkaddr) + d.blocks);
        }
    }

    // An index counts the tar's blocks too: the filesystem spans both.
    let blocks = layout.total_blocks + g.tar_blocks.unwrap_or(0);
    let sb = Superblock {
        root_nid: u16::try_from(layout.slots[0].nid).unwrap_or(u16::MAX),
        inos: layout.order.len() as u64,
        build_time: tree.build_time,
        blocks: u32::try_from(blocks).map_err(|_| ErofsError::TooLarge { blocks })?,
        meta_blkaddr: layout.meta_blkaddr,
        xattr_blkaddr: layout.xattr_blkaddr,
        uuid,
        block_bits: g.block_bits,
        feature_incompat: if g.tar_blocks.is_some() {
            FEATURE_INCOMPAT_CHUNKED_FILE
        } else {
            0
        },
        checksum: g.block_bits >= 12,
    };
    image
        .write_all_at(&sb.to_block(), 0)
        .map_err(ErofsError::io("write", path))?;
    image.set_len(end).map_err(ErofsError::io("resize", path))?;
    Ok(Rest { size: end, zeroed })
}

/// The chunk indexes of a file whose contents are in the tar after the metadata, after
/// the inode and its xattrs at an 8-byte boundary: `{advise 0, device_id 0, blkaddr}`,
/// `blkaddr` absolute on the one disk `[metadata][tar]` (no device table).
fn encode_chunks(
    d: &super::tree::Data,
    layout: &Layout,
    buf: &mut Vec<u8>,
) -> Result<(), ErofsError> {
    let g = layout.geometry;
    let aligned = (buf.len() as u64).next_multiple_of(CHUNK_INDEX_SIZE) as usize;
    buf.resize(aligned, 0);
    let chunk_blocks = 1u64 << (chunk_bits(d.size, g.block_bits) - g.block_bits);
    let first = layout.total_blocks + u64::from(d.blkaddr);
    let mut addr = first;
    while addr < first + d.blocks {
        let a = u32::try_from(addr)
            .ok()
            .filter(|&a| a != NULL_ADDR)
            .ok_or(ErofsError::TooLarge { blocks: addr + 1 })?;
        buf.extend_from_slice(&0u16.to_le_bytes()); // advise
        buf.extend_from_slice(&0u16.to_le_bytes()); // device_id: this disk
        buf.extend_from_slice(&a.to_le_bytes());
        addr += chunk_blocks;
    }
    Ok(())
}

fn blkaddr(blocks: u64, addr: u32, inline: bool) -> u32 {
    match (blocks, inline) {
        (0, true) => NULL_ADDR,
        (0, false) => 0,
        _ => addr,
    }
}

fn xattr_icount(size: u64, tree: &Tree, id: InodeId) -> Result<u16, ErofsError> {
    if size == 0 {
        return Ok(0);
    }
    u16::try_from((size - 12) / 4 + 1).map_err(|_| ErofsError::BadXattr {
        entry: format!("inode {id} of {}", tree.inodes.len()),
        name: String::new(),
        reason: format!("xattrs take {size} bytes; an inode holds at most 262148"),
    })
}

/// The inline xattr area: header, shared ids, inline entries.
fn encode_xattrs(tree: &Tree, layout: &Layout, id: InodeId, buf: &mut Vec<u8>) {
    let all = effective_xattrs(tree, id);
    let (shared, inline) = split_xattrs(&all, &layout.shared_ids);
    buf.extend_from_slice(&0u32.to_le_bytes()); // h_name_filter: no filter (compat bit unset)
    // at most MAX_SHARED_PER_INODE: the rest are in `inline`
    buf.push(u8::try_from(shared.len()).unwrap_or(u8::MAX));
    buf.extend_from_slice(&[0u8; 7]);
    for s in &shared {
        buf.extend_from_slice(&s.to_le_bytes());
    }
    for x in inline {
        xattr::encode_entry(&x.0, &x.1, buf);
    }
}

/// A directory's content: blocks of dirents and names; every block but the last is full
/// size (zero-padded), the last ends at its last name.
fn dir_bytes(tree: &Tree, layout: &Layout, id: InodeId) -> Vec<u8> {
    let bs = layout.geometry.block_size();
    let slot = &layout.slots[id as usize];
    let entries = dirents(tree, id, slot.parent);
    let mut out = Vec::with_capacity(slot.dir_size as usize);
    let mut i = 0;
    while i < entries.len() {
        // entries of this block
        let mut used = 0u64;
        let mut j = i;
        while j < entries.len() && used + DIRENT_SIZE + entries[j].0.len() as u64 <= bs {
            used += DIRENT_SIZE + entries[j].0.len() as u64;
            j += 1;
        }
        let block_start = out.len();
        let mut nameoff = (j - i) as u64 * DIRENT_SIZE;
        for &(name, child) in &entries[i..j] {
            out.extend_from_slice(&layout.slots[child as usize].nid.to_le_bytes());
            out.extend_from_slice(&((nameoff & 0xFFFF) as u16).to_le_bytes());
            out.push(file_type(&tree.inodes[child as usize].kind));
            out.push(0);
            nameoff += name.len() as u64;
        }
        for &(name, _) in &entries[i..j] {
            out.extend_from_slice(name);
        }
        if j < entries.len() {
            out.resize(block_start + bs as usize, 0);
        }
        i = j;
    }
    debug_assert_eq!(out.len() as u64, slot.dir_size);
    out
}

fn file_type(kind: &Kind) -> u8 {
    match kind {
        Kind::Dir { .. } => ft::DIR,
        Kind::Reg(_) => ft::REG,
        Kind::Symlink(_) => ft::SYMLINK,
        Kind::Char { .. } => ft::CHRDEV,
        Kind::Block { .. } => ft::BLKDEV,
        Kind::Fifo => ft::FIFO,
    }
}
