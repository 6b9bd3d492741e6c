//! A filesystem tree as the tests compare it: every attribute the issue names.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Reg { size: u64, sha256: String },
    Symlink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// `mode & 0o7777`.
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, u32),
    pub nlink: u32,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Paths with the same group are one inode (hard links); the group is the first path
    /// of the inode in walk order. Directories have none.
    pub link_group: Option<String>,
}

pub type Tree = BTreeMap<String, Node>;

/// Walks the tree under `root`; keys are paths relative to it (`""` is the root).
pub fn walk(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut inos: BTreeMap<u64, String> = BTreeMap::new();
    visit(root, "", &mut out, &mut inos);
    canonical_groups(&mut out);
    out
}

/// Rewrites every link group to the smallest path of the group.
pub fn canonical_groups(tree: &mut Tree) {
    let mut min: BTreeMap<String, String> = BTreeMap::new();
    for (p, n) in tree.iter() {
        if let Some(g) = &n.link_group {
            let e = min.entry(g.clone()).or_insert_with(|| p.clone());
            if p < e {
                *e = p.clone();
            }
        }
    }
    for n in tree.values_mut() {
        if let Some(g) = &n.link_group {
            n.link_group = Some(min[g].clone());
        }
    }
}

fn visit(root: &Path, rel: &str, out: &mut Tree, inos: &mut BTreeMap<u64, String>) {
    let full = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let md = fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("stat {}: {e}", full.display()));
    let ft = md.file_type();
    let rdev = md.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        let bytes = fs::read(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()));
        Kind::Reg {
            size: md.len(),
            sha256: hex::encode(Sha256::digest(&bytes)),
        }
    } else if ft.is_symlink() {
        Kind::Symlink(
            fs::read_link(&full)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec(),
        )
    } else if ft.is_char_device() {
        Kind::Char(major, minor)
    } else if ft.is_block_device() {
        Kind::Block(major, minor)
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        panic!("unexpected file type at {}", full.display());
    };
    let link_group = if ft.is_dir() {
        None
    } else {
        Some(
            inos.entry(md.ino())
                .or_insert_with(|| rel.to_owned())
                .clone(),
        )
    };
    out.insert(
        rel.to_owned(),
        Node {
            kind,
            perm: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: (md.mtime(), u32::try_from(md.mtime_nsec()).unwrap()),
            nlink: u32::try_from(md.nlink()).unwrap(),
            xattrs: xattrs(&full),
            link_group,
        },
    );
    if ft.is_dir() {
        let mut names: Vec<String> = fs::read_dir(&full)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let child = if rel.is_empty() {
                n
            } else {
                format!("{rel}/{n}")
            };
            visit(root, &child, out, inos);
        }
    }
}

/// All xattrs of `path` (not following symlinks).
pub fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 65536];
    // SAFETY: `c` is a NUL-terminated path and `names` a writable buffer of the given length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(
        n >= 0,
        "llistxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    let mut out = BTreeMap::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let cname = CString::new(name).unwrap();
        let mut value = vec![0u8; 65536];
        // SAFETY: both strings are NUL-terminated and `value` is writable for its length.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        assert!(
            len >= 0,
            "lgetxattr {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        value.truncate(len as usize);
        out.insert(name.to_vec(), value);
    }
    out
}

/// Compares two trees; `skip_perm` lists paths whose permission bits are not compared.
/// Returns a list of differences (empty when equal).
pub fn diff(want: &Tree, got: &Tree, skip_perm: &[String]) -> Vec<String> {
    let mut d = Vec::new();
    for (p, w) in want {
        let Some(g) = got.get(p) else {
            d.push(format!("{p:?}: missing"));
            continue;
        };
        let mut w = w.clone();
        if skip_perm.contains(p) {
            w.perm = g.perm;
        }
        if w != *g {
            d.push(format!("{p:?}:\n  want {w:?}\n  got  {g:?}"));
        }
    }
    for p in got.keys() {
        if !want.contains_key(p) {
            d.push(format!("{p:?}: unexpected"));
        }
    }
    d
}

/// Fails with the first differences.
pub fn assert_same(what: &str, want: &Tree, got: &Tree, skip_perm: &[String]) {
    let d = diff(want, got, skip_perm);
    assert!(
        d.is_empty(),
        "{what}: {} differences (of {} paths), first ones:\n{}",
        d.len(),
        want.len(),
        d.iter().take(15).cloned().collect::<Vec<_>>().join("\n")
    );
}
