//! Real-world layer tars nobody here wrote: the data members of Debian packages, fetched
//! with `apt-get download` into a cache under the target directory.

use std::path::PathBuf;
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
pub fn deb(package: &str) -> Option<PathBuf> {
    let dir = tools::cache_dir("debian");
    let find = || {
        std::fs::read_dir(&dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
            })
    };
    if let Some(p) = find() {
        return Some(p);
    }
    let apt_get = tools::require_tool("apt-get", "apt")?;
    let download = || {
        Command::new(&apt_get)
            .arg("download")
            .arg(package)
            .current_dir(&dir)
            .output()
            .unwrap()
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
    find()
}

/// The uncompressed data tar of `package` (`dpkg-deb --fsys-tarfile`).
pub fn data_tar(package: &str) -> Option<Vec<u8>> {
    let deb = deb(package)?;
    let dpkg_deb = tools::require_tool("dpkg-deb", "dpkg")?;
    Some(tools::run(Command::new(dpkg_deb).arg("--fsys-tarfile").arg(&deb)).stdout)
}
