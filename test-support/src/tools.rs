//! The external programs the tests use, and root for the host-kernel mounts. Each
//! `require_*` follows the skip policy ([`crate::skip`]): missing means a failed check
//! unless skips are allowed.

use std::path::PathBuf;

/// Looks `name` up in `PATH`, then in `/usr/sbin` and `/sbin` (not in a user's `PATH`).
#[must_use]
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The path of `name`, from the Debian package `package`. When it is missing: fails the
/// check, or (skips allowed) records the skip and returns `None` for the caller to return.
///
/// # Panics
/// When the tool is missing and skips are not allowed.
#[track_caller]
#[must_use]
pub fn require_tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = find_tool(name);
    if found.is_none() {
        crate::skip::cannot_run(
            name,
            format!(
                "Debian package {package}: `apt-get install {package}`; scripts/test installs it"
            ),
        );
    }
    found
}

/// True when this process is root, which mounting with the host kernel needs. Otherwise
/// fails the check, or (skips allowed) records the skip and returns false.
///
/// # Panics
/// When not root and skips are not allowed.
#[track_caller]
#[must_use]
pub fn require_root(why: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        crate::skip::cannot_run(
            format!("root (for {why})"),
            "run the tests as root, e.g. `sudo ./scripts/test`",
        );
    }
    root
}
