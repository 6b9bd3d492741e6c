//! Running the host programs the microVM's assets come from (apt-get, dpkg, depmod, the
//! decompressors), with failures that carry stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::error::VmError;

/// Runs `cmd` to completion; a non-zero exit is an error carrying stderr.
pub fn run(cmd: &mut Command) -> Result<Output, VmError> {
    let command = describe(cmd);
    let out = cmd.output().map_err(|e| VmError::Command {
        command: command.clone(),
        detail: format!("cannot start: {e}"),
    })?;
    if !out.status.success() {
        return Err(VmError::Command {
            command,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out)
}

/// `program arg…` for messages.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first `name` on `PATH` (or `name` itself when it contains a `/` and exists).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// [`find_tool`], or [`VmError::ToolMissing`] naming the Debian package.
pub fn require_tool(name: &str, package: &str) -> Result<PathBuf, VmError> {
    find_tool(name).ok_or_else(|| VmError::ToolMissing {
        tool: name.to_owned(),
        package: package.to_owned(),
    })
}
