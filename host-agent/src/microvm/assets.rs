//! Guest assets from Debian packages: the cloud kernel (with its modules) and
//! busybox-static, fetched with `apt-get download` (apt checks the package against the
//! signed archive index) and unpacked with `dpkg -x` into a cache directory.
//!
//! Several processes may ask for the same asset at once: fetching happens under an
//! exclusive lock on `<cache>/fetch.lock`, into a temporary directory renamed into place
//! only when complete, so a reader never sees half an asset.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::VmError;
use super::tool::run;

/// The metapackage whose dependency names the current cloud kernel package.
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";

/// How long an answer of apt (which package, which version) is reused before apt is asked
/// again: a newer kernel is picked up within a day.
pub const REMEMBER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Told what is being fetched (for a progress line); called before each download.
pub type Notify<'a> = &'a (dyn Fn(&str) + Sync);

/// Debian's cloud kernel, unpacked.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Package name, e.g. `linux-image-6.1.0-56-cloud-amd64` (empty for `--kernel`).
    pub package: String,
    /// Kernel release (`uname -r`), e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    /// The bootable image (`boot/vmlinuz-<release>`).
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`, with a `modules.dep` made by `depmod -b`; `None` for a
    /// kernel given without modules (everything it needs must be built in).
    pub modules_dir: Option<PathBuf>,
}

/// Holds an asset lock until dropped (the lock is released when the file closes).
#[derive(Debug)]
pub struct AssetLock(#[allow(dead_code, reason = "held for its Drop")] File);

/// A directory of unpacked packages and other prepared assets.
#[derive(Debug, Clone)]
pub struct AssetCache {
    dir: PathBuf,
}

impl AssetCache {
    /// A cache in `dir` (created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$XDG_CACHE_HOME/layerpass`, else `$HOME/.cache/layerpass`.
    pub fn user_default() -> Result<Self, VmError> {
        let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            Some(x) => PathBuf::from(x),
            None => std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
                .ok_or_else(|| {
                    VmError::Asset(
                        "neither XDG_CACHE_HOME nor HOME is set: no cache directory".into(),
                    )
                })?,
        };
        Ok(Self::new(base.join("layerpass")))
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the exclusive lock `<cache>/<name>`, waiting for other processes. Locks are
    /// per open file, so one thread must not take the same lock twice.
    pub fn lock(&self, name: &str) -> Result<AssetLock, VmError> {
        fs::create_dir_all(&self.dir).map_err(VmError::io("create", &self.dir))?;
        let path = self.dir.join(name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(VmError::io("open", &path))?;
        file.lock().map_err(VmError::io("lock", &path))?;
        Ok(AssetLock(file))
    }

    /// The current Debian cloud kernel (the package [`KERNEL_METAPACKAGE`] depends on
    /// now, so nothing is pinned), downloading and unpacking it on first use. Offline,
    /// the newest cached one is used.
    pub fn cloud_kernel(&self, notify: Notify<'_>) -> Result<Kernel, VmError> {
        let fetched = self
            .remembered("kernel-package", kernel_package_name)
            .and_then(|p| self.deb_package(&p, notify));
        kernel_in(&self.or_cached(fetched, "linux-image-")?)
    }

    /// The cloud kernel from bookworm-backports (6.12 today). No cached fallback.
    pub fn backports_cloud_kernel(&self, notify: Notify<'_>) -> Result<Kernel, VmError> {
        let out = run(Command::new("apt-cache")
            .args(["policy", KERNEL_METAPACKAGE])
            .env("LC_ALL", "C"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text
            .lines()
            .filter_map(|l| l.split_whitespace().find(|w| w.contains("~bpo")))
            .next()
            .ok_or_else(|| {
                VmError::Asset(format!(
                    "no bookworm-backports version of {KERNEL_METAPACKAGE}: {text}"
                ))
            })?
            .to_owned();
        let package = depends_on(&format!("{KERNEL_METAPACKAGE}={version}"))?;
        kernel_in(&self.deb_package(&package, notify)?)
    }

    /// The unpacked `busybox-static` package's static `bin/busybox`.
    pub fn busybox(&self, notify: Notify<'_>) -> Result<PathBuf, VmError> {
        let fetched = self.deb_package("busybox-static", notify);
        let root = self.or_cached(fetched, "busybox-static_")?;
        let path = root.join("bin").join("busybox");
        if !path.is_file() {
            return Err(VmError::Asset(format!(
                "busybox-static has no {}",
                path.display()
            )));
        }
        Ok(path)
    }

    /// When apt cannot resolve or download a package (offline), the newest cached one is
    /// used, with a warning. With nothing cached the failure stands.
    fn or_cached(
        &self,
        fetched: Result<PathBuf, VmError>,
        prefix: &str,
    ) -> Result<PathBuf, VmError> {
        match fetched {
            Ok(root) => Ok(root),
            Err(e) => {
                let root = self
                    .newest_cached(prefix)
                    .map_err(|c| VmError::Asset(format!("{e}; and {c}")))?;
                tracing::warn!(cached = %root.display(), error = %e, "using a cached package");
                Ok(root)
            }
        }
    }

    /// The unpacked package `package` at apt's candidate version: `<cache>/pkg/<name>_<ver>`.
    pub fn deb_package(&self, package: &str, notify: Notify<'_>) -> Result<PathBuf, VmError> {
        let version =
            self.remembered(&format!("version-{package}"), || candidate_version(package))?;
        let dir = self
            .dir
            .join("pkg")
            .join(format!("{package}_{}", version.replace(':', "%3a")));
        if dir.is_dir() {
            return Ok(dir);
        }
        let _lock = self.lock("fetch.lock")?;
        if dir.is_dir() {
            return Ok(dir);
        }
        notify(&format!("downloading {package} {version}"));
        let tmp = self
            .dir
            .join(format!("tmp-{package}-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(VmError::io("remove", &tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(VmError::io("create", &tmp))?;
        let result = fetch_into(package, &version, &tmp, &dir);
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result.map(|()| dir)
    }

    /// What apt answered for `key` less than [`REMEMBER`] ago, else `ask()` (remembered).
    /// Asking apt costs seconds; a run should not pay it every time.
    fn remembered(
        &self,
        key: &str,
        ask: impl FnOnce() -> Result<String, VmError>,
    ) -> Result<String, VmError> {
        let path = self.dir.join("apt-answers").join(key);
        let fresh = fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < REMEMBER);
        if fresh
            && let Ok(text) = fs::read_to_string(&path)
            && !text.trim().is_empty()
        {
            return Ok(text.trim().to_owned());
        }
        let answer = ask()?;
        if let Some(dir) = path.parent()
            && fs::create_dir_all(dir).is_ok()
        {
            let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
            if fs::write(&tmp, &answer).is_ok() && fs::rename(&tmp, &path).is_err() {
                let _ = fs::remove_file(&tmp);
            }
        }
        Ok(answer)
    }

    /// Newest cached package directory whose name starts with `prefix`.
    fn newest_cached(&self, prefix: &str) -> Result<PathBuf, VmError> {
        let pkg = self.dir.join("pkg");
        let mut found: Vec<PathBuf> = fs::read_dir(&pkg)
            .map_err(|_| VmError::Asset(format!("nothing cached in {}", pkg.display())))?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.path())
            .collect();
        found.sort_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok());
        found.pop().ok_or_else(|| {
            VmError::Asset(format!("no cached package {prefix}* in {}", pkg.display()))
        })
    }
}

/// The `linux-image-*` package `what` (a package or `package=version`) depends on.
fn depends_on(what: &str) -> Result<String, VmError> {
    let out = run(Command::new("apt-cache")
        .args(["depends", what])
        .env("LC_ALL", "C"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && *p != KERNEL_METAPACKAGE)
        .map(str::to_owned)
        .ok_or_else(|| {
            VmError::Asset(format!(
                "no linux-image dependency in `apt-cache depends {what}`: {text}"
            ))
        })
}

/// `linux-image-<abi>-cloud-amd64`: the dependency of the metapackage.
fn kernel_package_name() -> Result<String, VmError> {
    depends_on(KERNEL_METAPACKAGE)
}

/// apt's candidate version of `package`.
fn candidate_version(package: &str) -> Result<String, VmError> {
    let out = run(Command::new("apt-cache")
        .args(["policy", package])
        .env("LC_ALL", "C"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .find(|v| *v != "(none)")
        .map(str::to_owned)
        .ok_or_else(|| VmError::Asset(format!("apt has no candidate for {package}: {text}")))
}

fn fetch_into(package: &str, version: &str, tmp: &Path, dir: &Path) -> Result<(), VmError> {
    run(Command::new("apt-get")
        .args(["download", "-q"])
        .arg(format!("{package}={version}"))
        .current_dir(tmp))?;
    let deb = fs::read_dir(tmp)
        .map_err(VmError::io("read", tmp))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| VmError::Asset(format!("apt-get download {package} left no .deb")))?;
    let root = tmp.join("root");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
    if let Some(modules) = modules_base(&root)? {
        depmod(&modules)?;
    }
    let parent = dir
        .parent()
        .ok_or_else(|| VmError::Asset(format!("{} has no parent", dir.display())))?;
    fs::create_dir_all(parent).map_err(VmError::io("create", parent))?;
    if let Err(e) = fs::rename(&root, dir) {
        // Another cache sharing this package directory (its own lock file) won the race.
        if !dir.is_dir() {
            return Err(VmError::io("rename into place", dir)(e));
        }
    }
    fs::remove_dir_all(tmp).map_err(VmError::io("remove", tmp))?;
    Ok(())
}

/// `(base, release)` where `base/lib/modules/release` exists (`usr/` for merged-usr packages).
fn modules_base(root: &Path) -> Result<Option<(PathBuf, String)>, VmError> {
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
                many => {
                    return Err(VmError::Asset(format!(
                        "several kernels in {}: {many:?}",
                        modules.display()
                    )));
                }
            }
        }
    }
    Ok(None)
}

