//! Files of the container's rootfs, reached from an fd of its root with
//! `openat2(RESOLVE_IN_ROOT)`: `..` and symlinks (absolute ones too: `/bin/sh -> busybox`,
//! `/usr/bin/tool -> /bin/busybox`) resolve inside the rootfs as they will after
//! `chroot`, never on the guest's own `/`.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, fstat, mkdirat, openat2};
use rustix::io::Errno;

/// The rootfs, as an fd of its root directory.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// `args[0]` looked up in the container's `PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A regular file with an execute bit: the in-container path to exec.
    Found(String),
    /// Only a regular file without execute bits was found (exec fails: 126).
    NotExecutable(String),
    /// Nothing by that name (127).
    NotFound,
}

impl Root {
    /// Opens the rootfs directory.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The rootfs path on the guest.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory's fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `path` (in-container, absolute or relative to the root) inside the rootfs.
    pub fn open_in(&self, path: &str, flags: OFlags) -> io::Result<OwnedFd> {
        Ok(openat2(
            &self.fd,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    /// Reads a text file of the container (`/etc/passwd`), at most `limit` bytes; a
    /// missing file is `None`.
    pub fn read_text(&self, path: &str, limit: u64) -> io::Result<Option<String>> {
        let fd = match self.open_in(path, OFlags::RDONLY) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut text = String::new();
        File::from(fd).take(limit + 1).read_to_string(&mut text)?;
        if text.len() as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {limit} bytes"),
            ));
        }
        Ok(Some(text))
    }

    /// Whether `path` is a regular file, and if so whether it has an execute bit.
    fn regular_file(&self, path: &str) -> Option<bool> {
        let fd = self.open_in(path, OFlags::PATH).ok()?;
        let st = fstat(&fd).ok()?;
        (FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
            .then_some(st.st_mode & 0o111 != 0)
    }

    /// Looks `cmd` up as a shell does, in the container: a name with `/` is taken as is
    /// (relative to `cwd`); a name without is searched in `path_var`'s directories (an
    /// empty or relative entry is relative to `cwd`), the first executable regular file
    /// wins, else the first non-executable one.
    pub fn lookup(&self, cmd: &str, path_var: &str, cwd: &str) -> Lookup {
        let in_cwd = |p: &str| {
            if p.starts_with('/') {
                p.to_owned()
            } else {
                format!("{}/{p}", cwd.trim_end_matches('/'))
            }
        };
        if cmd.contains('/') {
            let path = in_cwd(cmd);
            return match self.regular_file(&path) {
                Some(false) => Lookup::NotExecutable(path),
                // exec reports what is wrong with anything else
                _ => Lookup::Found(path),
            };
        }
        let mut not_executable = None;
        for dir in path_var.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let candidate = in_cwd(&format!("{}/{cmd}", dir.trim_end_matches('/')));
            match self.regular_file(&candidate) {
                Some(true) => return Lookup::Found(candidate),
                Some(false) => {
                    not_executable.get_or_insert(candidate);
                }
                None => {}
            }
        }
        not_executable.map_or(Lookup::NotFound, Lookup::NotExecutable)
    }

    /// Creates the directory `path` (in-container, absolute) and its missing parents,
    /// mode 0755, inside the rootfs (`mkdir -p`, as runc does for a missing cwd).
    pub fn mkdir_all(&self, path: &str) -> io::Result<()> {
        let mut prefix = String::new();
        let mut parent = self.open_in("/", OFlags::PATH | OFlags::DIRECTORY)?;
        for component in Path::new(path).components() {
            let name = match component {
                Component::Normal(name) => name,
                Component::ParentDir => std::ffi::OsStr::new(".."),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            };
            prefix.push('/');
            prefix.push_str(&name.to_string_lossy());
            match mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            parent = self.open_in(&prefix, OFlags::PATH | OFlags::DIRECTORY)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn exec_file(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn lookup_follows_symlinks_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in ["bin", "usr/bin", "opt/tools", "only-here"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        exec_file(&r.join("only-here/prog"), 0o755);
        exec_file(&r.join("bin/plain"), 0o644);
        // absolute: resolves to <root>/only-here/prog, not the guest's /only-here
        symlink("/only-here/prog", r.join("usr/bin/abs")).unwrap();
        // escaping with ..: clamped to the root
        symlink("../../../../only-here/prog", r.join("opt/tools/rel")).unwrap();
        // pointing at the guest's own binaries: not in the root, so not found
        symlink("/usr/bin/env", r.join("bin/hostenv")).unwrap();
        let root = Root::open(r).unwrap();
        let path = "/bin:/usr/bin:/opt/tools";
        assert_eq!(
            root.lookup("abs", path, "/"),
            Lookup::Found("/usr/bin/abs".into())
        );
        assert_eq!(
            root.lookup("rel", path, "/"),
            Lookup::Found("/opt/tools/rel".into())
        );
        assert_eq!(root.lookup("hostenv", path, "/"), Lookup::NotFound);
        assert_eq!(root.lookup("nothing", path, "/"), Lookup::NotFound);
        assert_eq!(
            root.lookup("plain", path, "/"),
            Lookup::NotExecutable("/bin/plain".into())
        );
        assert_eq!(
            root.lookup("./prog", path, "/only-here"),
            Lookup::Found("/only-here/./prog".into())
        );
        assert_eq!(
            root.lookup("prog", "", "/only-here/"),
            Lookup::Found("/only-here/./prog".into())
        );
    }

    #[test]
    fn mkdir_all_and_read_text_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        symlink(outside.path(), r.join("escape")).unwrap();
        let root = Root::open(r).unwrap();
        root.mkdir_all("/a/b/../c/d").unwrap();
        assert!(r.join("a/c/d").is_dir());
        assert!(r.join("a/b").is_dir());
        // the symlink's absolute target is taken inside the root, where it does not exist
        assert!(root.mkdir_all("/escape/x").is_err());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        assert_eq!(
            root.read_text("/etc/passwd", 100).unwrap().unwrap(),
            "root:x:0:0::/root:/bin/sh\n"
        );
        assert_eq!(root.read_text("/etc/group", 100).unwrap(), None);
        assert!(root.read_text("/etc/passwd", 4).is_err());
    }
}
