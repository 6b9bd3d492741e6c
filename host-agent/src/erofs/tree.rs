//! The filesystem tree built from a tar: metadata only (file contents are already in the
//! image or the tail spill file when an inode is added here).
//!
//! Tar semantics: a later entry for a path replaces the earlier one (a directory over a
//! directory only updates its metadata and keeps its children); directories a path needs
//! but the tar does not list are created 0755 root:root with the build time as mtime.

use std::collections::BTreeMap;

use super::error::ErofsError;
use super::path::display;
use super::xattr::Xattr;

/// Index into [`Tree::inodes`].
pub type InodeId = u32;
/// The root directory's inode.
pub const ROOT: InodeId = 0;

/// Where a file's content went (see `data.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data {
    pub size: u64,
    /// First block in the image, or `NULL_ADDR` when nothing is in whole blocks.
    pub blkaddr: u32,
    /// Blocks written at `blkaddr` (a zero-padded tail block included when not inline).
    pub blocks: u64,
    /// Offset of the inline tail (`size % 4096` bytes) in the spill file.
    pub tail: Option<u64>,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Dir {
        children: BTreeMap<Vec<u8>, InodeId>,
    },
    Reg(Data),
    Symlink(Data),
    Char {
        rdev: u32,
    },
    Block {
        rdev: u32,
    },
    Fifo,
}

/// Ownership, permissions, time and xattrs of an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits with setuid/setgid/sticky (`mode & 0o7777`).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Sorted by name, names unique.
    pub xattrs: Vec<Xattr>,
}

#[derive(Debug, Clone)]
pub struct Inode {
    pub kind: Kind,
    pub meta: Meta,
    /// Made from an OCI `.wh.NAME` entry (a character device 0:0).
    pub whiteout: bool,
    /// Directory marked `trusted.overlay.opaque=y` by `.wh..wh..opq`.
    pub opaque: bool,
    /// Directory holding whiteouts made here: gets `trusted.overlay.origin=""`.
    pub origin: bool,
}

impl Inode {
    pub fn new(kind: Kind, meta: Meta) -> Self {
        Self {
            kind,
            meta,
            whiteout: false,
            opaque: false,
            origin: false,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir { .. })
    }
}

#[derive(Debug)]
pub struct Tree {
    pub inodes: Vec<Inode>,
    /// Superblock build time: mtime of implicit directories.
    pub build_time: u64,
}

impl Tree {
    pub fn new(build_time: u64) -> Self {
        let mut tree = Self {
            inodes: Vec::new(),
            build_time,
        };
        tree.inodes.push(tree.implicit_dir());
        tree
    }

    fn implicit_dir(&self) -> Inode {
        Inode::new(
            Kind::Dir {
                children: BTreeMap::new(),
            },
            Meta {
                perm: 0o755,
                uid: 0,
                gid: 0,
                mtime: i64::try_from(self.build_time).unwrap_or(i64::MAX),
                mtime_nsec: 0,
                xattrs: Vec::new(),
            },
        )
    }

    fn children(&self, dir: InodeId) -> Option<&BTreeMap<Vec<u8>, InodeId>> {
        match &self.inodes[dir as usize].kind {
            Kind::Dir { children } => Some(children),
            _ => None,
        }
    }

    fn children_mut(&mut self, dir: InodeId) -> Option<&mut BTreeMap<Vec<u8>, InodeId>> {
        match &mut self.inodes[dir as usize].kind {
            Kind::Dir { children } => Some(children),
            _ => None,
        }
    }

    /// The directory at `components`, created (and its missing parents) if absent.
    pub fn ensure_dir(
        &mut self,
        components: &[Vec<u8>],
        entry: &str,
    ) -> Result<InodeId, ErofsError> {
        let mut cur = ROOT;
        for (i, name) in components.iter().enumerate() {
            let existing = self.children(cur).and_then(|c| c.get(name)).copied();
            cur = match existing {
                Some(id) if self.inodes[id as usize].is_dir() => id,
                Some(_) => {
                    return Err(ErofsError::NotADirectory {
                        entry: entry.to_owned(),
                        parent: display(&components[..=i]),
                    });
                }
                None => {
                    let id = self.push(self.implicit_dir())?;
                    self.attach(cur, name.clone(), id);
                    id
                }
            };
        }
        Ok(cur)
    }