/// The package ships no `modules.dep` (the postinst makes it): make it with `depmod -b`.
fn depmod((base, release): &(PathBuf, String)) -> Result<(), VmError> {
    run(Command::new("depmod").arg("-b").arg(base).arg(release))?;
    Ok(())
}

fn kernel_in(root: &Path) -> Result<Kernel, VmError> {
    let (base, release) = modules_base(root)?
        .ok_or_else(|| VmError::Asset(format!("no lib/modules/<release> in {}", root.display())))?;
    let modules_dir = base.join("lib").join("modules").join(&release);
    if !modules_dir.join("modules.dep").is_file() {
        return Err(VmError::Asset(format!(
            "no modules.dep in {}",
            modules_dir.display()
        )));
    }
    let vmlinuz = [root.join("boot"), modules_dir.clone()]
        .iter()
        .map(|d| d.join(format!("vmlinuz-{release}")))
        .chain([modules_dir.join("vmlinuz")])
        .find(|p| p.is_file())
        .ok_or_else(|| VmError::Asset(format!("no vmlinuz for {release} in {}", root.display())))?;
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
        modules_dir: Some(modules_dir),
    })
}

/// The applets of a busybox binary (`busybox --list`).
pub fn busybox_applets(busybox: &Path) -> Result<Vec<String>, VmError> {
    let out = run(Command::new(busybox).arg("--list"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('/'))
        .map(str::to_owned)
        .collect())
}
