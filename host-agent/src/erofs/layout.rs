//! Placement of everything but file contents, decided once the whole tar has been read.
//!
//! Image layout (4096-byte blocks):
//!
//! ```text
//! block 0                 superblock at byte 1024, nothing else
//! blocks 1..              file contents in tar order (written while streaming)
//! then                    directory blocks that are not inline, in inode order
//! meta_blkaddr..          inodes in breadth-first order (root first, at nid 1; nid 0 is
//!                         left empty so no inode number is 0), each followed by its
//!                         inline xattrs and inline tail, never crossing a block
//! xattr_blkaddr..         shared xattrs (only if any)
//! ```
//!
//! A tar index (`index/`) has the same layout with 512-byte blocks, the superblock
//! taking blocks 0–2, only symlink contents in the data area, and regular files
//! chunk-based: their chunk indexes follow the inode and its xattrs (8-byte aligned) and
//! point into the tar after the metadata.
//!
//! Every choice is a function of the tree alone, so the same tar gives the same bytes.

use std::collections::{HashMap, VecDeque};

use super::error::ErofsError;
use super::format::{
    BLOCK_BITS, CHUNK_FORMAT_BLKBITS_MASK, CHUNK_INDEX_SIZE, COMPACT_INODE_SIZE, DIRENT_SIZE,
    DataLayout, EXTENDED_INODE_SIZE, INDEX_BLOCK_BITS, SLOT_SIZE,
};
use super::tree::{Data, InodeId, Kind, ROOT, Tree};
use super::xattr::{self, Xattr};

/// xattr pairs used by more than this many inodes are stored once, in the shared area.
const SHARE_ABOVE: u32 = 2;
const OPAQUE: (&[u8], &[u8]) = (b"trusted.overlay.opaque", b"y");
const ORIGIN: (&[u8], &[u8]) = (b"trusted.overlay.origin", b"");

/// Block size and where regular files' contents are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// `blkszbits`.
    pub block_bits: u8,
    /// An index over a tar of this many blocks placed right after the metadata: regular
    /// files are chunk-based and their [`Data::blkaddr`] counts from the tar's first block.
    pub tar_blocks: Option<u64>,
}

impl Geometry {
    /// The full writer: 4096-byte blocks, contents in the image.
    pub const FULL: Self = Self {
        block_bits: BLOCK_BITS,
        tar_blocks: None,
    };

    /// An index over a tar of `tar_blocks` 512-byte blocks.
    pub fn index(tar_blocks: u64) -> Self {
        Self {
            block_bits: INDEX_BLOCK_BITS,
            tar_blocks: Some(tar_blocks),
        }
    }

    pub fn block_size(self) -> u64 {
        1 << self.block_bits
    }

    /// `Some(data)` when `kind` is a regular file stored as chunks (an index, not empty).
    pub fn chunked(self, kind: &Kind) -> Option<&Data> {
        match kind {
            Kind::Reg(d) if self.tar_blocks.is_some() && d.size > 0 => Some(d),
            _ => None,
        }
    }
}

/// Chunk bits of a chunk-based file of `size` bytes: one chunk for the whole file when the
/// format allows (as `mkfs.erofs --tar=i` does), at most 2^31 blocks per chunk.
pub fn chunk_bits(size: u64, block_bits: u8) -> u8 {
    let need = (64 - size.saturating_sub(1).leading_zeros()) as u8;
    need.clamp(block_bits, block_bits + CHUNK_FORMAT_BLKBITS_MASK as u8)
}

/// Chunks of a chunk-based file of `size` bytes.
pub fn chunk_count(size: u64, block_bits: u8) -> u64 {
    size.div_ceil(1 << chunk_bits(size, block_bits))
}

#[derive(Debug, Clone, Default)]
pub struct Slot {
    pub reachable: bool,
    pub nid: u64,
    pub ino: u32,
    pub nlink: u32,
    pub extended: bool,
    pub inline: bool,
    /// Bytes of the inline xattr area (0 without xattrs).
    pub xattr_size: u64,
    /// The parent directory (directories only; the root is its own parent).
    pub parent: InodeId,
    /// Directories: `i_size`, first block and number of blocks outside the metadata.
    pub dir_size: u64,
    pub dir_blkaddr: u32,
    pub dir_blocks: u64,
}

