//! Reads a tar stream entry by entry into the [`Tree`], streaming contents through the
//! [`DataWriter`].
//!
//! OCI whiteouts follow containerd's EROFS differ (`mkfs.erofs --tar=f --aufs`):
//! `.wh.NAME` becomes a character device 0:0 `NAME` (permission bits 0; owner, mtime and
//! xattrs from the tar entry) and its directory gets `trusted.overlay.origin=""`;
//! `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory and is not an entry.
//! Other `.wh..wh.*` names are aufs bookkeeping and are skipped, as containerd's applier
//! does.

use std::io::{self, BufRead};

use tar::EntryType;

use super::data::{CopyError, DataWriter, tail_fits_inline};
use super::error::ErofsError;
use super::format::{BLOCK_SIZE, encode_dev, mode};
use super::input::{over_limit, stream_error};
use super::path::{Components, normalise};
use super::tarstream::{Entry, TarError, TarStream};
use super::tree::Data;
use super::tree::{Inode, Kind, Meta, ROOT, Tree};
use super::xattr::{self, Xattr};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
/// Longest symlink target Linux accepts (`PATH_MAX` − 1).
const SYMLINK_MAX: usize = 4095;

/// Where the contents of regular files and symlinks go: the full writer copies them into
/// the image ([`DataWriter`]); the tar index records where they are in the tar.
pub trait Contents {
    /// Takes the `size` bytes of a regular file's content from `src`, which starts at byte
    /// `offset` of the archive; `xattr_bytes` is what its xattrs take inline at most.
    fn file(
        &mut self,
        offset: u64,
        src: &mut dyn BufRead,
        size: u64,
        xattr_bytes: u64,
    ) -> Result<Data, CopyError>;

    /// Stores a symlink's target.
    fn symlink(&mut self, target: &[u8], xattr_bytes: u64) -> Result<Data, ErofsError>;
}

impl Contents for DataWriter {
    fn file(
        &mut self,
        _offset: u64,
        src: &mut dyn BufRead,
        size: u64,
        xattr_bytes: u64,
    ) -> Result<Data, CopyError> {
        let inline = tail_fits_inline(size % BLOCK_SIZE, xattr_bytes, BLOCK_SIZE);
        self.copy(src, size, inline)
    }

    fn symlink(&mut self, target: &[u8], xattr_bytes: u64) -> Result<Data, ErofsError> {
        let tail = target.len() as u64 % BLOCK_SIZE;
        self.store(target, tail_fits_inline(tail, xattr_bytes, BLOCK_SIZE))
    }
}

/// What was read, for logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub entries: u64,
    pub content_bytes: u64,
    pub skipped: u64,
}

/// Reads every entry of `stream` into `tree`. On a stream error the underlying error is
/// reported as such, not as a tar format problem.
pub fn read_entries<R: BufRead>(
    stream: &mut TarStream<R>,
    tree: &mut Tree,
    data: &mut dyn Contents,
    compression: &'static str,
    max_entries: u64,
) -> Result<Stats, ErofsError> {
    let mut stats = Stats::default();
    let mut last = String::from("(start of archive)");
    loop {
        let entry = match stream.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(TarError::Io(e)) => return Err(stream_or_tar(e, &last, compression)),
            Err(TarError::Format(msg)) => {
                return Err(ErofsError::Tar {
                    after: last,
                    source: io::Error::new(io::ErrorKind::InvalidData, msg),
                });
            }
        };
        if stats.entries >= max_entries {
            return Err(ErofsError::TooManyEntries { limit: max_entries });
        }
        let name = String::from_utf8_lossy(&entry.path).into_owned();
        add_entry(
            &entry,
            &mut stream.content(),
            &name,
            tree,
            data,
            &mut stats,
            compression,
        )?;
        stats.entries += 1;
        last = name;
    }
    Ok(stats)
}

fn stream_or_tar(e: io::Error, after: &str, compression: &'static str) -> ErofsError {
    if let Some(limit) = over_limit(&e) {
        return ErofsError::LayerTooLarge { limit };
    }
    match stream_error(&e) {
        Some(inner) if compression == "plain" => {
            ErofsError::Read(io::Error::new(inner.kind(), inner.to_string()))
        }
        Some(inner) => ErofsError::Decompress {
            format: compression,
            source: io::Error::new(inner.kind(), inner.to_string()),
        },
        None => ErofsError::Tar {
            after: after.to_owned(),
            source: e,
        },
    }
}

