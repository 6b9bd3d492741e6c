//! One daemon per state directory: an exclusive `flock` on `<state_dir>/daemon.lock`,
//! holding the owner's pid so that a second daemon can name it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use super::StateError;

/// The lock file's name in the state directory.
pub const LOCK_FILE: &str = "daemon.lock";

/// Held while the daemon runs; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock, or fails naming the pid that holds it.
    pub fn acquire(state_dir: &Path) -> Result<Self, StateError> {
        let path = state_dir.join(LOCK_FILE);
        let io = |what: &'static str| {
            let path = path.clone();
            move |source| StateError::Io { what, path, source }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open"))?;
        if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if e == rustix::io::Errno::WOULDBLOCK {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(StateError::Locked {
                    state_dir: state_dir.to_owned(),
                    holder: holder.trim().to_owned(),
                });
            }
            return Err(io("lock")(e.into()));
        }
        file.set_len(0).map_err(io("truncate"))?;
        file.seek(SeekFrom::Start(0)).map_err(io("seek"))?;
        writeln!(file, "pid {}", std::process::id()).map_err(io("write"))?;
        file.sync_data().map_err(io("sync"))?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
