//! What every layerpass test crate shares about checks that need something from outside:
//!
//! - [`skip`]: the one skip policy. A check that cannot run **fails**, naming what is
//!   missing and how to get it, unless `LAYERPASS_ALLOW_SKIP=1` is set; then the skip is
//!   recorded in the test log and `scripts/test` prints it at the end.
//! - [`tools`]: finding the external programs the tests compare against, root for mounts.
//! - [`erofs_utils`]: erofs-utils ≥ 1.8 (containerd's converter), fetched from Debian's
//!   packages by `scripts/erofs-utils-trixie`.
//! - [`fuzz_corpus`]: the committed fuzz corpora, replayed through their harnesses.
//! - [`swtpm`]: a software TPM for the TPM tests, killed on drop.
//! - [`counted`]: differential and corpus tests state how many cases they compared, so an
//!   empty run fails.
//!
//! Everything here panics on failure: it runs inside tests.

pub mod counted;
pub mod erofs_utils;
pub mod fuzz_corpus;
pub mod kata;
pub mod log;
pub mod skip;
pub mod swtpm;
pub mod tools;

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's manifest directory).
#[must_use]
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
