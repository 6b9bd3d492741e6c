//! Benchmarks: each measures layerpass against a named peer in the same run and prints
//! medians and ratios. They are tools, never tests with timing thresholds.

pub mod blk;
pub mod convert;
pub mod convert_index;
pub mod memory;
pub mod procfs;
pub mod run;
pub mod stats;
pub mod verity;

use std::path::PathBuf;

use anyhow::ensure;

/// The `layerpass` binary built next to this one (same profile): the benchmarks run it as
/// its own process, as a user would.
pub(crate) fn layerpass_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("layerpass");
    ensure!(
        p.is_file(),
        "{} not found: build it with the same profile first, e.g. `cargo build --release -p layerpass --bin layerpass`",
        p.display()
    );
    Ok(p)
}