    /// The inode at `components`, without creating anything.
    pub fn lookup(&self, components: &[Vec<u8>]) -> Option<InodeId> {
        let mut cur = ROOT;
        for name in components {
            cur = *self.children(cur)?.get(name)?;
        }
        Some(cur)
    }

    /// The entry `name` of directory `dir`, if any.
    pub fn child(&self, dir: InodeId, name: &[u8]) -> Option<InodeId> {
        self.children(dir).and_then(|c| c.get(name)).copied()
    }

    /// Adds `inode` as `dir/name`. An existing directory there meeting a new directory keeps
    /// its children and overlay markers and takes the new metadata; anything else is replaced.
    pub fn put(
        &mut self,
        dir: InodeId,
        name: Vec<u8>,
        inode: Inode,
    ) -> Result<InodeId, ErofsError> {
        if let Some(old) = self.child(dir, &name)
            && inode.is_dir()
            && self.inodes[old as usize].is_dir()
        {
            self.inodes[old as usize].meta = inode.meta;
            return Ok(old);
        }
        let id = self.push(inode)?;
        self.attach(dir, name, id);
        Ok(id)
    }

    /// Makes `dir/name` another name of inode `target` (a hard link).
    pub fn link(&mut self, dir: InodeId, name: Vec<u8>, target: InodeId) {
        self.attach(dir, name, target);
    }

    fn attach(&mut self, dir: InodeId, name: Vec<u8>, id: InodeId) {
        if let Some(children) = self.children_mut(dir) {
            children.insert(name, id);
        }
    }

    fn push(&mut self, inode: Inode) -> Result<InodeId, ErofsError> {
        let id = InodeId::try_from(self.inodes.len()).map_err(|_| ErofsError::OutOfRange {
            entry: String::new(),
            what: "inode count",
            value: self.inodes.len().to_string(),
            limit: "at most 2^32 inodes",
        })?;
        self.inodes.push(inode);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(perm: u16) -> Meta {
        Meta {
            perm,
            uid: 1,
            gid: 2,
            mtime: 3,
            mtime_nsec: 0,
            xattrs: Vec::new(),
        }
    }

    fn c(s: &str) -> Vec<Vec<u8>> {
        s.split('/').map(|p| p.as_bytes().to_vec()).collect()
    }

    #[test]
    fn implicit_dirs_and_replacement() {
        let mut t = Tree::new(7);
        let d = t.ensure_dir(&c("a/b"), "a/b/f").unwrap();
        let a = t.lookup(&c("a")).unwrap();
        assert_eq!(t.inodes[a as usize].meta.perm, 0o755);
        assert_eq!(t.inodes[a as usize].meta.mtime, 7);
        // an explicit entry for an implicit dir updates it in place
        let same = t
            .put(
                ROOT,
                b"a".to_vec(),
                Inode::new(
                    Kind::Dir {
                        children: BTreeMap::new(),
                    },
                    meta(0o700),
                ),
            )
            .unwrap();
        assert_eq!(same, a);
        assert_eq!(t.lookup(&c("a/b")), Some(d));
        assert_eq!(t.inodes[a as usize].meta.perm, 0o700);
        // a file replaces the directory and its subtree
        let f = t
            .put(ROOT, b"a".to_vec(), Inode::new(Kind::Fifo, meta(0o644)))
            .unwrap();
        assert_eq!(t.lookup(&c("a")), Some(f));
        assert_eq!(t.lookup(&c("a/b")), None);
        assert!(matches!(
            t.ensure_dir(&c("a/x"), "a/x/y"),
            Err(ErofsError::NotADirectory { .. })
        ));
    }
}
