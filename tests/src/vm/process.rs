//! Child processes that never outlive their test: each runs in its own process group,
//! dies with the thread that spawned it (`PR_SET_PDEATHSIG`), and the guard's `Drop`
//! kills the whole group and reaps the child.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A child process in its own process group, killed (group-wide) and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    what: String,
}

impl ChildGuard {
    /// Spawns `cmd` in a new process group. `what` names it in errors.
    ///
    /// The child gets `SIGKILL` when the spawning *thread* exits (Linux parent-death
    /// signal), so keep the guard on the thread that made it (a test's own thread).
    pub fn spawn(cmd: &mut Command, what: &str) -> Result<Self> {
        cmd.process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only calls
        // prctl(2), which is async-signal-safe; it touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {what} ({cmd:?})"))?;
        Ok(Self {
            child,
            what: what.to_owned(),
        })
    }

    /// The child's process id (also its process group id).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child, e.g. to take its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the child has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("cannot check whether {} exited", self.what))
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends the child (not its group) `SIGTERM` and waits up to `timeout` for it to exit,
    /// e.g. to let a server log its last lines; `None` if it is still running then.
    pub fn terminate(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        if self.try_wait()?.is_none() {
            let pid = libc::pid_t::try_from(self.child.id())
                .with_context(|| format!("{}: pid out of range", self.what))?;
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped
            // child's, so it cannot have been reused.
            if unsafe { libc::kill(pid, libc::SIGTERM) } == -1 {
                return Err(io::Error::last_os_error())
                    .with_context(|| format!("cannot send SIGTERM to {}", self.what));
            }
        }
        self.wait_timeout(timeout)
    }

    /// Kills the process group with `SIGKILL` and reaps the child.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            kill_group(self.child.id());
        }
        // The child is reaped even if it had already exited; other group members, if any,
        // got SIGKILL too and are reaped by init.
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `SIGKILL` to process group `pgid`.
fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg(2) has no memory-safety preconditions; pgid > 1 is the group our
    // child leads (process_group(0)), which cannot be reused before we reap the child.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}