fn add_entry(
    entry: &Entry,
    content: &mut dyn BufRead,
    name: &str,
    tree: &mut Tree,
    data: &mut dyn Contents,
    stats: &mut Stats,
    compression: &'static str,
) -> Result<(), ErofsError> {
    let typ = entry.header.entry_type();
    let raw_path = &entry.path;
    let mut comps = normalise(raw_path, name, "path")?;
    let (meta, raw_mode) = read_meta(entry, name)?;

    // Whiteouts and opaque markers.
    if let Some(base) = comps.last().cloned()
        && base.starts_with(WHITEOUT_PREFIX)
    {
        comps.pop();
        let parent = tree.ensure_dir(&comps, name)?;
        if base == OPAQUE_MARKER {
            tree.inodes[parent as usize].opaque = true;
            return Ok(());
        }
        if base.starts_with(AUFS_META_PREFIX) {
            tracing::debug!(entry = name, "aufs metadata entry skipped");
            stats.skipped += 1;
            return Ok(());
        }
        let target = base[WHITEOUT_PREFIX.len()..].to_vec();
        let reason = match target.as_slice() {
            b"" => Some("names nothing"),
            b"." | b".." => Some("names `.` or `..`"),
            _ => None,
        };
        if let Some(reason) = reason {
            return Err(ErofsError::BadWhiteout {
                entry: name.to_owned(),
                reason,
            });
        }
        // Permission bits 0 (`c---------`), as mkfs.erofs --aufs and containerd's overlay
        // applier (mknod S_IFCHR, 0) make them; owner, mtime and xattrs from the entry.
        let mut inode = Inode::new(Kind::Char { rdev: 0 }, Meta { perm: 0, ..meta });
        inode.whiteout = true;
        tree.put(parent, target, inode)?;
        tree.inodes[parent as usize].origin = true;
        return Ok(());
    }

    let kind = match typ {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            // V7 convention kept by Go's archive/tar (containerd): typeflag NUL and a
            // trailing slash is a directory.
            if raw_path.ends_with(b"/") && entry.header.as_old().linkflag[0] == 0 {
                Some(KindOf::Dir)
            } else if raw_mode & mode::S_IFMT == mode::S_IFSOCK {
                tracing::warn!(
                    entry = name,
                    "socket skipped: sockets cannot be stored in a layer"
                );
                stats.skipped += 1;
                return Ok(());
            } else {
                Some(KindOf::Reg)
            }
        }
        EntryType::Directory => Some(KindOf::Dir),
        EntryType::Symlink => Some(KindOf::Symlink),
        EntryType::Char | EntryType::Block => Some(KindOf::Dev(typ == EntryType::Char)),
        EntryType::Fifo => Some(KindOf::Fifo),
        EntryType::Link => None,
        other => {
            return Err(ErofsError::UnsupportedType {
                entry: name.to_owned(),
                typeflag: char::from(other.as_byte()),
            });
        }
    };

    let Some(kind) = kind else {
        return add_hardlink(entry, name, &comps, tree);
    };
    let Some((base, parent_comps)) = comps.split_last() else {
        // the root directory itself
        return match kind {
            KindOf::Dir => {
                tree.inodes[ROOT as usize].meta = meta;
                Ok(())
            }
            other => Err(ErofsError::RootNotDirectory {
                entry: name.to_owned(),
                kind: other.name(),
            }),
        };
    };
    let parent = tree.ensure_dir(parent_comps, name)?;
    let xattr_bytes = if meta.xattrs.is_empty() {
        0
    } else {
        12 + meta
            .xattrs
            .iter()
            .map(|(n, v)| xattr::entry_size(n, v))
            .sum::<u64>()
    };
    let kind = match kind {
        KindOf::Dir => Kind::Dir {
            children: Default::default(),
        },
        KindOf::Reg => {
            let size = entry.size;
            let d = data
                .file(entry.offset, content, size, xattr_bytes)
                .map_err(|e| match e {
                    CopyError::Short { got } => ErofsError::Truncated {
                        entry: name.to_owned(),
                        expected: size,
                        got,
                    },
                    CopyError::Read(e) => stream_or_tar(e, name, compression),
                    CopyError::Write(e) => e,
                })?;
            stats.content_bytes += size;
            Kind::Reg(d)
        }
        KindOf::Symlink => {
            let target = entry.link.clone();
            let reason = if target.is_empty() {
                Some("target is empty")
            } else if target.contains(&0) {
                Some("target contains a NUL byte")
            } else if target.len() > SYMLINK_MAX {
                Some("target is longer than 4095 bytes")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(ErofsError::BadSymlink {
                    entry: name.to_owned(),
                    reason,
                });
            }
            Kind::Symlink(data.symlink(&target, xattr_bytes)?)
        }
        KindOf::Dev(is_char) => {
            let h = &entry.header;
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            if major >= 1 << 12 || minor >= 1 << 20 {
                return Err(ErofsError::OutOfRange {
                    entry: name.to_owned(),
                    what: "device number",
                    value: format!("{major}:{minor}"),
                    limit: "major < 4096 and minor < 2^20",
                });
            }
            let rdev = encode_dev(major, minor);
            if is_char {
                Kind::Char { rdev }
            } else {
                Kind::Block { rdev }
            }
        }
        KindOf::Fifo => Kind::Fifo,
    };
    tree.put(parent, base.clone(), Inode::new(kind, meta))?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum KindOf {
    Dir,
    Reg,
    Symlink,
    Dev(bool),
    Fifo,
}

