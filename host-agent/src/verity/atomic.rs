//! Files replaced atomically: built under a temporary name beside the target, synced,
//! renamed over it, and the directory synced, so readers see the old or the new file whole.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::NamedTempFile;

use super::error::VerityError;

/// A new, empty temporary file (mode 0644 before the umask) in `path`'s directory.
pub(super) fn temp_beside(path: &Path) -> Result<NamedTempFile, VerityError> {
    let dir = parent(path);
    tempfile::Builder::new()
        .prefix(".layerpass-")
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(VerityError::io("create a temporary file in", dir))
}

/// Syncs `tmp`, renames it to `path` and syncs the directory.
pub(super) fn persist(tmp: NamedTempFile, path: &Path) -> Result<(), VerityError> {
    tmp.as_file()
        .sync_all()
        .map_err(VerityError::io("sync", tmp.path().to_owned()))?;
    tmp.persist(path).map_err(|e| VerityError::Io {
        op: "rename into",
        path: path.to_owned(),
        source: e.error,
    })?;
    let dir = parent(path);
    if let Ok(d) = fs::File::open(dir) {
        d.sync_all()
            .map_err(VerityError::io("sync directory", dir))?;
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}
