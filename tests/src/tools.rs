//! Finding and running the real tools the tests compare against. Finding follows the one
//! skip policy of `layerpass-test-support`: a check that cannot run fails unless
//! `LAYERPASS_ALLOW_SKIP=1`.

use std::process::{Command, Output};

pub use layerpass_test_support::erofs_utils::{self, ErofsUtils};
pub use layerpass_test_support::tools::{find_tool, require_root, require_tool};

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
