//! A converted layer put in place: its sidecar renamed first, then its blob, then the
//! directory synced, so that a reader never sees a blob without its sidecar. A failed
//! layer's temporary files are removed.

use std::fs;
use std::io;
use std::path::Path;

use super::error::LayerConvertError;
use crate::verity::sidecar_path;

/// Renames `tmp` (and its sidecar) to `path` (and its sidecar), sidecar first, and syncs
/// the directory `path` is in.
pub(super) fn publish(tmp: &Path, path: &Path) -> Result<(), LayerConvertError> {
    rename(&sidecar_path(tmp), &sidecar_path(path))?;
    rename(tmp, path)?;
    layerpass_fsutil::sync_dir(layerpass_fsutil::dir_of(path))?;
    Ok(())
}

/// Removes `tmp` and its sidecar, whichever exist.
pub(super) fn discard(tmp: &Path) {
    remove_if_present(tmp);
    remove_if_present(&sidecar_path(tmp));
}

fn rename(from: &Path, to: &Path) -> Result<(), LayerConvertError> {
    fs::rename(from, to).map_err(|source| LayerConvertError::Publish {
        from: from.to_owned(),
        to: to.to_owned(),
        source,
    })
}

pub(super) fn remove_if_present(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a partial output");
    }
}
