//! Kata's Go runtime's lookup of a vhost-user device by number
//! (`src/runtime/pkg/device/config/config.go`: `getVhostUserHostPath`,
//! `getVhostUserDevName`), done the same way so tests can prove our layout resolves.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::KataStoreError;

/// The socket Kata uses for device `major:minor` of the store at `root`.
///
/// Like Kata: the entries of `block/devices/` are read sorted by name; each is `stat`ed
/// following symlinks (a failed `stat` fails the lookup); the first whose `st_rdev` is
/// `major:minor` wins, whatever its file type; its name under `block/sockets/` must
/// exist. Only a missing socket is an error: Kata returns the path when `stat` fails
/// otherwise (permission denied, for instance), and so does this.
pub(super) fn resolve(
    devices: &Path,
    sockets: &Path,
    major: u32,
    minor: u32,
) -> Result<PathBuf, KataStoreError> {
    let name = device_name(devices, major, minor)?;
    let socket = sockets.join(&name);
    match std::fs::metadata(&socket) {
        Err(source) if source.kind() == io::ErrorKind::NotFound => Err(KataStoreError::NoSocket {
            node: devices.join(&name),
            socket,
            source,
        }),
        _ => Ok(socket),
    }
}

/// The name of the first node (by name) under `devices` whose device number is
/// `major:minor`.
fn device_name(devices: &Path, major: u32, minor: u32) -> Result<PathBuf, KataStoreError> {
    let io_err = |op, path: &Path| {
        let path = path.to_owned();
        move |source| KataStoreError::Io { op, path, source }
    };
    let mut names = std::fs::read_dir(devices)
        .map_err(io_err("read directory", devices))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err("read directory", devices))?;
    // Go's os.ReadDir sorts by file name, byte by byte.
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = devices.join(&name);
        let meta = std::fs::metadata(&path).map_err(io_err("stat", &path))?;
        let rdev = meta.rdev();
        if rustix::fs::major(rdev) == major && rustix::fs::minor(rdev) == minor {
            return Ok(PathBuf::from(name));
        }
    }
    Err(KataStoreError::NoDeviceNode {
        major,
        minor,
        dir: devices.to_owned(),
    })
}
