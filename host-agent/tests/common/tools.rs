//! External tools. In CI (`CI=true`) a missing tool fails the test; elsewhere the test
//! prints why and returns.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// True when `prog` can be run. When it cannot: panics in CI, prints and returns false
/// otherwise.
pub fn have(prog: &str, why: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {prog}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if in_ci() {
            panic!("{prog} is missing (needed for {why}); CI must install it");
        }
        eprintln!("SKIP: {prog} is not installed (needed for {why})");
    }
    found
}

/// True when we can mount (root). Panics in CI when we cannot.
pub fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        if in_ci() {
            panic!("the EROFS mount tests need root");
        }
        eprintln!("SKIP: not root, cannot mount");
    }
    root
}

/// The mkfs.erofs 1.8.6 wrapper from `shared/tools`, found from the workspace.
pub fn mkfs_trixie() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for p in [
        root.join("shared/tools/mkfs-erofs-trixie"),
        PathBuf::from("/work/shared/tools/mkfs-erofs-trixie"),
    ] {
        if p.is_file() {
            return Some(p);
        }
    }
    if in_ci() {
        panic!("shared/tools/mkfs-erofs-trixie is missing");
    }
    eprintln!("SKIP: shared/tools/mkfs-erofs-trixie not found");
    None
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `fsck.erofs` must accept `image`: Debian's (erofs-utils 1.5) and, through
/// `shared/tools/mkfs-erofs-trixie`, erofs-utils 1.8.6's.
pub fn fsck(image: &Path) {
    if have("fsck.erofs", "checking images") {
        run(Command::new("fsck.erofs").arg(image));
    }
    if let Some(trixie) = mkfs_trixie() {
        run(Command::new(trixie)
            .env("MKFS_TOOL", "fsck.erofs")
            .arg(image));
    }
}

/// A cache folder under the target directory for downloaded test inputs.
pub fn cache_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let d = target.join("test-cache").join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}
