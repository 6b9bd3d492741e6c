//! The one skip policy: a check that cannot run fails, unless skips were allowed.

use std::fmt::Display;
use std::panic::Location;

/// The variable that turns "cannot run" from a failure into a recorded skip.
pub const ALLOW_SKIP_VAR: &str = "LAYERPASS_ALLOW_SKIP";

/// True when `LAYERPASS_ALLOW_SKIP=1`.
#[must_use]
pub fn skips_allowed() -> bool {
    std::env::var(ALLOW_SKIP_VAR).is_ok_and(|v| v == "1")
}

/// The calling check cannot run because `missing` is not there; `how` says how to get it.
/// Fails the check (panics) unless skips are allowed; then records a `SKIPPED` line in the
/// test log, says so on stderr and returns, and the caller returns having checked nothing.
///
/// # Panics
/// Unless `LAYERPASS_ALLOW_SKIP=1`.
#[track_caller]
pub fn cannot_run(missing: impl Display, how: impl Display) {
    let check = crate::log::check_name(Location::caller());
    let what = format!("{missing} is missing ({how})");
    assert!(
        skips_allowed(),
        "{check}: cannot run: {what}. Install it, or set {ALLOW_SKIP_VAR}=1 to skip this check \
         (skips are recorded and listed by scripts/test)"
    );
    crate::log::append(&format!("SKIPPED {check}: {what}"));
    eprintln!("SKIPPED {check}: {what}");
}
