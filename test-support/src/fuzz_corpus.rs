//! The committed fuzz corpora (`fuzz/corpus/<target>/`), replayed by `cargo test` through the
//! same harness the fuzz target calls. Each crate's `tests/fuzz_corpus.rs` names its targets,
//! their harnesses and how many files are committed; this module lists, replays and checks.

use std::fmt::Display;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Set to write a harness's seeds into its corpus instead of checking them.
pub const WRITE_SEEDS: &str = "LAYERPASS_FUZZ_WRITE_SEEDS";

/// The fuzz crate's directory.
#[must_use]
pub fn fuzz_dir() -> PathBuf {
    crate::workspace_root().join("fuzz")
}

/// `fuzz/corpus/<target>`.
#[must_use]
pub fn corpus_dir(target: &str) -> PathBuf {
    fuzz_dir().join("corpus").join(target)
}

/// The regular files of `dir`, sorted.
///
/// # Panics
/// If `dir` cannot be listed.
#[must_use]
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// The files of `target`'s committed corpus.
///
/// # Panics
/// If the directory is missing or holds fewer than `committed` files: a moved or emptied
/// corpus must not pass silently.
#[must_use]
pub fn corpus_files(target: &str, committed: usize) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    assert!(
        dir.is_dir(),
        "the fuzz corpus {} is missing: the replay would test nothing",
        dir.display()
    );
    let files = files(&dir);
    assert!(
        files.len() >= committed,
        "{} holds {} files, {committed} are committed: the corpus went missing or moved",
        dir.display(),
        files.len()
    );
    files
}

/// Runs every file through `run` and returns what each run returned.
///
/// # Panics
/// Naming every file whose run panicked or returned an error.
pub fn replay<T, E: Display>(files: &[PathBuf], run: impl Fn(&[u8]) -> Result<T, E>) -> Vec<T> {
    let mut out = Vec::with_capacity(files.len());
    let mut failed = Vec::new();
    for path in files {
        let input =
            fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        match catch_unwind(AssertUnwindSafe(|| run(&input))) {
            Ok(Ok(t)) => out.push(t),
            Ok(Err(e)) => failed.push(format!("{}: {e}", path.display())),
            Err(_) => failed.push(format!("{}: panicked (message above)", path.display())),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs failed the fuzz oracle:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
    out
}

/// Replays the crash, leak, timeout and OOM files a local `cargo fuzz run` of `target` left
/// in `fuzz/artifacts/<target>/` (never committed; nothing to do without them): each must
/// pass once the bug is fixed, then it goes into the corpus as a `regression-*` file.
pub fn replay_artifacts<T, E: Display>(target: &str, run: impl Fn(&[u8]) -> Result<T, E>) {
    let dir = fuzz_dir().join("artifacts").join(target);
    if !dir.is_dir() {
        return;
    }
    let files = files(&dir);
    replay(&files, run);
    eprintln!("{} fuzz artifacts of {target} replayed", files.len());
}

/// Checks the harness's `seeds` are committed in `target`'s corpus as the harness makes
/// them; with [`WRITE_SEEDS`] set, writes them instead.
///
/// # Panics
/// If a seed is missing or differs (or cannot be written).
pub fn check_seeds(target: &str, seeds: &[(&str, Vec<u8>)]) {
    let dir = corpus_dir(target);
    let write = std::env::var_os(WRITE_SEEDS).is_some();
    for (name, bytes) in seeds {
        let path = dir.join(name);
        if write {
            fs::create_dir_all(&dir)
                .and_then(|()| fs::write(&path, bytes))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            continue;
        }
        let committed = fs::read(&path).unwrap_or_default();
        assert!(
            committed == *bytes,
            "{} is missing or differs from the harness's seed; rerun with {WRITE_SEEDS}=1",
            path.display()
        );
    }
}
