//! The `mkfs.erofs` that reproduces containerd's EROFS differ: erofs-utils ≥ 1.8, its
//! version probed and recorded (root hashes depend on it: a node with another version
//! writes other bytes).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::MkfsError;

/// The oldest erofs-utils with what containerd's differ passes (`--tar=f`, `--aufs`,
/// `--sort=none`).
pub const MIN_VERSION: (u32, u32) = (1, 8);

/// The project's own erofs-utils ≥ 1.8 (Debian 13's, fetched and run by this script of the
/// source tree the binary was built from), the default when it is there.
const PROJECT_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/erofs-utils-trixie");

/// A usable `mkfs.erofs` and its version.
#[derive(Debug, Clone)]
pub struct MkfsErofs {
    program: PathBuf,
    /// Arguments before mkfs.erofs's own (`mkfs.erofs` for the project's script).
    leading: Vec<OsString>,
    version: String,
}

impl MkfsErofs {
    /// The executable `path` (a `mkfs.erofs`), refused if older than [`MIN_VERSION`].
    pub fn at(path: &Path) -> Result<Self, MkfsError> {
        Self::probe(path.to_owned(), Vec::new())
    }

    /// The default: the project's `scripts/erofs-utils-trixie` when the binary runs beside
    /// the source tree it was built from, else `mkfs.erofs` on `PATH`; refused if older
    /// than [`MIN_VERSION`].
    pub fn default_tool() -> Result<Self, MkfsError> {
        let script = Path::new(PROJECT_SCRIPT);
        if script.is_file() {
            let script = std::fs::canonicalize(script).unwrap_or_else(|_| script.to_owned());
            return Self::probe(script, vec!["mkfs.erofs".into()]);
        }
        let found = crate::microvm::tool::find_tool("mkfs.erofs").ok_or(MkfsError::NotFound)?;
        Self::probe(found, Vec::new())
    }

    fn probe(program: PathBuf, leading: Vec<OsString>) -> Result<Self, MkfsError> {
        let mut tool = Self {
            program,
            leading,
            version: String::new(),
        };
        let command = tool.describe();
        let out = tool
            .command()
            .arg("--version")
            .output()
            .map_err(|source| MkfsError::Start {
                command: command.clone(),
                source,
            })?;
        // erofs-utils 1.5 prints its version, then fails on the unknown `--version`: its
        // version is still the answer (and too old)
        let text = String::from_utf8_lossy(&out.stdout);
        let Some((version, number)) = parse_version(&text) else {
            let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
            return Err(MkfsError::NoVersion {
                command,
                output: all.trim().chars().take(300).collect(),
            });
        };
        if number < MIN_VERSION {
            return Err(MkfsError::TooOld { command, version });
        }
        tool.version = version;
        Ok(tool)
    }

    /// The erofs-utils version, e.g. `1.8.6`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The command as run, for messages and reports.
    pub fn describe(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.leading.iter().map(OsString::as_os_str))
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A command ready for mkfs.erofs's arguments.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.leading);
        c
    }
}

/// Parses `mkfs.erofs (erofs-utils) 1.8.6` (the first line of `--version`) into `1.8.6`
/// and `(1, 8)`.
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

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
        assert_eq!(parse_version("mkfs.erofs unknown"), None);
        assert_eq!(parse_version(""), None);
    }

    /// A fake `mkfs.erofs` printing `version`, then exiting with `status`.
    fn fake_exiting(dir: &Path, version: &str, status: u8) -> PathBuf {
        let p = dir.join(format!("mkfs-{version}-{status}"));
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho 'mkfs.erofs (erofs-utils) {version}'\nexit {status}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn fake(dir: &Path, version: &str) -> PathBuf {
        fake_exiting(dir, version, 0)
    }

    #[test]
    fn older_than_1_8_is_refused_and_the_version_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let e = MkfsErofs::at(&fake(dir.path(), "1.7.1")).unwrap_err();
        assert!(matches!(e, MkfsError::TooOld { ref version, .. } if version == "1.7.1"));
        assert!(e.to_string().contains(">= 1.8"), "{e}");
        let ok = MkfsErofs::at(&fake(dir.path(), "1.8.5")).unwrap();
        assert_eq!(ok.version(), "1.8.5");
        // Debian 12's 1.5 prints its version and fails on `--version`
        let e = MkfsErofs::at(&fake_exiting(dir.path(), "1.5", 1)).unwrap_err();
        assert!(matches!(e, MkfsError::TooOld { ref version, .. } if version == "1.5"));
        let e = MkfsErofs::at(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(e, MkfsError::Start { .. }), "{e}");
    }
}