impl KindOf {
    fn name(self) -> &'static str {
        match self {
            Self::Dir => "directory",
            Self::Reg => "regular file",
            Self::Symlink => "symlink",
            Self::Dev(true) => "character device",
            Self::Dev(false) => "block device",
            Self::Fifo => "FIFO",
        }
    }
}

fn add_hardlink(
    entry: &Entry,
    name: &str,
    comps: &Components,
    tree: &mut Tree,
) -> Result<(), ErofsError> {
    let raw_target = entry.link.clone();
    let target_name = String::from_utf8_lossy(&raw_target).into_owned();
    let target = normalise(&raw_target, name, "hard link target")?;
    let bad = |reason| ErofsError::BadHardlink {
        entry: name.to_owned(),
        target: target_name.clone(),
        reason,
    };
    let Some(id) = tree.lookup(&target) else {
        return Err(bad(
            "does not exist: a hard link must name a file that appears earlier in the tar",
        ));
    };
    let inode = &tree.inodes[id as usize];
    if inode.whiteout {
        return Err(bad("is a whiteout"));
    }
    if inode.is_dir() {
        return Err(bad("is a directory"));
    }
    let Some((base, parent_comps)) = comps.split_last() else {
        return Err(ErofsError::RootNotDirectory {
            entry: name.to_owned(),
            kind: "hard link",
        });
    };
    if tree.lookup(comps) == Some(id) {
        return Ok(());
    }
    let parent = tree.ensure_dir(parent_comps, name)?;
    tree.link(parent, base.clone(), id);
    Ok(())
}

/// Owner, permissions, mtime (PAX `uid`, `gid`, `mtime` with its fraction over the
/// header's) and xattrs of an entry, and the raw header mode.
fn read_meta(entry: &Entry, name: &str) -> Result<(Meta, u32), ErofsError> {
    let h = &entry.header;
    let range = |what: &'static str, value: String, limit: &'static str| ErofsError::OutOfRange {
        entry: name.to_owned(),
        what,
        value,
        limit,
    };
    let old = h.as_old();
    let num = |field: &'static str, raw: &[u8], v: io::Result<u64>| -> Result<u64, ErofsError> {
        match v {
            Ok(v) => Ok(v),
            // an empty field (NULs or spaces) reads as 0, as Go's archive/tar reads it
            Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
            Err(e) => Err(ErofsError::BadHeaderField {
                entry: name.to_owned(),
                field,
                reason: e.to_string(),
            }),
        }
    };
    let raw_mode = u32::try_from(num("mode", &old.mode, h.mode().map(u64::from))?).unwrap_or(0);
    let mut uid = num("uid", &old.uid, h.uid())?;
    let mut gid = num("gid", &old.gid, h.gid())?;
    let header_mtime = num("mtime", &old.mtime, h.mtime())?;
    let mut mtime = (
        i64::try_from(header_mtime)
            .map_err(|_| range("mtime", header_mtime.to_string(), "at most 2^63 - 1"))?,
        0u32,
    );
    let mut xattrs: Vec<Xattr> = Vec::new();
    for (key, value) in &entry.pax {
        let bad = |reason: String| ErofsError::BadPax {
            entry: name.to_owned(),
            key: String::from_utf8_lossy(key).into_owned(),
            reason,
        };
        let number = || {
            std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| bad("not a number".to_owned()))
        };
        match key.as_slice() {
            b"uid" => uid = number()?,
            b"gid" => gid = number()?,
            b"mtime" => {
                mtime =
                    parse_pax_time(value).ok_or_else(|| bad("not a decimal time".to_owned()))?;
            }
            _ => {
                if let Some((xname, xvalue)) = xattr::from_pax(key, value).map_err(bad)? {
                    xattr::check(&xname, &xvalue).map_err(|reason| ErofsError::BadXattr {
                        entry: name.to_owned(),
                        name: String::from_utf8_lossy(&xname).into_owned(),
                        reason,
                    })?;
                    xattrs.retain(|(n, _)| *n != xname);
                    xattrs.push((xname, xvalue));
                }
            }
        }
    }
    let uid = u32::try_from(uid).map_err(|_| range("uid", uid.to_string(), "at most 2^32 - 1"))?;
    let gid = u32::try_from(gid).map_err(|_| range("gid", gid.to_string(), "at most 2^32 - 1"))?;
    xattrs.sort_by(|a, b| a.0.cmp(&b.0));
    let meta = Meta {
        perm: (raw_mode & 0o7777) as u16,
        uid,
        gid,
        mtime: mtime.0,
        mtime_nsec: mtime.1,
        xattrs,
    };
    Ok((meta, raw_mode))
}

/// A PAX time: `[-]seconds[.fraction]`, as (seconds, nanoseconds ≥ 0).
fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: u32 = digits.parse().ok()?;
    if !neg {
        return Some((secs, nsec));
    }
    if nsec == 0 {
        Some((-secs, 0))
    } else {
        Some((-secs - 1, 1_000_000_000 - nsec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_parse() {
        assert_eq!(parse_pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time(b"-3"), Some((-3, 0)));
        assert_eq!(parse_pax_time(b"x"), None);
        assert_eq!(parse_pax_time(b""), None);
    }
}
