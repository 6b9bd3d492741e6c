//! A tar archive read in place: members are indexed once (name → offset and size), then
//! read by offset with `pread`, so nothing is extracted and readers can run in parallel.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tar::EntryType;

use super::error::ImageError;

/// Symbolic and hard links are followed at most this many times.
const MAX_LINKS: usize = 16;

#[derive(Debug, Clone)]
enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// Target as an archive path (hard links), or relative to the member's directory
    /// (symbolic links, already resolved to an archive path when indexed).
    Link(String),
    Unsupported(&'static str),
}

/// An indexed tar archive.
pub struct TarArchive {
    path: PathBuf,
    file: Arc<File>,
    members: HashMap<String, Member>,
}

impl std::fmt::Debug for TarArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarArchive")
            .field("path", &self.path)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

/// Normalises an archive path: `./`, `//` and trailing `/` removed, `..` resolved. `None`
/// if it is empty, absolute or climbs above the archive root.
pub fn normalize(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

impl TarArchive {
    /// Reads every header of the archive at `path` (seeking over member data).
    pub fn index(path: &Path) -> Result<Self, ImageError> {
        let file = File::open(path).map_err(ImageError::io("open", path))?;
        let bad = |e: io::Error| ImageError::BadArchive {
            archive: path.to_owned(),
            reason: e.to_string(),
        };
        let mut members = HashMap::new();
        {
            let mut archive = tar::Archive::new(&file);
            for entry in archive.entries_with_seek().map_err(bad)? {
                let entry = entry.map_err(bad)?;
                let raw = entry.path().map_err(bad)?.to_string_lossy().into_owned();
                let Some(name) = normalize(&raw) else {
                    tracing::debug!(member = raw, "tar member outside the archive root ignored");
                    continue;
                };
                let kind = entry.header().entry_type();
                let member = match kind {
                    EntryType::Regular | EntryType::Continuous => Member::File {
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                    },
                    EntryType::Directory => continue,
                    EntryType::Link | EntryType::Symlink => {
                        let target = entry.link_name().map_err(bad)?.ok_or_else(|| {
                            bad(io::Error::other(format!("link {name:?} has no target")))
                        })?;
                        let target = target.to_string_lossy().into_owned();
                        let resolved = if kind == EntryType::Link {
                            normalize(&target)
                        } else {
                            let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                            normalize(&dir.join(&target).to_string_lossy())
                        };
                        match resolved {
                            Some(t) => Member::Link(t),
                            None => Member::Unsupported("a link pointing outside the archive"),
                        }
                    }
                    EntryType::GNUSparse => Member::Unsupported("a sparse file"),
                    _ => Member::Unsupported("not a regular file"),
                };
                if let Some(Member::File { .. }) = members.insert(name.clone(), member) {
                    return Err(ImageError::BadArchive {
                        archive: path.to_owned(),
                        reason: format!("member {name:?} appears more than once"),
                    });
                }
            }
        }
        Ok(Self {
            path: path.to_owned(),
            file: Arc::new(file),
            members,
        })
    }

    /// The archive's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `name` (normalised) is a member, following links.
    pub fn contains(&self, name: &str) -> bool {
        self.locate(name).is_ok()
    }

    /// Offset and size of the regular file `name`, following links.
    pub fn locate(&self, name: &str) -> Result<(u64, u64), ImageError> {
        let missing = || ImageError::MissingMember {
            archive: self.path.clone(),
            member: name.to_owned(),
        };
        let mut current = normalize(name).ok_or_else(missing)?;
        for _ in 0..MAX_LINKS {
            match self.members.get(&current).ok_or_else(missing)? {
                Member::File { offset, size } => return Ok((*offset, *size)),
                Member::Link(target) => current.clone_from(target),
                Member::Unsupported(what) => {
                    return Err(ImageError::BadArchive {
                        archive: self.path.clone(),
                        reason: format!("member {current:?} is {what}"),
                    });
                }
            }
        }
        Err(ImageError::BadArchive {
            archive: self.path.clone(),
            reason: format!("member {name:?} is a chain of more than {MAX_LINKS} links"),
        })
    }

    /// A reader over member `name`'s data and its size.
    pub fn open(&self, name: &str) -> Result<(Section, u64), ImageError> {
        let (offset, size) = self.locate(name)?;
        let section = Section {
            file: Arc::clone(&self.file),
            pos: offset,
            end: offset + size,
        };
        Ok((section, size))
    }
}

/// A byte range of a shared file, read with `pread`.
#[derive(Debug)]
pub struct Section {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for Section {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside this member (truncated file)",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize("./a//b/").as_deref(), Some("a/b"));
        assert_eq!(normalize("a/../b").as_deref(), Some("b"));
        assert_eq!(normalize("../b"), None);
        assert_eq!(normalize("/etc/passwd"), None);
        assert_eq!(normalize("."), None);
    }
}
