//! erofs-utils ≥ 1.8, the converter containerd's EROFS differ runs (`mkfs.erofs --tar=f`),
//! obtained by the project's own `scripts/erofs-utils-trixie` from Debian 13's packages.
//! Debian's mirrors carry one version of a suite at a time: callers must not depend on the
//! exact version's output bytes without checking [`ErofsUtils::version`].

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The oldest erofs-utils the differential tests accept (`--tar=f`, `--aufs`).
pub const MIN_VERSION: (u32, u32) = (1, 8);

/// A usable erofs-utils ≥ [`MIN_VERSION`].
#[derive(Debug, Clone)]
pub struct ErofsUtils {
    script: PathBuf,
    version: String,
}

impl ErofsUtils {
    /// `mkfs.erofs`, `fsck.erofs` or `dump.erofs` of this erofs-utils, ready for arguments.
    #[must_use]
    pub fn command(&self, tool: &str) -> Command {
        let mut c = Command::new(&self.script);
        c.arg(tool);
        c
    }

    /// The version, e.g. `1.8.6`.
    #[must_use]
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// The script that fetches and runs it.
#[must_use]
pub fn script() -> PathBuf {
    crate::workspace_root()
        .join("scripts")
        .join("erofs-utils-trixie")
}

/// Parses `mkfs.erofs (erofs-utils) 1.8.6` into `1.8.6` and `(1, 8)`.
#[must_use]
pub fn parse_version(text: &str) -> Option<(String, (u32, u32))> {
    let v = text
        .lines()
        .next()?
        .split_whitespace()
        .last()?
        .trim_start_matches('v')
        .to_owned();
    let mut parts = v.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((v, (major, minor)))
}

/// Why erofs-utils ≥ 1.8 could not be had.
#[derive(Debug, Clone)]
pub enum FetchError {
    /// The script could not fetch or run it (no mirror, no network, …).
    Unavailable(String),
    /// It runs, but is older than [`MIN_VERSION`]: a broken set-up, never a skip.
    TooOld(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(why) | Self::TooOld(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for FetchError {}

/// erofs-utils ≥ 1.8, fetched on first use (once per process; the script locks across
/// processes). For tools such as the benchmark; tests use [`require`].
///
/// # Errors
/// When the script fails or gives a version older than 1.8.
pub fn fetch() -> Result<ErofsUtils, FetchError> {
    static FOUND: OnceLock<Result<ErofsUtils, FetchError>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let script = script();
            let out = Command::new(&script).arg("--fetch").output().map_err(|e| {
                FetchError::Unavailable(format!("cannot run {}: {e}", script.display()))
            })?;
            if !out.status.success() {
                return Err(FetchError::Unavailable(format!(
                    "{} --fetch failed ({}): {}",
                    script.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let (version, number) = parse_version(&text).ok_or_else(|| {
                FetchError::TooOld(format!("no version in `mkfs.erofs --version`: {text}"))
            })?;
            if number < MIN_VERSION {
                return Err(FetchError::TooOld(format!(
                    "{} gave erofs-utils {version}, older than {}.{}",
                    script.display(),
                    MIN_VERSION.0,
                    MIN_VERSION.1
                )));
            }
            eprintln!(
                "erofs-utils {version} (Debian trixie) from {}",
                script.display()
            );
            Ok(ErofsUtils { script, version })
        })
        .clone()
}

/// [`fetch`] under the skip policy: when it cannot be had the check fails, or (skips
/// allowed) the skip is recorded and `None` returned for the caller to return. A version
/// older than 1.8 always fails.
///
/// # Panics
/// When it cannot be had and skips are not allowed, or when it is too old.
#[track_caller]
#[must_use]
pub fn require() -> Option<ErofsUtils> {
    match fetch() {
        Ok(e) => Some(e),
        Err(FetchError::TooOld(why)) => panic!("erofs-utils: {why}"),
        Err(FetchError::Unavailable(why)) => {
            crate::skip::cannot_run(
                "erofs-utils >= 1.8",
                format!("scripts/erofs-utils-trixie fetches it from Debian's packages: {why}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("mkfs.erofs (erofs-utils) 1.8.6\navailable compressors: lz4"),
            Some(("1.8.6".to_owned(), (1, 8)))
        );
        assert_eq!(
            parse_version("mkfs.erofs 1.10-rc1"),
            Some(("1.10-rc1".to_owned(), (1, 10)))
        );
        assert_eq!(
            parse_version("mkfs.erofs 1.5"),
            Some(("1.5".to_owned(), (1, 5)))
        );
        assert!((1, 10) >= super::MIN_VERSION && (1, 5) < super::MIN_VERSION);
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("mkfs.erofs unknown"), None);
    }
}
