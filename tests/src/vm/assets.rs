//! Guest assets for the tests: the product's asset cache ([`layerpass::microvm::assets`])
//! in `<workspace>/target/vm-assets/`, shared by every test process.

use std::path::{Path, PathBuf};

use anyhow::Result;
pub use layerpass::microvm::assets::{
    AssetCache, AssetLock, KERNEL_METAPACKAGE, Kernel, busybox_applets,
};

/// `<workspace>/target/vm-assets`, independent of `CARGO_TARGET_DIR`.
pub fn asset_dir() -> PathBuf {
    workspace_root().join("target").join("vm-assets")
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The tests' asset cache.
pub fn cache() -> AssetCache {
    AssetCache::new(asset_dir())
}

fn say(what: &str) {
    eprintln!("vm: {what}");
}

/// Takes the exclusive lock on `vm-assets/<name>`, waiting for other processes.
pub fn lock_assets(name: &str) -> Result<AssetLock> {
    Ok(cache().lock(name)?)
}

/// Debian's current cloud kernel, downloaded and unpacked on first use.
pub fn cloud_kernel() -> Result<Kernel> {
    Ok(cache().cloud_kernel(&say)?)
}

/// The cloud kernel from bookworm-backports (6.12 today), for code paths that need a newer
/// kernel than bookworm's 6.1 (overlayfs `lowerdir+`, Linux 6.8). The backports source is
/// the one `ensure_qemu` in `scripts/lib/deps.sh` adds.
pub fn backports_cloud_kernel() -> Result<Kernel> {
    Ok(cache().backports_cloud_kernel(&say)?)
}

/// The unpacked `busybox-static` package's static `bin/busybox`.
pub fn busybox() -> Result<PathBuf> {
    Ok(cache().busybox(&say)?)
}

/// The unpacked package `package` at apt's candidate version.
pub fn deb_package(package: &str) -> Result<PathBuf> {
    Ok(cache().deb_package(package, &say)?)
}
