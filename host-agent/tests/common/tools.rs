//! External tools, through the one skip policy of `layerpass-test-support`: a check that
//! cannot run fails unless `LAYERPASS_ALLOW_SKIP=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub use layerpass_test_support::erofs_utils;
pub use layerpass_test_support::tools::{require_root, require_tool};

/// True when this process may mount with the host kernel (root); see
/// [`require_root`].
#[track_caller]
pub fn can_mount() -> bool {
    require_root("mounting EROFS and overlayfs with the host kernel")
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

/// `fsck.erofs` must accept `image`: Debian 12's (erofs-utils 1.5) and erofs-utils ≥ 1.8's
/// (`scripts/erofs-utils-trixie`). A missing one follows the skip policy.
#[track_caller]
pub fn fsck(image: &Path) {
    if let Some(fsck) = require_tool("fsck.erofs", "erofs-utils") {
        run(Command::new(fsck).arg(image));
    }
    if let Some(new) = erofs_utils::require() {
        run(new.command("fsck.erofs").arg(image));
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
