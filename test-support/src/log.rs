//! The test log: one line per skipped check or counted comparison, appended by every test
//! process to `<workspace>/target/test-log.txt` (or `$LAYERPASS_TEST_LOG`). `scripts/test`
//! empties it before the run and prints it at the end.

use std::fs::OpenOptions;
use std::io::Write;
use std::panic::Location;
use std::path::PathBuf;

/// Where the log goes.
#[must_use]
pub fn path() -> PathBuf {
    std::env::var_os("LAYERPASS_TEST_LOG").map_or_else(
        || crate::workspace_root().join("target").join("test-log.txt"),
        PathBuf::from,
    )
}

/// The name of the running check: the test binary, the test (libtest names each test's
/// thread after it; with one test thread the name is `main`) and the caller's place.
#[must_use]
pub fn check_name(at: &Location<'_>) -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .map_or_else(|| "?".to_owned(), |n| binary_stem(&n).to_owned());
    let thread = std::thread::current();
    let test = thread.name().filter(|n| *n != "main").unwrap_or("?");
    format!("{binary}::{test} ({}:{})", at.file(), at.line())
}

/// `erofs_debian-0123456789abcdef` → `erofs_debian` (cargo names test binaries
/// `<target>-<16 hex>`).
fn binary_stem(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((stem, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            stem
        }
        _ => name,
    }
}

/// Appends `line` to the log. One `write` of a short line to a file opened with `O_APPEND`:
/// lines from parallel tests and processes do not interleave.
///
/// # Panics
/// When the log cannot be written (a skip that cannot be recorded must not pass silently).
pub fn append(line: &str) {
    let path = path();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open the test log {}: {e}", path.display()));
    let mut text = line.replace('\n', " ");
    text.push('\n');
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("cannot write the test log {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    #[test]
    fn binary_stems() {
        assert_eq!(
            super::binary_stem("erofs_debian-0123456789abcdef"),
            "erofs_debian"
        );
        assert_eq!(super::binary_stem("layerpass-bench"), "layerpass-bench");
        assert_eq!(super::binary_stem("vm-harness-0123"), "vm-harness-0123");
    }
}
