//! Real-world layer tars nobody here wrote: the data members of Debian packages, fetched
//! with `apt-get download` into a cache under the target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::tools;

/// Packages used by the tests: coreutils and python3.11-minimal (ELF binaries, setuid-free
/// system files), tzdata (a thousand small files and symlinks), perl-modules-5.36 (1.4k
/// files), python3-botocore (2.3k files, names longer than 100 bytes, 80 MB).
pub const PACKAGES: [&str; 5] = [
    "coreutils",
    "python3.11-minimal",
    "tzdata",
    "perl-modules-5.36",
    "python3-botocore",
];

/// The `.deb` of `package`, downloaded once. When apt cannot get it the check fails, or
/// (skips allowed) the skip is recorded and `None` returned: the caller returns.
///
/// Tests run in parallel and several want the same package: apt writes into a private
/// directory and the finished file is renamed into the cache, so no test ever reads a
/// `.deb` another one is still writing (a half-written one made `dpkg-deb` fail in CI).
pub fn deb(package: &str) -> Option<PathBuf> {
    let dir = tools::cache_dir("debian");
    let find = |dir: &Path| {
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
            })
    };
    if let Some(p) = find(&dir) {
        return Some(p);
    }
    let apt_get = tools::require_tool("apt-get", "apt")?;
    let partial = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(&dir)
        .expect("a download directory in the test cache");
    let download = || {
        Command::new(&apt_get)
            .arg("download")
            .arg(package)
            .current_dir(partial.path())
            .output()
            .expect("apt-get runs")
    };
    let mut out = download();
    if !out.status.success() {
        // a machine whose package lists were never fetched
        let _ = Command::new(&apt_get).args(["update", "-qq"]).output();
        out = download();
    }
    if !out.status.success() {
        layerpass_test_support::skip::cannot_run(
            format!("the Debian package {package}"),
            format!(
                "`apt-get download {package}` failed (the tests fetch it from this machine's \
                 apt sources): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        );
        return None;
    }
    let done = find(partial.path()).expect("apt-get download left a .deb");
    let name = done.file_name().expect("a file name");
    // rename is atomic: a concurrent test sees the whole file or none
    std::fs::rename(&done, dir.join(name)).expect("rename the .deb into the cache");
    find(&dir)
}

/// The uncompressed data tar of `package` (`dpkg-deb --fsys-tarfile`).
pub fn data_tar(package: &str) -> Option<Vec<u8>> {
    let deb = deb(package)?;
    let dpkg_deb = tools::require_tool("dpkg-deb", "dpkg")?;
    Some(tools::run(Command::new(dpkg_deb).arg("--fsys-tarfile").arg(&deb)).stdout)
}
