//! Counted comparisons: a differential or corpus test says how many cases it compared and
//! fails when that is fewer than it must be, so a run that silently compared nothing fails.

use std::panic::Location;

/// Records that the calling check compared `n` `what` (e.g. "trees with mkfs.erofs 1.8.6")
/// in the test log and on stderr, and fails it when `n < min`.
///
/// # Panics
/// When `n < min`.
#[track_caller]
pub fn compared(n: usize, min: usize, what: &str) {
    let check = crate::log::check_name(Location::caller());
    assert!(
        n >= min,
        "{check}: compared {n} {what}, at least {min} expected: a silent or partial run is a failure"
    );
    crate::log::append(&format!("COUNTED {check}: {n} {what}"));
    eprintln!("COUNTED {check}: {n} {what}");
}
