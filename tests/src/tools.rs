//! Finding and running the real tools the tests compare against.

use std::path::PathBuf;
use std::process::{Command, Output};

/// True when running under CI (`CI=true`), where a missing tool is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Looks `name` up in `PATH`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Returns the tool's path. Under CI a missing tool panics (the test fails); elsewhere the
/// caller gets `None`, says so on stderr and returns.
///
/// # Panics
/// When the tool is missing and `CI=true`.
pub fn require_tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = find_tool(name);
    if found.is_none() {
        assert!(
            !in_ci(),
            "{name} is required under CI=true; install the Debian package {package}"
        );
        eprintln!("NOT RUN: {name} is missing (Debian package {package}); this test did nothing");
    }
    found
}

/// Runs a command, returning its output, and turns a non-zero exit into an error that
/// carries stderr.
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {cmd:?}: {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// The `Root hash:` line of `veritysetup format` output.
pub fn veritysetup_root(stdout: &[u8]) -> anyhow::Result<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:").map(|r| r.trim().to_owned()))
        .ok_or_else(|| anyhow::anyhow!("no root hash in veritysetup output"))
}

/// Deterministic, incompressible test data (xorshift64), different for each `seed`.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
