//! Guest assets: Debian's cloud kernel and busybox-static, fetched with `apt-get download`
//! and unpacked with `dpkg -x` into `<workspace>/target/vm-assets/`, shared by every test.
//!
//! Several test processes may ask for the same asset at once: fetching happens under an
//! exclusive lock on `vm-assets/fetch.lock`, into a temporary directory that is renamed into
//! place only when complete, so a reader never sees half an asset.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::tools::run;

/// The metapackage whose dependency names the current cloud kernel package.
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";

/// `<workspace>/target/vm-assets`, independent of `CARGO_TARGET_DIR`.
pub fn asset_dir() -> PathBuf {
    workspace_root().join("target").join("vm-assets")
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Holds the exclusive asset lock until dropped (the lock is released when the file closes).
#[derive(Debug)]
pub struct AssetLock(#[allow(dead_code, reason = "held for its Drop")] File);

/// Takes the exclusive lock on `vm-assets/<name>`, waiting for other processes. Locks are
/// per open file, so one thread must not take the same lock twice.
pub fn lock_assets(name: &str) -> Result<AssetLock> {
    let dir = asset_dir();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(name);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(AssetLock(file))
}

/// Debian's cloud kernel, unpacked.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Package name, e.g. `linux-image-6.1.0-56-cloud-amd64`.
    pub package: String,
    /// Kernel release (`uname -r`), e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    /// The bootable image (`boot/vmlinuz-<release>`).
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`, with a `modules.dep` made by `depmod -b`.
    pub modules_dir: PathBuf,
}

/// Returns the current Debian cloud kernel, downloading and unpacking it on first use.
///
/// The package is the one [`KERNEL_METAPACKAGE`] depends on now (`apt-cache depends`), so
/// nothing is pinned.
pub fn cloud_kernel() -> Result<Kernel> {
    let fetched = kernel_package_name().and_then(|p| deb_package(&p));
    kernel_in(&or_cached(fetched, "linux-image-")?)
}

/// The cloud kernel from bookworm-backports (6.12 today), for code paths that need a newer
/// kernel than bookworm's 6.1 (overlayfs `lowerdir+`, Linux 6.8). The backports source is
/// the one `ensure_qemu` in `scripts/lib/deps.sh` adds. No cached fallback: apt must answer.
pub fn backports_cloud_kernel() -> Result<Kernel> {
    let out = run(Command::new("apt-cache")
        .args(["policy", KERNEL_METAPACKAGE])
        .env("LC_ALL", "C"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.contains("~bpo")))
        .next()
        .with_context(|| format!("no bookworm-backports version of {KERNEL_METAPACKAGE}: {text}"))?
        .to_owned();
    let out = run(Command::new("apt-cache")
        .args(["depends", &format!("{KERNEL_METAPACKAGE}={version}")])
        .env("LC_ALL", "C"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let package = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && *p != KERNEL_METAPACKAGE)
        .with_context(|| {
            format!("no linux-image dependency of {KERNEL_METAPACKAGE}={version}: {text}")
        })?
        .to_owned();
    kernel_in(&deb_package(&package)?)
}

/// The unpacked `busybox-static` package's static `bin/busybox`.
pub fn busybox() -> Result<PathBuf> {
    let root = or_cached(deb_package("busybox-static"), "busybox-static_")?;
    let path = root.join("bin").join("busybox");
    ensure!(path.is_file(), "busybox-static has no {}", path.display());
    Ok(path)
}

/// When apt cannot resolve or download a package (offline), the newest cached one is used,
/// with a warning: the checks still run, on the package fetched last time. With nothing
/// cached the failure stands.
fn or_cached(fetched: Result<PathBuf>, prefix: &str) -> Result<PathBuf> {
    match fetched {
        Ok(root) => Ok(root),
        Err(e) => {
            let root = newest_cached(prefix).with_context(|| format!("{e:#}"))?;
            eprintln!("vm: using the cached {} because: {e:#}", root.display());
            Ok(root)
        }
    }
}

/// The applets of a busybox binary (`busybox --list`).
pub fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let out = run(Command::new(busybox).arg("--list"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('/'))
        .map(str::to_owned)
        .collect())
}

/// `linux-image-<abi>-cloud-amd64`: the dependency of the metapackage.
fn kernel_package_name() -> Result<String> {
    let out = run(Command::new("apt-cache")
        .args(["depends", KERNEL_METAPACKAGE])
        .env("LC_ALL", "C"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && *p != KERNEL_METAPACKAGE)
        .map(str::to_owned)
        .with_context(|| {
            format!("no linux-image dependency in `apt-cache depends {KERNEL_METAPACKAGE}`: {text}")
        })
}

/// apt's candidate version of `package`.
fn candidate_version(package: &str) -> Result<String> {
    let out = run(Command::new("apt-cache")
        .args(["policy", package])
        .env("LC_ALL", "C"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .find(|v| *v != "(none)")
        .map(str::to_owned)
        .with_context(|| format!("apt has no candidate for {package}: {text}"))
}

/// The unpacked package `package` at apt's candidate version: `vm-assets/pkg/<name>_<ver>`.
pub fn deb_package(package: &str) -> Result<PathBuf> {
    let version = candidate_version(package)?;
    let dir = asset_dir()
        .join("pkg")
        .join(format!("{package}_{}", version.replace(':', "%3a")));
    if dir.is_dir() {
        return Ok(dir);
    }
    let _lock = lock_assets("fetch.lock")?;
    if dir.is_dir() {
        return Ok(dir);
    }
    let tmp = asset_dir().join(format!("tmp-{package}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = fetch_into(package, &version, &tmp, &dir);
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result.map(|()| dir)
}

fn fetch_into(package: &str, version: &str, tmp: &Path, dir: &Path) -> Result<()> {
    run(Command::new("apt-get")
        .args(["download", "-q"])
        .arg(format!("{package}={version}"))
        .current_dir(tmp))
    .with_context(|| format!("apt-get download {package}={version} failed"))?;
    let deb = fs::read_dir(tmp)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))?;
    let root = tmp.join("root");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))
        .with_context(|| format!("dpkg -x {} failed", deb.display()))?;
    if let Some(modules) = modules_base(&root)? {
        depmod(&modules)?;
    }
    fs::create_dir_all(dir.parent().context("package dir has no parent")?)?;
    fs::rename(&root, dir)
        .with_context(|| format!("cannot rename {} to {}", root.display(), dir.display()))?;
    fs::remove_dir_all(tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    Ok(())
}

/// Newest cached package directory whose name starts with `prefix` (offline fallback).
fn newest_cached(prefix: &str) -> Result<PathBuf> {
    let pkg = asset_dir().join("pkg");
    let mut found: Vec<PathBuf> = fs::read_dir(&pkg)
        .with_context(|| format!("nothing cached in {}", pkg.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    found.sort_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok());
    found
        .pop()
        .with_context(|| format!("no cached package {prefix}* in {}", pkg.display()))
}

/// `(base, release)` where `base/lib/modules/release` exists (`usr/` for merged-usr packages).
fn modules_base(root: &Path) -> Result<Option<(PathBuf, String)>> {
    for base in [root.to_path_buf(), root.join("usr")] {
        let modules = base.join("lib").join("modules");
        if let Ok(entries) = fs::read_dir(&modules) {
            let releases: Vec<String> = entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            match releases.as_slice() {
                [] => {}
                [one] => return Ok(Some((base, one.clone()))),
                many => bail!("several kernels in {}: {many:?}", modules.display()),
            }
        }
    }
    Ok(None)
}

/// The package ships no `modules.dep` (the postinst makes it): make it with `depmod -b`.
fn depmod((base, release): &(PathBuf, String)) -> Result<()> {
    run(Command::new("depmod").arg("-b").arg(base).arg(release)).with_context(|| {
        format!(
            "depmod -b {} {release} failed (package kmod)",
            base.display()
        )
    })?;
    Ok(())
}

fn kernel_in(root: &Path) -> Result<Kernel> {
    let (base, release) = modules_base(root)?
        .with_context(|| format!("no lib/modules/<release> in {}", root.display()))?;
    let modules_dir = base.join("lib").join("modules").join(&release);
    ensure!(
        modules_dir.join("modules.dep").is_file(),
        "no modules.dep in {}",
        modules_dir.display()
    );
    let vmlinuz = [root.join("boot"), modules_dir.clone()]
        .iter()
        .map(|d| d.join(format!("vmlinuz-{release}")))
        .chain([modules_dir.join("vmlinuz")])
        .find(|p| p.is_file())
        .with_context(|| format!("no vmlinuz for {release} in {}", root.display()))?;
    let package = root
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .split('_')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    Ok(Kernel {
        package,
        release,
        vmlinuz,
        modules_dir,
    })
}
