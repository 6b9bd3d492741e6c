//! Writes what the layout planned after the streamed file contents: directory blocks,
//! inodes with their xattrs and tails, shared xattrs, then the superblock into block 0.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::data::Tails;
use super::error::ErofsError;
use super::format::{
    BLOCK_SIZE, DIRENT_SIZE, InodeRecord, NULL_ADDR, SLOT_SIZE, Superblock, ft, mode,
};
use super::layout::{Layout, data_layout, dirents, effective_xattrs, split_xattrs};
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
    let start = layout.dir_start * BLOCK_SIZE;
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
        let whole = (slot.dir_blocks * BLOCK_SIZE) as usize;
        debug_assert_eq!(out.pos, u64::from(slot.dir_blkaddr) * BLOCK_SIZE);
        out.write(&bytes[..whole.min(bytes.len())])?;
        out.pad_to(u64::from(slot.dir_blkaddr) * BLOCK_SIZE + whole as u64)?;
    }

    // Inodes.
    let meta = u64::from(layout.meta_blkaddr) * BLOCK_SIZE;
    out.pad_to(meta)?;
    let mut buf = Vec::with_capacity(BLOCK_SIZE as usize);
    for &id in &layout.order {
        let slot = &layout.slots[id as usize];
        let inode = &tree.inodes[id as usize];
        buf.clear();
        let (type_bits, size, i_u) = match &inode.kind {
            Kind::Dir { .. } => (
                mode::S_IFDIR,
                slot.dir_size,
                blkaddr(slot.dir_blocks, slot.dir_blkaddr, slot.inline),
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
            layout: data_layout(slot),
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
        if slot.inline {
            match &inode.kind {
                Kind::Reg(d) | Kind::Symlink(d) => tails.read_into(d, &mut buf)?,
                Kind::Dir { .. } => {
                    let bytes = dir_bytes(tree, layout, id);
                    buf.extend_from_slice(&bytes[(slot.dir_blocks * BLOCK_SIZE) as usize..]);
                }
                _ => {}
            }
        }
        out.pad_to(meta + slot.nid * SLOT_SIZE)?;
        out.write(&buf)?;
    }
    out.pad_to(meta + layout.meta_bytes.next_multiple_of(BLOCK_SIZE))?;

    // Shared xattrs.
    if !layout.shared.is_empty() {
        let base = u64::from(layout.xattr_blkaddr) * BLOCK_SIZE;
        for ((name, value), xid) in &layout.shared {
            out.pad_to(base + u64::from(*xid) * 4)?;
            buf.clear();
            xattr::encode_entry(name, value, &mut buf);
            out.write(&buf)?;
        }
    }
    let end = layout.total_blocks * BLOCK_SIZE;
    out.pad_to(end)?;
    out.w.flush().map_err(ErofsError::io("write", path))?;
    drop(out);

    // Contents of files that a later entry replaced: zeroed, so they do not linger.
    let mut zeroed = Vec::new();
    for (id, inode) in tree.inodes.iter().enumerate() {
        if let Kind::Reg(d) | Kind::Symlink(d) = &inode.kind
            && !layout.slots[id].reachable
            && d.blocks > 0
        {
            for b in 0..d.blocks {
                image
                    .write_all_at(&ZEROS, (u64::from(d.blkaddr) + b) * BLOCK_SIZE)
                    .map_err(ErofsError::io("write", path))?;
            }
            zeroed.push(u64::from(d.blkaddr)..u64::from(d.blkaddr) + d.blocks);
        }
    }

    let sb = Superblock {
        root_nid: u16::try_from(layout.slots[0].nid).unwrap_or(u16::MAX),
        inos: layout.order.len() as u64,
        build_time: tree.build_time,
        blocks: u32::try_from(layout.total_blocks).map_err(|_| ErofsError::TooLarge {
            blocks: layout.total_blocks,
        })?,
        meta_blkaddr: layout.meta_blkaddr,
        xattr_blkaddr: layout.xattr_blkaddr,
        uuid,
    };
    image
        .write_all_at(&sb.to_block(), 0)
        .map_err(ErofsError::io("write", path))?;
    image.set_len(end).map_err(ErofsError::io("resize", path))?;
    Ok(Rest { size: end, zeroed })
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
    let slot = &layout.slots[id as usize];
    let entries = dirents(tree, id, slot.parent);
    let mut out = Vec::with_capacity(slot.dir_size as usize);
    let mut i = 0;
    while i < entries.len() {
        // entries of this block
        let mut used = 0u64;
        let mut j = i;
        while j < entries.len() && used + DIRENT_SIZE + entries[j].0.len() as u64 <= BLOCK_SIZE {
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
            out.resize(block_start + BLOCK_SIZE as usize, 0);
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
