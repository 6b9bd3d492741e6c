//! The tree a layer tar should give, computed from the tar by a deliberately simple model
//! of the rules in issue 3 (independent of the writer's code): later entries replace
//! earlier ones, missing directories are 0755 root:root with the build time, `.wh.NAME`
//! is a char device 0:0 with permission bits 0 and puts `trusted.overlay.origin=""` on
//! its directory, `.wh..wh..opq` puts `trusted.overlay.opaque=y` on its directory.

use std::collections::BTreeMap;
use std::io::Read;

use sha2::{Digest, Sha256};

use super::walk::{Kind, Node, Tree, canonical_groups};

/// The expected tree and the paths of directories the tar did not list.
pub struct Expected {
    pub tree: Tree,
    pub implicit_dirs: Vec<String>,
}

fn norm(raw: &[u8]) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in std::str::from_utf8(raw)
        .expect("test tars use UTF-8 names")
        .split('/')
    {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn parent_of(p: &str) -> &str {
    p.rfind('/').map_or("", |i| &p[..i])
}

fn implicit(build_time: i64) -> Node {
    Node {
        kind: Kind::Dir,
        perm: 0o755,
        uid: 0,
        gid: 0,
        mtime: (build_time, 0),
        nlink: 0,
        xattrs: BTreeMap::new(),
        link_group: None,
    }
}

struct Model {
    tree: Tree,
    implicit: std::collections::BTreeSet<String>,
    build_time: i64,
    next_group: u64,
}

impl Model {
    fn ensure_dir(&mut self, p: &str) {
        if p.is_empty() || self.tree.get(p).is_some_and(|n| n.kind == Kind::Dir) {
            return;
        }
        self.ensure_dir(parent_of(p));
        assert!(
            !self.tree.contains_key(p),
            "test tar puts an entry under non-directory {p}"
        );
        self.tree.insert(p.to_owned(), implicit(self.build_time));
        self.implicit.insert(p.to_owned());
    }

    fn remove(&mut self, p: &str) {
        let prefix = format!("{p}/");
        self.tree.retain(|k, _| k != p && !k.starts_with(&prefix));
        self.implicit.retain(|k| k != p && !k.starts_with(&prefix));
    }

    fn put(&mut self, p: &str, node: Node) {
        if let Some(old) = self.tree.get_mut(p)
            && old.kind == Kind::Dir
            && node.kind == Kind::Dir
        {
            let keep: BTreeMap<Vec<u8>, Vec<u8>> = old
                .xattrs
                .iter()
                .filter(|(k, _)| k.starts_with(b"trusted.overlay."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            *old = node;
            old.xattrs.extend(keep);
            self.implicit.remove(p);
            return;
        }
        self.remove(p);
        self.ensure_dir(parent_of(p));
        self.tree.insert(p.to_owned(), node);
    }

    fn group(&mut self) -> Option<String> {
        self.next_group += 1;
        Some(format!("#{}", self.next_group))
    }
}

/// Reads an uncompressed tar and returns the tree a conversion must mount as.
pub fn expected(tar_bytes: &[u8], build_time: i64) -> Expected {
    let mut m = Model {
        tree: Tree::new(),
        implicit: Default::default(),
        build_time,
        next_group: 0,
    };
    m.tree.insert(String::new(), implicit(build_time));
    m.implicit.insert(String::new());
    let mut ar = tar::Archive::new(tar_bytes);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let typ = h.entry_type();
        if typ == tar::EntryType::XGlobalHeader {
            continue;
        }
        let p = norm(&e.path_bytes());
        let mut mtime = (h.mtime().unwrap() as i64, 0u32);
        let mut xattrs = BTreeMap::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                // The tar crate splits PAX records at newlines, so a binary value holding
                // one comes out as broken pieces: the model skips those, and
                // `binary_xattr_values_with_newlines_survive` checks such values directly.
                let Ok(x) = x else { continue };
                let Ok(k) = x.key() else { continue };
                if let Some(n) = k.strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(n.as_bytes().to_vec(), x.value_bytes().to_vec());
                } else if let Some(n) = k.strip_prefix("LIBARCHIVE.xattr.") {
                    use base64::Engine;
                    let name = n.replace("%3D", "=").replace("%25", "%");
                    let v = base64::engine::general_purpose::STANDARD
                        .decode(x.value_bytes())
                        .unwrap();
                    xattrs.insert(name.into_bytes(), v);
                } else if k == "mtime" {
                    let v = x.value().unwrap();
                    let (s, f) = v.split_once('.').unwrap_or((v, "0"));
                    let f = format!("{f:0<9}");
                    mtime = (s.parse().unwrap(), f[..9].parse().unwrap());
                }
            }
        }
        let node = |kind: Kind, perm: u32, xattrs: BTreeMap<Vec<u8>, Vec<u8>>| Node {
            kind,
            perm,
            uid: h.uid().unwrap() as u32,
            gid: h.gid().unwrap() as u32,
            mtime,
            nlink: 0,
            xattrs,
            link_group: None,
        };
        let perm = h.mode().unwrap() & 0o7777;
        let base = p.rsplit('/').next().unwrap_or("").to_owned();
        if base == ".wh..wh..opq" {
            let dir = parent_of(&p).to_owned();
            m.ensure_dir(&dir);
            m.tree
                .get_mut(&dir)
                .unwrap()
                .xattrs
                .insert(b"trusted.overlay.opaque".to_vec(), b"y".to_vec());
            continue;
        }
        if let Some(name) = base.strip_prefix(".wh.") {
            let dir = parent_of(&p).to_owned();
            let target = if dir.is_empty() {
                name.to_owned()
            } else {
                format!("{dir}/{name}")
            };
            let mut n = node(Kind::Char(0, 0), 0, xattrs);
            n.link_group = m.group();
            m.put(&target, n);
            m.tree
                .get_mut(&dir)
                .unwrap()
                .xattrs
                .insert(b"trusted.overlay.origin".to_vec(), Vec::new());
            continue;
        }
        let old_style_dir = h.as_old().linkflag[0] == 0 && e.path_bytes().ends_with(b"/");
        let kind = match typ {
            tar::EntryType::Directory => Kind::Dir,
            _ if old_style_dir => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                Kind::Reg {
                    size: data.len() as u64,
                    sha256: hex::encode(Sha256::digest(&data)),
                }
            }
            tar::EntryType::Symlink => Kind::Symlink(e.link_name_bytes().unwrap().to_vec()),
            tar::EntryType::Char => Kind::Char(
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap(),
            ),
            tar::EntryType::Block => Kind::Block(
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap(),
            ),
            tar::EntryType::Fifo => Kind::Fifo,
            tar::EntryType::Link => {
                let target = norm(&e.link_name_bytes().unwrap());
                let t = m
                    .tree
                    .get_mut(&target)
                    .unwrap_or_else(|| panic!("test tar links to missing {target}"));
                if t.link_group.is_none() {
                    t.link_group = Some(format!("#link:{target}"));
                }
                let copy = t.clone();
                if target != p {
                    m.put(&p, copy);
                }
                continue;
            }
            other => panic!("test tar has entry type {other:?}"),
        };
        if p.is_empty() {
            let root = m.tree.get_mut("").unwrap();
            *root = node(Kind::Dir, perm, xattrs);
            m.implicit.remove("");
            continue;
        }
        let mut n = node(kind, perm, xattrs);
        if n.kind != Kind::Dir {
            n.link_group = m.group();
        }
        m.put(&p, n);
    }
    // nlink: hard link groups and 2 + subdirectories
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for n in m.tree.values() {
        if let Some(g) = &n.link_group {
            *counts.entry(g.clone()).or_default() += 1;
        }
    }
    let mut subdirs: BTreeMap<String, u32> = BTreeMap::new();
    for (p, n) in &m.tree {
        if n.kind == Kind::Dir && !p.is_empty() {
            *subdirs.entry(parent_of(p).to_owned()).or_default() += 1;
        }
    }
    for (p, n) in m.tree.iter_mut() {
        n.nlink = match &n.link_group {
            Some(g) => counts[g],
            None => 2 + subdirs.get(p).copied().unwrap_or(0),
        };
    }
    canonical_groups(&mut m.tree);
    Expected {
        tree: m.tree,
        implicit_dirs: m.implicit.into_iter().collect(),
    }
}
