//! What the sample image needs to know of the busybox binary: its bytes, its applets and
//! its version. The binary is static, so it runs on the host as it will in the guest.

use std::path::Path;
use std::process::Command;

use crate::run::error::RunError;

/// A busybox binary, read and asked for its applets and version.
#[derive(Debug, Clone)]
pub struct Busybox {
    pub bytes: Vec<u8>,
    /// Applet names, sorted, without `busybox` itself.
    pub applets: Vec<String>,
    /// The version word of `busybox --help`'s first line, e.g. `v1.35.0`.
    pub version: String,
}

impl Busybox {
    pub fn load(path: &Path) -> Result<Self, RunError> {
        let bytes = std::fs::read(path).map_err(RunError::io("read", path))?;
        let applets = parse_applets(&run(path, "--list")?).map_err(|m| tool(path, m))?;
        let version = parse_version(&run(path, "--help")?).map_err(|m| tool(path, m))?;
        Ok(Self {
            bytes,
            applets,
            version,
        })
    }
}

fn tool(path: &Path, message: String) -> RunError {
    RunError::Tool {
        tool: path.display().to_string(),
        message,
    }
}

/// The standard output of `busybox <arg>`, which must succeed.
fn run(path: &Path, arg: &str) -> Result<String, RunError> {
    let out = Command::new(path)
        .arg(arg)
        .output()
        .map_err(|e| tool(path, format!("cannot run it with {arg}: {e}")))?;
    if !out.status.success() {
        return Err(tool(
            path,
            format!(
                "{arg} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| tool(path, format!("{arg} printed non-UTF-8 text")))
}

/// Applet names from `busybox --list`: one per line, each a plain file name.
fn parse_applets(list: &str) -> Result<Vec<String>, String> {
    let mut applets = Vec::new();
    for name in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(format!(
                "--list printed {name:?}, which is not an applet name"
            ));
        }
        if name != "busybox" {
            applets.push(name.to_owned());
        }
    }
    if applets.is_empty() {
        return Err("--list printed no applets".into());
    }
    applets.sort();
    applets.dedup();
    Ok(applets)
}

/// `v1.35.0` from `BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary.`
fn parse_version(help: &str) -> Result<String, String> {
    let first = help.lines().next().unwrap_or_default();
    first
        .strip_prefix("BusyBox ")
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .ok_or_else(|| {
            format!("--help's first line {first:?} does not start with \"BusyBox v...\"")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applets_are_sorted_and_checked() {
        assert_eq!(
            parse_applets("sh\n[\nbusybox\nls\n").unwrap(),
            ["[", "ls", "sh"]
        );
        assert!(parse_applets("sh\n../etc\n").is_err());
        assert!(parse_applets("..\n").is_err());
        assert!(parse_applets("\n").is_err());
    }

    #[test]
    fn version_is_the_first_word() {
        let help =
            "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary.\nBusyBox is...";
        assert_eq!(parse_version(help).unwrap(), "v1.35.0");
        assert!(parse_version("Usage: toybox").is_err());
        assert!(parse_version("").is_err());
    }
}
