//! Temporary file beside the target → fsync → rename → fsync of the directory.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::NamedTempFile;

use crate::error::FsError;

/// Name prefix of the temporary files [`temp_beside`] creates.
pub const TEMP_PREFIX: &str = ".layerpass-";

/// Replaces `path` with `bytes`: readers see the old content or the new, whole. On error
/// the old file is left as it was and no temporary file remains.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes)
        .map_err(FsError::io("write", tmp.path().to_owned()))?;
    persist(tmp, path)
}

/// A new, empty temporary file (mode 0644 before the umask, named `.layerpass-*`) in
/// `path`'s directory, to be filled and then [`persist`]ed to `path`. Dropped unpersisted,
/// it is removed.
pub fn temp_beside(path: &Path) -> Result<NamedTempFile, FsError> {
    let dir = dir_of(path);
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(FsError::io("create a temporary file in", dir))
}

/// Fsyncs `tmp`, renames it over `path` and fsyncs `path`'s directory. `tmp` must be in
/// that directory (a rename does not cross file systems). If the rename fails, `tmp` is
/// removed and `path` is untouched.
pub fn persist(tmp: NamedTempFile, path: &Path) -> Result<(), FsError> {
    rename_synced(tmp, path)?;
    sync_dir(dir_of(path))
}

/// The first half of [`persist`]: fsyncs `tmp` and renames it over `path`, for a caller
/// that must know whether the rename happened (it undoes something else if not) and then
/// calls [`sync_dir`]. If it fails, `tmp` is removed and `path` is untouched.
pub fn rename_synced(tmp: NamedTempFile, path: &Path) -> Result<(), FsError> {
    sync_file(&tmp)?;
    tmp.persist(path).map_err(|e| FsError {
        op: "rename into",
        path: path.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

/// [`persist`], but fails (and removes `tmp`) if `path` already exists.
pub fn persist_noclobber(tmp: NamedTempFile, path: &Path) -> Result<(), FsError> {
    sync_file(&tmp)?;
    tmp.persist_noclobber(path).map_err(|e| FsError {
        op: "create",
        path: path.to_owned(),
        source: e.error,
    })?;
    sync_dir(dir_of(path))
}

/// Fsyncs the directory `dir`, making renames and creations in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .map_err(FsError::io("open directory", dir))?
        .sync_all()
        .map_err(FsError::io("sync directory", dir))
}

/// The directory `path` is in: its parent, or `.` for a bare file name.
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn sync_file(tmp: &NamedTempFile) -> Result<(), FsError> {
    tmp.as_file()
        .sync_all()
        .map_err(FsError::io("sync", tmp.path().to_owned()))
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::path::PathBuf;

    use super::*;

    /// Every name in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn content_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, &[b'x'; 10_000]).unwrap();
        assert_eq!(fs::read(&p).unwrap(), [b'x'; 10_000]);
        write_atomic(&p, b"short").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"short");
        assert_eq!(names(dir.path()), ["state.json"], "no temporary file left");
        let mode = fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o600, 0o600, "{mode:o}");
    }

    #[test]
    fn a_streamed_temporary_file_is_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blob");
        fs::write(&p, b"old").unwrap();
        let mut tmp = temp_beside(&p).unwrap();
        assert!(tmp.path().starts_with(dir.path()));
        for _ in 0..64 {
            tmp.write_all(&[7u8; 4096]).unwrap();
        }
        persist(tmp, &p).unwrap();
        assert_eq!(fs::read(&p).unwrap(), vec![7u8; 64 * 4096]);
        assert_eq!(names(dir.path()), ["blob"]);
    }

    #[test]
    fn a_failed_rename_leaves_the_target_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory cannot be replaced by a file.
        let target = dir.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"kept").unwrap();
        let e = write_atomic(&target, b"new").unwrap_err();
        assert_eq!(e.op, "rename into");
        assert_eq!(e.path, target);
        assert!(e.to_string().contains("target"), "{e}");
        assert_eq!(fs::read(target.join("inside")).unwrap(), b"kept");
        assert_eq!(names(dir.path()), ["target"], "no temporary file left");
    }

    #[test]
    fn noclobber_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.img");
        let mut tmp = temp_beside(&p).unwrap();
        tmp.write_all(b"first").unwrap();
        persist_noclobber(tmp, &p).unwrap();
        let mut tmp = temp_beside(&p).unwrap();
        tmp.write_all(b"second").unwrap();
        let e = persist_noclobber(tmp, &p).unwrap_err();
        assert_eq!(e.source.kind(), ErrorKind::AlreadyExists);
        assert_eq!(e.op, "create");
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(names(dir.path()), ["disk.img"], "no temporary file left");
    }

    #[test]
    fn a_missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = write_atomic(&missing.join("f"), b"x").unwrap_err();
        assert_eq!(e.op, "create a temporary file in");
        assert_eq!(e.path, missing);
        assert_eq!(e.source.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn dir_of_a_bare_name_is_the_current_directory() {
        assert_eq!(dir_of(Path::new("f")), Path::new("."));
        assert_eq!(dir_of(Path::new("/a/b")), Path::new("/a"));
        assert_eq!(dir_of(&PathBuf::from("a/b/c")), Path::new("a/b"));
    }
}
