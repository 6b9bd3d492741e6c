//! `layerpass blk serve` as a child process of a VM test.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::process::ChildGuard;

/// Starts `BIN blk serve --socket SOCKET ARGS...` (replacing a stale socket file) and waits
/// until the socket exists. The guard kills the server when dropped.
pub fn serve_blk(bin: &Path, socket: &Path, args: &[&str]) -> Result<ChildGuard> {
    serve(bin, socket, args, None)
}

/// [`serve_blk`] with the server's log (its stderr) written to the file `log` instead of
/// the test's stderr, for a test that reads what the server reports.
pub fn serve_blk_logged(
    bin: &Path,
    socket: &Path,
    args: &[&str],
    log: &Path,
) -> Result<ChildGuard> {
    let file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    serve(bin, socket, args, Some(file))
}

fn serve(bin: &Path, socket: &Path, args: &[&str], log: Option<File>) -> Result<ChildGuard> {
    let _ = fs::remove_file(socket);
    let mut cmd = Command::new(bin);
    cmd.args(["blk", "serve", "--socket"])
        .arg(socket)
        .args(args);
    if let Some(file) = log {
        cmd.stderr(Stdio::from(file));
    }
    let mut child = ChildGuard::spawn(&mut cmd, "layerpass blk serve")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        if let Some(status) = child.try_wait()? {
            bail!(
                "layerpass blk serve exited with {status} before creating {}",
                socket.display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "layerpass blk serve created no socket at {} within 20 s",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}
