//! The image `layerpass run` runs when no `--image` is given: a small three-layer OCI image
//! assembled from a static busybox binary (Debian's busybox-static) on first use.
//!
//! Each layer shows one part of the layer stack at work (see `layers`): layer 1 is the base
//! (busybox, an applet symlink per command, `/etc`), layer 2 adds files and a hard link,
//! layer 3 removes a file with a whiteout and hides a directory's content with an opaque
//! marker. Its config runs `cat /etc/os-release` in `/home/user`.
//!
//! The image is reproducible: the same busybox bytes give the same blobs and digests (tar
//! entries sorted, fixed times, owners and modes; gzip header time 0).

mod busybox;
mod layers;
mod layout;
mod tarball;
#[cfg(test)]
mod tests;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::error::RunError;

/// What [`write_sample_image`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleImage {
    /// The OCI image layout directory.
    pub dir: PathBuf,
    /// `sha256:<hex>` of the image manifest.
    pub manifest_digest: String,
    /// Number of layers.
    pub layers: usize,
}

/// What each layer is, in the config's history.
const HISTORY: [&str; 3] = [
    "layerpass sample: busybox, applet symlinks, /etc, top-level directories",
    "layerpass sample: /etc/motd, /usr/bin/hello, data.bin and a hard link to it",
    "layerpass sample: a whiteout (/etc/layerpass/removed) and an opaque directory \
     (/usr/share/sample/old)",
];

/// Writes the sample OCI image layout into `dir` (created; must not exist or be empty),
/// atomically: built in a sibling temp dir, then renamed. Reproducible: same busybox bytes
/// → same blobs and digests. `busybox` is a static busybox binary; it is run (`--list`,
/// `--help`) to learn its applets and version.
pub fn write_sample_image(busybox: &Path, dir: &Path) -> Result<SampleImage, RunError> {
    check_empty(dir)?;
    let busybox = busybox::Busybox::load(busybox)?;
    let tars = [layers::base(&busybox), layers::adds(), layers::changes()];
    let blobs = tars
        .iter()
        .map(|t| {
            t.finish().map_err(|e| RunError::Io {
                what: "build a layer tar of".into(),
                path: dir.to_owned(),
                source: e,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let parent = layerpass_fsutil::dir_of(dir);
    fs::create_dir_all(parent).map_err(RunError::io("create", parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(layerpass_fsutil::TEMP_PREFIX)
        .tempdir_in(parent)
        .map_err(RunError::io("create a temporary directory in", parent))?;
    let manifest_digest = layout::write_layout(tmp.path(), &blobs, &HISTORY)?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
        .map_err(RunError::io("set the permissions of", tmp.path()))?;
    layerpass_fsutil::sync_dir(tmp.path())?;
    let tmp_path = tmp.keep();
    // Replaces `dir` if it is an empty directory; fails if it is not empty, which it may
    // have become since the check (another writer won the race).
    if let Err(e) = fs::rename(&tmp_path, dir) {
        let _ = fs::remove_dir_all(&tmp_path);
        return Err(match e.raw_os_error() {
            Some(libc::ENOTEMPTY | libc::EEXIST) => RunError::NotEmpty {
                path: dir.to_owned(),
            },
            _ => RunError::Io {
                what: "rename into".into(),
                path: dir.to_owned(),
                source: e,
            },
        });
    }
    layerpass_fsutil::sync_dir(parent)?;
    tracing::info!(
        dir = %dir.display(),
        manifest = manifest_digest,
        busybox = busybox.version,
        applets = busybox.applets.len(),
        "wrote the sample image"
    );
    Ok(SampleImage {
        dir: dir.to_owned(),
        manifest_digest,
        layers: blobs.len(),
    })
}

/// `dir` must not exist, or be an empty directory.
fn check_empty(dir: &Path) -> Result<(), RunError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(RunError::NotEmpty {
                path: dir.to_owned(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Err(RunError::NotEmpty {
            path: dir.to_owned(),
        }),
        Err(e) => Err(RunError::Io {
            what: "read the directory".into(),
            path: dir.to_owned(),
            source: e,
        }),
    }
}
