//! Building workspace binaries statically linked (`-C target-feature=+crt-static`) so they
//! run in the busybox initramfs, which has no C library.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};

use super::assets::workspace_root;
use crate::tools::run;

/// The host target, named explicitly so `RUSTFLAGS` reach only the target artifacts (not
/// build scripts or proc macros).
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds `bin` of workspace package `package` as a static executable and returns its path.
///
/// Uses its own target directory, `<workspace>/target/vm-static`: the `cargo test` that
/// runs the caller holds the lock on its own target directory. Concurrent callers are
/// serialised by cargo's lock on this one.
pub fn static_binary(package: &str, bin: &str) -> Result<PathBuf> {
    build_static(package, bin, false)
}

/// [`static_binary`] with the release profile (optimised, as shipped), for benchmarks.
pub fn static_binary_release(package: &str, bin: &str) -> Result<PathBuf> {
    build_static(package, bin, true)
}

fn build_static(package: &str, bin: &str, release: bool) -> Result<PathBuf> {
    let target_dir = workspace_root().join("target").join("vm-static");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--package", package, "--bin", bin])
        .args(release.then_some("--release"))
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // A dev build compiles fastest; without debug info it stays small in the initramfs.
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("CARGO_PROFILE_DEV_STRIP", "true")
        .env_remove("CARGO_ENCODED_RUSTFLAGS"))
    .with_context(|| format!("cannot build {package} {bin} statically"))?;
    let profile = if release { "release" } else { "debug" };
    let path = target_dir.join(TARGET).join(profile).join(bin);
    ensure!(path.is_file(), "cargo built no {}", path.display());
    Ok(path)
}

/// Compiles the std-only guest helper `tests/src/vm/guest/<name>.rs` with rustc alone
/// (no cargo, no dependencies: seconds, not a workspace build) as a static executable at
/// `<workspace>/target/vm-static/rustc/<name>`; rebuilt when the source is newer.
pub fn static_rustc(name: &str) -> Result<PathBuf> {
    let source = workspace_root()
        .join("tests/src/vm/guest")
        .join(format!("{name}.rs"));
    let dir = workspace_root()
        .join("target")
        .join("vm-static")
        .join("rustc");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(name);
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&out).is_some() && modified(&out) >= modified(&source) {
        return Ok(out);
    }
    // Built under a private name and renamed: a concurrent test sees all of it or none.
    let partial = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .tempfile_in(&dir)?
        .into_temp_path();
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    run(Command::new(rustc)
        .args(["--edition", "2024", "-O", "--target", TARGET])
        .args(["-C", "target-feature=+crt-static", "-C", "strip=symbols"])
        .arg("-o")
        .arg(&partial)
        .arg(&source))
    .with_context(|| format!("cannot compile {}", source.display()))?;
    partial.persist(&out)?;
    Ok(out)
}
