//! One agent per run directory: the agent's in-memory state (reference counts, mounted
//! containers) is loaded from the run directory once, so a second agent working on it at
//! the same time would act on stale counts. The agent holds an exclusive `flock` on
//! `<run_dir>/agent.lock` for its lifetime; a one-shot command started while another
//! holds it waits a little, then fails with `Unavailable`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use layerpass_protocols::status::Kind;
use rustix::fs::{FlockOperation, flock};

use crate::error::{AgentError, Step};

/// File name of the lock in the run directory.
pub const LOCK_FILE: &str = "agent.lock";

/// The held lock; released when dropped (the file is closed).
#[derive(Debug)]
pub struct RunDirLock {
    _file: File,
    path: PathBuf,
}

impl RunDirLock {
    /// Takes the lock on `run_dir`, retrying for up to `wait`.
    pub fn acquire(run_dir: &Path, wait: Duration) -> Result<Self, AgentError> {
        let path = run_dir.join(LOCK_FILE);
        let err = |what: &str, e: std::io::Error| {
            AgentError::io(Step::State, format!("{what} {}", path.display()), e)
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| err("opening", e))?;
        let deadline = Instant::now() + wait;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    return Err(AgentError::new(
                        Kind::Unavailable,
                        Step::State,
                        format!(
                            "run directory {} is in use by another agent (pid {})",
                            run_dir.display(),
                            holder.trim()
                        ),
                    ));
                }
                Err(e) => return Err(err("locking", e.into())),
            }
        }
        // Record who holds it, for the message above.
        file.set_len(0).map_err(|e| err("truncating", e))?;
        file.rewind().map_err(|e| err("rewinding", e))?;
        writeln!(file, "{}", std::process::id()).map_err(|e| err("writing", e))?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_then_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunDirLock::acquire(dir.path(), Duration::ZERO).unwrap();
        // Contended: the wait runs out and the error names the holder (no timing asserted).
        let e = RunDirLock::acquire(dir.path(), Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), Kind::Unavailable);
        let message = e.to_string();
        assert!(message.contains("is in use by another agent"), "{e}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(first);
        RunDirLock::acquire(dir.path(), Duration::ZERO).unwrap();
    }
}