#[derive(Debug)]
pub struct Layout {
    pub geometry: Geometry,
    /// Reachable inodes, breadth-first, directories' entries in name order.
    pub order: Vec<InodeId>,
    /// Indexed by inode id.
    pub slots: Vec<Slot>,
    /// Shared xattrs and their ids (byte offset in the shared area / 4).
    pub shared: Vec<(Xattr, u32)>,
    pub shared_ids: HashMap<Xattr, u32>,
    pub dir_start: u64,
    pub meta_blkaddr: u32,
    /// Bytes of the metadata area used.
    pub meta_bytes: u64,
    pub xattr_blkaddr: u32,
    /// Blocks of the image (of the metadata, for an index).
    pub total_blocks: u64,
}

/// The xattrs stored for an inode: its own plus the overlay markers, sorted by name.
pub fn effective_xattrs(tree: &Tree, id: InodeId) -> Vec<Xattr> {
    let inode = &tree.inodes[id as usize];
    let mut all = inode.meta.xattrs.clone();
    for (on, (name, value)) in [(inode.opaque, OPAQUE), (inode.origin, ORIGIN)] {
        if on {
            all.retain(|(n, _)| n.as_slice() != name);
            all.push((name.to_vec(), value.to_vec()));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Most shared xattrs one inode can reference: the count (`h_shared_count`) is one byte.
pub const MAX_SHARED_PER_INODE: usize = u8::MAX as usize;

/// How an inode's `xattrs` (sorted by name) are stored: the sorted ids of the shared ones
/// it references, and the entries stored inline. Past [`MAX_SHARED_PER_INODE`], shared
/// pairs (the later ones in name order) are stored inline instead, so the one-byte count
/// never wraps.
pub fn split_xattrs<'a>(
    xattrs: &'a [Xattr],
    shared_ids: &HashMap<Xattr, u32>,
) -> (Vec<u32>, Vec<&'a Xattr>) {
    let mut shared = Vec::new();
    let mut inline = Vec::new();
    for x in xattrs {
        match shared_ids.get(x) {
            Some(&id) if shared.len() < MAX_SHARED_PER_INODE => shared.push(id),
            _ => inline.push(x),
        }
    }
    shared.sort_unstable();
    (shared, inline)
}

/// Bytes of the inline xattr area of an inode with `xattrs`: the 12-byte header, 4 bytes
/// per shared id, the inline entries; 0 without xattrs.
pub fn xattr_area_size(xattrs: &[Xattr], shared_ids: &HashMap<Xattr, u32>) -> u64 {
    if xattrs.is_empty() {
        return 0;
    }
    let (shared, inline) = split_xattrs(xattrs, shared_ids);
    12 + 4 * shared.len() as u64
        + inline
            .iter()
            .map(|x| xattr::entry_size(&x.0, &x.1))
            .sum::<u64>()
}

/// A directory's entries, `.` and `..` included, in the byte order the kernel's binary
/// search expects.
pub fn dirents(tree: &Tree, id: InodeId, parent: InodeId) -> Vec<(&[u8], InodeId)> {
    let mut v: Vec<(&[u8], InodeId)> = vec![(b".", id), (b"..", parent)];
    if let Kind::Dir { children } = &tree.inodes[id as usize].kind {
        v.extend(children.iter().map(|(n, &c)| (n.as_slice(), c)));
    }
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// `i_size` of a directory with `block_size`-byte blocks: a dirent and its name never
/// cross a block; every block but the last counts whole.
pub fn dir_size<'a>(names: impl Iterator<Item = &'a [u8]>, block_size: u64) -> u64 {
    let mut size = 0u64;
    for name in names {
        let len = DIRENT_SIZE + name.len() as u64;
        if size % block_size + len > block_size {
            size = size.next_multiple_of(block_size);
        }
        size += len;
    }
    size
}

fn inode_size(extended: bool) -> u64 {
    if extended {
        EXTENDED_INODE_SIZE
    } else {
        COMPACT_INODE_SIZE
    }
}

/// Places everything for `tree`, whose contents end before block `data_end_block`.
pub fn plan(tree: &Tree, data_end_block: u64, geometry: Geometry) -> Result<Layout, ErofsError> {
    let bs = geometry.block_size();
    let n = tree.inodes.len();
    let mut slots = vec![Slot::default(); n];
    let mut order = Vec::new();
    slots[ROOT as usize].reachable = true;
    slots[ROOT as usize].parent = ROOT;
    order.push(ROOT);
    let mut queue = VecDeque::from([ROOT]);
    while let Some(dir) = queue.pop_front() {
        let Kind::Dir { children } = &tree.inodes[dir as usize].kind else {
            continue;
        };
        let mut subdirs = 0u32;
        for &child in children.values() {
            let slot = &mut slots[child as usize];
            if tree.inodes[child as usize].is_dir() {
                subdirs += 1;
                slot.parent = dir;
                queue.push_back(child);
            }
            slot.nlink += 1;
            if !slot.reachable {
                slot.reachable = true;
                order.push(child);
            }
        }
        slots[dir as usize].nlink = 2 + subdirs;
    }

    // Shared xattrs: pairs used by more than SHARE_ABOVE inodes, in byte order.
    let mut counts: HashMap<Xattr, u32> = HashMap::new();
    for &id in &order {
        for x in effective_xattrs(tree, id) {
            *counts.entry(x).or_default() += 1;
        }
    }
    let mut shared_list: Vec<Xattr> = counts
        .into_iter()
        .filter(|(_, c)| *c > SHARE_ABOVE)
        .map(|(x, _)| x)
        .collect();
    shared_list.sort();
    let mut shared = Vec::with_capacity(shared_list.len());
    let mut shared_bytes = 0u64;
    for x in shared_list {
        let size = xattr::entry_size(&x.0, &x.1);
        if size <= bs && shared_bytes % bs + size > bs {
            shared_bytes = shared_bytes.next_multiple_of(bs);
        }
        let id = u32::try_from(shared_bytes / 4).map_err(|_| too_large(shared_bytes, bs))?;
        shared.push((x, id));
        shared_bytes += size;
    }
    let shared_ids: HashMap<Xattr, u32> = shared.iter().cloned().collect();

    // Inode sizes, xattr areas, directory sizes and data layouts.
    let build_time = i64::try_from(tree.build_time).unwrap_or(i64::MAX);
    let mut dir_next = data_end_block;
    for (ino, &id) in order.iter().enumerate() {
        let inode = &tree.inodes[id as usize];
        let xattrs = effective_xattrs(tree, id);
        let slot = &mut slots[id as usize];
        slot.ino = u32::try_from(ino + 1).map_err(|_| too_large(ino as u64, bs))?;
        slot.xattr_size = xattr_area_size(&xattrs, &shared_ids);
        let size = match &inode.kind {
            Kind::Reg(d) | Kind::Symlink(d) => d.size,
            Kind::Dir { .. } => dir_size(
                dirents(tree, id, slot.parent).into_iter().map(|(n, _)| n),
                bs,
            ),
            _ => 0,
        };
        let m = &inode.meta;
        slot.extended = size > u64::from(u32::MAX)
            || m.uid > u32::from(u16::MAX)
            || m.gid > u32::from(u16::MAX)
            || slot.nlink > u32::from(u16::MAX)
            || m.mtime != build_time
            || m.mtime_nsec != 0;
        match &inode.kind {
            Kind::Reg(d) | Kind::Symlink(d) => slot.inline = d.tail.is_some(),
            Kind::Dir { .. } => {
                let tail = size % bs;
                slot.dir_size = size;
                slot.inline = tail > 0 && inode_size(slot.extended) + slot.xattr_size + tail <= bs;
                slot.dir_blocks = if slot.inline {
                    size / bs
                } else {
                    size.div_ceil(bs)
                };
                if slot.dir_blocks > 0 {
                    slot.dir_blkaddr = block_addr(dir_next)?;
                    dir_next += slot.dir_blocks;
                }
            }
            _ => {}
        }
    }

    // Node ids: each inode with its xattrs and inline tail inside one block.
    let meta_blkaddr = dir_next;
    let mut cursor = SLOT_SIZE; // nid 0 stays empty
    for &id in &order {
        let slot = &mut slots[id as usize];
        let isize = inode_size(slot.extended);
        let kind = &tree.inodes[id as usize].kind;
        let whole = if let Some(d) = geometry.chunked(kind) {
            // chunk indexes, 8-byte aligned, may run on into the next blocks
            (isize + slot.xattr_size).next_multiple_of(CHUNK_INDEX_SIZE)
                + CHUNK_INDEX_SIZE * chunk_count(d.size, geometry.block_bits)
        } else if slot.inline {
            isize + slot.xattr_size + inline_tail(tree, id, slot, bs)
        } else {
            isize + slot.xattr_size
        };
        let room = bs - cursor % bs;
        if whole > room && (whole <= bs || isize > room) {
            cursor = cursor.next_multiple_of(bs);
        }
        slot.nid = cursor / SLOT_SIZE;
        cursor = (cursor + whole).next_multiple_of(SLOT_SIZE);
    }
    let meta_blocks = cursor.div_ceil(bs);
    let xattr_blkaddr = if shared.is_empty() {
        0
    } else {
        meta_blkaddr + meta_blocks
    };
    let total_blocks = meta_blkaddr + meta_blocks + shared_bytes.div_ceil(bs);
    block_addr(total_blocks + geometry.tar_blocks.unwrap_or(0))?;
    Ok(Layout {
        geometry,
        order,
        slots,
        shared,
        shared_ids,
        dir_start: data_end_block,
        meta_blkaddr: block_addr(meta_blkaddr)?,
        meta_bytes: cursor,
        xattr_blkaddr: block_addr(xattr_blkaddr)?,
        total_blocks,
    })
}

/// Bytes of `id`'s inline tail with `block_size`-byte blocks.
pub fn inline_tail(tree: &Tree, id: InodeId, slot: &Slot, block_size: u64) -> u64 {
    match &tree.inodes[id as usize].kind {
        Kind::Reg(d) | Kind::Symlink(d) if d.tail.is_some() => d.size % block_size,
        Kind::Dir { .. } if slot.inline => slot.dir_size % block_size,
        _ => 0,
    }
}

/// The data layout of `id`.
pub fn data_layout(slot: &Slot, chunked: bool) -> DataLayout {
    if chunked {
        DataLayout::ChunkBased
    } else if slot.inline {
        DataLayout::FlatInline
    } else {
        DataLayout::FlatPlain
    }
}

fn block_addr(block: u64) -> Result<u32, ErofsError> {
    u32::try_from(block).map_err(|_| ErofsError::TooLarge { blocks: block })
}

fn too_large(v: u64, block_size: u64) -> ErofsError {
    ErofsError::TooLarge {
        blocks: v / block_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_sizes_start_a_new_block_when_an_entry_does_not_fit() {
        let small: Vec<&[u8]> = vec![b".", b".."];
        assert_eq!(dir_size(small.into_iter(), 4096), 12 + 1 + 12 + 2);
        // 15 entries of 12 + 255 bytes = 4005 bytes fit in one block; the 16th does not
        let name = [b'x'; 255];
        let names: Vec<&[u8]> = (0..16).map(|_| &name[..]).collect();
        assert_eq!(dir_size(names.clone().into_iter(), 4096), 4096 + 267);
        // with 512-byte blocks: one 267-byte entry per block
        assert_eq!(dir_size(names.into_iter(), 512), 15 * 512 + 267);
    }

    #[test]
    fn a_chunk_covers_a_whole_file_up_to_2_pow_31_blocks() {
        assert_eq!(chunk_bits(1, 9), 9);
        assert_eq!(chunk_bits(512, 9), 9);
        assert_eq!(chunk_bits(513, 9), 10);
        assert_eq!(chunk_bits(1_000_003, 9), 20);
        assert_eq!(chunk_count(1_000_003, 9), 1);
        assert_eq!(chunk_bits(1 << 40, 9), 40);
        assert_eq!(chunk_bits((1 << 40) + 1, 9), 40);
        assert_eq!(chunk_count((1 << 41) - 512, 9), 2);
    }

    #[test]
    fn an_inode_references_at_most_255_shared_xattrs() {
        let xattrs: Vec<Xattr> = (0..300)
            .map(|i| (format!("user.x{i:03}").into_bytes(), b"v".to_vec()))
            .collect();
        let shared_ids: HashMap<Xattr, u32> = xattrs
            .iter()
            .enumerate()
            .map(|(i, x)| (x.clone(), 3 * i as u32))
            .collect();
        let (shared, inline) = split_xattrs(&xattrs, &shared_ids);
        assert_eq!(shared.len(), 255);
        assert_eq!(inline.len(), 45);
        assert_eq!(inline[0].0, b"user.x255");
        assert_eq!(
            xattr_area_size(&xattrs, &shared_ids),
            12 + 4 * 255 + 45 * xattr::entry_size(b"user.x255", b"v")
        );
        let (shared, inline) = split_xattrs(&xattrs[..255], &shared_ids);
        assert_eq!((shared.len(), inline.len()), (255, 0));
    }

    #[test]
    fn dirents_sort_dot_entries_among_the_names() {
        let mut t = Tree::new(0);
        for n in ["b", "!a", "-x", "..x", ".hidden", "A"] {
            t.ensure_dir(&[n.as_bytes().to_vec()], n).unwrap();
        }
        let names: Vec<String> = dirents(&t, ROOT, ROOT)
            .iter()
            .map(|(n, _)| String::from_utf8(n.to_vec()).unwrap())
            .collect();
        assert_eq!(names, ["!a", "-x", ".", "..", "..x", ".hidden", "A", "b"]);
    }
}
